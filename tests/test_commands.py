"""The translate and evaluate commands, run as real subprocesses on a small trained checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import command

from seq2seq_lit.translator import DecodingConfig, Translator

SENTENCES = ["A man is riding a bicycle.", "", "Two dogs are playing in the snow.", "A woman sings.", ""]


def test_translate_keeps_line_alignment_and_creates_nothing(trained_ckpt: Path, tmp_path: Path) -> None:
    stdin = "".join(s + "\n" for s in SENTENCES).encode()
    result = command("translate", [f"ckpt_path={trained_ckpt}", "beam_size=3"], stdin, cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    out = result.stdout.decode().split("\n")
    assert out[-1] == "" and len(out) - 1 == len(SENTENCES)  # one line per input line, nothing else
    assert [bool(line) for line in out[:-1]] == [bool(s) for s in SENTENCES]  # empty in, empty out
    assert list(tmp_path.iterdir()) == []  # no output directories or logs of its own
    # Same result, in input order, as translating each line alone (order restored after sorting).
    translator = Translator.from_checkpoint(trained_ckpt)
    cfg = DecodingConfig(beam_size=3)
    for sentence, line in zip(SENTENCES, out):
        assert translator.translate([sentence], cfg)[0][0].text == line


def test_beam_one_equals_greedy_on_a_trained_model(trained_ckpt: Path, multi30k_root: Path) -> None:
    from seq2seq_lit.data.corpus import read_lines
    from seq2seq_lit.search import beam_search, greedy_search

    translator = Translator.from_checkpoint(trained_ckpt)
    src_ids = translator.encode(read_lines(multi30k_root / "val.en.gz")[:200])
    for batch in translator.batches(src_ids, 2000):
        greedy = greedy_search(translator.model, batch["src"], batch["src_lengths"])
        beam = beam_search(translator.model, batch["src"], batch["src_lengths"], beam_size=1, alpha=0.0)
        assert greedy.token_lists() == beam.token_lists()
        torch.testing.assert_close(greedy.log_probs, beam.log_probs)


def test_translate_n_best_format(trained_ckpt: Path) -> None:
    result = command("translate", [f"ckpt_path={trained_ckpt}", "beam_size=4", "n_best=3"], b"A dog.\nA cat runs.\n")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 6
    fields = [line.split(" ||| ") for line in lines]
    assert [f[0] for f in fields] == ["0", "0", "0", "1", "1", "1"]
    for i in (0, 3):
        scores = [float(f[2]) for f in fields[i : i + 3]]
        assert scores == sorted(scores, reverse=True)


def test_each_hypothesis_text_is_its_own_tokens(trained_ckpt: Path) -> None:
    # Texts are detokenized for a whole batch at once; each must still belong to its row and rank.
    translator = Translator.from_checkpoint(trained_ckpt)
    results = translator.translate(SENTENCES, DecodingConfig(beam_size=4, n_best=3))
    assert [len(hyps) for hyps in results] == [3] * len(SENTENCES)
    texts = [hyp.text for hyps in results for hyp in hyps]
    assert texts == translator.tgt_tokenizer.decode([hyp.tokens for hyps in results for hyp in hyps])
    assert len(set(texts)) > len(SENTENCES)  # the hypotheses differ, so a misplaced text would show


def test_translate_n_best_above_beam_is_a_clear_error(trained_ckpt: Path) -> None:
    result = command("translate", [f"ckpt_path={trained_ckpt}", "beam_size=2", "n_best=3"], b"A dog.\n")
    assert result.returncode == 1
    assert "n_best=3 must be between 1 and beam_size=2" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


def test_translate_truncates_long_lines_with_a_warning(trained_ckpt: Path) -> None:
    long_line = " ".join(["dog"] * 300)
    result = command("translate", [f"ckpt_path={trained_ckpt}", "beam_size=1"], f"A dog.\n{long_line}\n".encode())
    assert result.returncode == 0
    assert "line 2: " in result.stderr.decode() and "truncated to the model's limit of 40" in result.stderr.decode()
    assert len(result.stdout.decode().splitlines()) == 2


def test_translate_rejects_non_utf8_with_the_line_number(trained_ckpt: Path) -> None:
    result = command("translate", [f"ckpt_path={trained_ckpt}"], b"A dog.\nA \xff cat.\n")
    assert result.returncode == 1
    assert "stdin:2: not valid UTF-8" in result.stderr.decode()


def test_translate_missing_checkpoint_names_it(tmp_path: Path) -> None:
    result = command("translate", [f"ckpt_path={tmp_path / 'nope.ckpt'}"], b"A dog.\n")
    assert result.returncode == 1 and f"{tmp_path / 'nope.ckpt'}: no such checkpoint" in result.stderr.decode()


def test_translate_interactive_answers_each_line_before_the_next(trained_ckpt: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "seq2seq_lit.translate", f"ckpt_path={trained_ckpt}", "interactive=true", "beam_size=2"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        answers = []
        for sentence in ("A dog runs.", "", "A man sleeps."):
            proc.stdin.write((sentence + "\n").encode())
            proc.stdin.flush()
            answers.append(proc.stdout.readline().decode())  # blocks until this line is answered
        assert [a.endswith("\n") for a in answers] == [True] * 3 and answers[1] == "\n" and answers[0] != "\n"
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert proc.returncode == 0


def test_translate_scoring_mode_is_forced_decoding(trained_ckpt: Path) -> None:
    pairs = ["A dog.\tEin Hund.", "A dog.\tSchnee Fahrrad Frau Hund Mann.", "\tEin Hund."]
    result = command("translate", [f"ckpt_path={trained_ckpt}", "score=true"], "\n".join(pairs).encode() + b"\n")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    scores = [float(x) for x in result.stdout.decode().split()]
    assert len(scores) == 3 and all(s < 0 for s in scores)
    assert scores[0] > scores[1]  # the fluent translation is more probable than word salad
    expected = Translator.from_checkpoint(trained_ckpt).score(["A dog."], ["Ein Hund."])[0]
    assert scores[0] == pytest.approx(expected, abs=1e-4)
    bad = command("translate", [f"ckpt_path={trained_ckpt}", "score=true"], b"no tab here\n")
    assert bad.returncode == 1 and "stdin:1: score mode needs 'source<TAB>target' lines" in bad.stderr.decode()


def test_evaluate_prints_cased_and_lowercased_scores_and_writes_a_report(
    trained_ckpt: Path, multi30k_root: Path, tmp_path: Path
) -> None:
    args = [f"ckpt_path={trained_ckpt}", f"data.root={multi30k_root}", "split=val", "beam_size=2"]
    result = command("evaluate", args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    out = result.stdout.decode()
    for line in ("BLEU (cased) = ", "chrF (cased) = ", "BLEU (lowercased) = ", "chrF (lowercased) = "):
        assert line in out
    assert "nrefs:1|case:mixed|eff:no|tok:13a" in out and "nrefs:1|case:lc" in out
    (run_dir,) = (tmp_path / "logs" / "evaluate" / "runs").iterdir()
    report = json.loads((run_dir / "val.json").read_text())
    hyps = (run_dir / "val.hyp").read_text().splitlines()
    assert len(hyps) == 1014 == report["cased"]["sentences"]
    assert report["lowercased"]["bleu"] >= report["cased"]["bleu"] > 0
    assert f"BLEU (cased) = {report['cased']['bleu']:.2f}" in out


def test_truncated_or_mismatched_checkpoint_names_the_file(trained_ckpt: Path, tmp_path: Path) -> None:
    from seq2seq_lit.checkpoint import load_checkpoint

    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(trained_ckpt.read_bytes()[:5000])
    with pytest.raises(ValueError, match=f"ckpt_path={truncated}: not a readable seq2seq_lit checkpoint"):
        load_checkpoint(truncated)
    ckpt = torch.load(trained_ckpt, weights_only=True)
    ckpt["hyper_parameters"]["hidden_size"] = 256
    other = tmp_path / "other.ckpt"
    torch.save(ckpt, other)
    with pytest.raises(ValueError, match=f"ckpt_path={other}: weights do not match the model configuration"):
        load_checkpoint(other)
    del ckpt["hyper_parameters"]["share_embeddings"]
    torch.save(ckpt, other)
    with pytest.raises(ValueError, match=f"ckpt_path={other}: its hyper-parameters lack share_embeddings"):
        load_checkpoint(other)
    result = command("translate", [f"ckpt_path={truncated}"], b"A dog.\n")
    assert result.returncode == 1 and "not a readable seq2seq_lit checkpoint" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


@pytest.mark.filterwarnings("ignore:for .* copying from a non-meta parameter")
def test_checkpoint_loads_onto_another_device(trained_ckpt: Path) -> None:
    # The tokenizers stay on the CPU (SentencePiece reads them through NumPy) while the model goes to the
    # device: ``translate device=cuda`` once failed here. The meta device stands in for a GPU.
    from seq2seq_lit.checkpoint import load_checkpoint

    ckpt = load_checkpoint(trained_ckpt, "meta")
    assert {p.device.type for p in ckpt.model.parameters()} == {"meta"}
    assert ckpt.tgt_tokenizer.decode([ckpt.tgt_tokenizer.encode(["Ein Hund."])[0]]) == ["Ein Hund."]


def test_evaluate_compares_checkpoints_with_paired_bootstrap_resampling(
    trained_ckpt: Path, scaled_ckpt: Path, multi30k_root: Path, tmp_path: Path
) -> None:
    args = [f"ckpt_path=[{trained_ckpt},{scaled_ckpt}]", f"data.root={multi30k_root}", "split=val", "beam_size=1"]
    result = command("evaluate", [*args, "bootstrap_samples=200"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    (run_dir,) = (tmp_path / "logs" / "evaluate" / "runs").iterdir()
    report = json.loads((run_dir / "val.json").read_text())
    first, second = report["systems"]
    assert (first, second) == (f"0: {trained_ckpt}", f"1: {scaled_ckpt}") and report["n_samples"] == 200
    # Each system's score is sacreBLEU's on its own hypotheses, which are written beside the report.
    from sacrebleu.metrics import BLEU

    from seq2seq_lit.data.corpus import read_lines

    refs = read_lines(multi30k_root / "val.de.gz")
    for i, name in enumerate((first, second)):
        hyps = (run_dir / f"val.{i}.hyp").read_text().splitlines()
        assert report["systems"][name]["bleu"]["score"] == round(BLEU().corpus_score(hyps, [refs]).score, 2)
    assert "p_value" not in report["systems"][first]["bleu"] and 0 <= report["systems"][second]["bleu"]["p_value"] <= 1
    out = result.stdout.decode()
    assert f"0: {trained_ckpt}  BLEU " in out and f"1: {scaled_ckpt}  BLEU " in out and " p=" in out
