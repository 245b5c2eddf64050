"""Both network families through every command: a Transformer checkpoint translates, evaluates and averages as
an RNN one does, the two compare in one evaluation, and checkpoints written before the families still load."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from conftest import command

from seq2seq_lit.checkpoint import load_checkpoint
from seq2seq_lit.models.rnn import Seq2Seq
from seq2seq_lit.models.transformer import Transformer
from seq2seq_lit.translator import DecodingConfig, Translator

SENTENCES = ["A man is riding a bicycle.", "Two dogs are playing in the snow.", "A woman sings."]


def test_a_transformer_checkpoint_translates_alone(transformer_ckpt: Path, tmp_path: Path) -> None:
    ckpt = torch.load(transformer_ckpt, weights_only=True)  # plain types and tensors only
    assert ckpt["hyper_parameters"]["network"] == "seq2seq_lit.models.transformer.Transformer"
    assert isinstance(load_checkpoint(transformer_ckpt).model, Transformer)
    stdin = "".join(s + "\n" for s in SENTENCES).encode()
    result = command("translate", [f"ckpt_path={transformer_ckpt}", "beam_size=3"], stdin, cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    translator = Translator.from_checkpoint(transformer_ckpt)
    expected = [hyps[0].text for hyps in translator.translate(SENTENCES, DecodingConfig(beam_size=3))]
    assert result.stdout.decode().splitlines() == expected
    assert all(expected)


def test_evaluate_compares_an_rnn_with_a_transformer(
    trained_ckpt: Path, transformer_ckpt: Path, multi30k_root: Path, tmp_path: Path
) -> None:
    args = [f"ckpt_path=[{trained_ckpt},{transformer_ckpt}]", f"data.root={multi30k_root}", "split=val"]
    result = command("evaluate", [*args, "beam_size=1", "bootstrap_samples=100"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    (run_dir,) = (tmp_path / "logs" / "evaluate" / "runs").iterdir()
    report = json.loads((run_dir / "val.json").read_text())
    assert list(report["systems"]) == [f"0: {trained_ckpt}", f"1: {transformer_ckpt}"]
    assert 0 <= report["systems"][f"1: {transformer_ckpt}"]["bleu"]["p_value"] <= 1
    assert len((run_dir / "val.1.hyp").read_text().splitlines()) == 1014


def test_average_of_transformers_and_refusal_across_families(
    trained_ckpt: Path, transformer_ckpt: Path, tmp_path: Path
) -> None:
    ckpt = torch.load(transformer_ckpt, weights_only=True)
    ckpt["state_dict"] = {k: 3 * v for k, v in ckpt["state_dict"].items()}
    scaled = tmp_path / "scaled.ckpt"
    torch.save(ckpt, scaled)
    out = tmp_path / "avg.ckpt"
    result = command("average", ["-o", str(out), str(transformer_ckpt), str(scaled)])
    assert result.returncode == 0, result.stderr.decode()
    original = torch.load(transformer_ckpt, weights_only=True)["state_dict"]
    averaged = torch.load(out, weights_only=True)["state_dict"]
    for key, value in original.items():
        torch.testing.assert_close(averaged[key], 2 * value, msg=key)
    assert isinstance(load_checkpoint(out).model, Transformer)
    mixed = command("average", ["-o", str(tmp_path / "mixed.ckpt"), str(trained_ckpt), str(transformer_ckpt)])
    assert mixed.returncode == 1 and "model.network" in mixed.stderr.decode()
    assert not (tmp_path / "mixed.ckpt").exists()


def test_a_checkpoint_from_before_the_families_loads_as_the_rnn(trained_ckpt: Path, tmp_path: Path) -> None:
    ckpt = torch.load(trained_ckpt, weights_only=True)
    del ckpt["hyper_parameters"]["network"]  # what checkpoints written before the Transformer hold
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    assert isinstance(load_checkpoint(old).model, Seq2Seq)
    cfg = DecodingConfig(beam_size=2)
    want = [h[0].text for h in Translator.from_checkpoint(trained_ckpt).translate(SENTENCES, cfg)]
    assert [h[0].text for h in Translator.from_checkpoint(old).translate(SENTENCES, cfg)] == want


def test_translations_carry_the_transformers_cross_attention(transformer_ckpt: Path) -> None:
    translator = Translator.from_checkpoint(transformer_ckpt)
    (found,) = translator.translate(SENTENCES[:1], DecodingConfig(beam_size=1), attention=True)
    attention = found[0].attention
    assert attention is not None and attention.size(0) == len(found[0].tokens) + 1
    torch.testing.assert_close(attention.sum(-1), torch.ones(attention.size(0)))
