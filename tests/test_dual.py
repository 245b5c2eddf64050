"""Dual supervised learning and its language models: the term, the frozen LMs, both directions in one checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TRAINED_OVERRIDES, command, compose_train
from test_datamodule import DE, EN

from seq2seq_lit.checkpoint import load_checkpoint
from seq2seq_lit.data.vocab import BOS_ID, EOS_ID
from seq2seq_lit.module import token_lists
from seq2seq_lit.objectives import dual_gap
from seq2seq_lit.train import train
from seq2seq_lit.translator import Translator, lm_log_probs

SHORT = ["trainer.max_steps=20", "trainer.limit_val_batches=2", "test=false"]
LM_OVERRIDES = [
    "logger=csv", "callbacks=model_checkpoint", "model.hidden_size=64", "model.word_vec_size=32",
    "data.vocab_size=1000", "data.max_length=40", "trainer.precision=32-true", "~trainer.max_time",
    "trainer.max_epochs=1", "trainer.limit_train_batches=20", "trainer.limit_val_batches=2", "test=false",
]  # fmt: skip
# de -> en models shaped like conftest's en -> de trained_ckpt and transformer_ckpt.
REVERSE = ["data.src_lang=de", "data.tgt_lang=en"]
TRANSFORMER = [o for o in TRAINED_OVERRIDES if "word_vec_size" not in o and "lr=" not in o] + [
    "model=transformer", "model.ffn_size=256", "model.optimizer.lr=0.002", "~model/scheduler",
]  # fmt: skip


def trained(tmp: Path, multi30k_root: Path, cache_dir: Path, overrides: list[str]) -> Path:
    train(compose_train(tmp, multi30k_root, cache_dir, overrides))
    return tmp / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def lms(tmp_path_factory, multi30k_root: Path, cache_dir: Path) -> dict[str, Path]:
    """Language models of English and German (experiment=lm_en|lm_de, made tiny)."""
    return {
        lang: trained(
            tmp_path_factory.mktemp(f"lm_{lang}"), multi30k_root, cache_dir, [f"experiment=lm_{lang}", *LM_OVERRIDES]
        )  # fmt: skip
        for lang in ("en", "de")
    }


@pytest.fixture(scope="module")
def reverse_rnn(tmp_path_factory, multi30k_root: Path, cache_dir: Path) -> Path:
    return trained(tmp_path_factory.mktemp("de_en"), multi30k_root, cache_dir, [*TRAINED_OVERRIDES, *REVERSE, *SHORT])


@pytest.fixture(scope="module")
def reverse_transformer(tmp_path_factory, multi30k_root: Path, cache_dir: Path) -> Path:
    return trained(tmp_path_factory.mktemp("de_en_t"), multi30k_root, cache_dir, [*TRANSFORMER, *REVERSE, *SHORT])


def dsl_overrides(forward: Path, reverse: Path, lms: dict[str, Path], *extra: str) -> list[str]:
    return [
        f"init_from={forward}", "model/objective=dsl", f"model.objective.reverse_from={reverse}",
        f"model.objective.src_lm={lms['en']}", f"model.objective.tgt_lm={lms['de']}", *extra,
    ]  # fmt: skip


def test_dual_gap_is_the_squared_difference_of_the_two_factorisations() -> None:
    lp_x, lp_y_x = torch.tensor([-10.0, -4.0]), torch.tensor([-5.0, -3.0])
    lp_y, lp_x_y = torch.tensor([-9.0, -2.0]), torch.tensor([-6.0, -3.0])
    # Pair 0 agrees (-15 = -15); pair 1: (-7) - (-5) = -2, squared 4.
    assert dual_gap(lp_x, lp_y_x, lp_y, lp_x_y).tolist() == [0.0, 4.0]


def test_language_model_scores_what_it_was_trained_on(lms: dict[str, Path], tmp_path: Path) -> None:
    lm = load_checkpoint(lms["de"])
    assert not lm.model.translates and lm.data["tgt_lang"] == "de"
    lines = ["Ein Mann fährt Fahrrad.", "Fahrrad Mann ein fährt."]
    scores = lm_log_probs(lm.model, lm.tgt_tokenizer, lines)
    # The log-probability of a sentence is the sum of its pieces' and EOS's, computed here token by token.
    ids = lm.tgt_tokenizer.encode(lines[:1])[0]
    seq = torch.tensor([[BOS_ID, *ids, EOS_ID]])
    with torch.no_grad():
        lp = lm.model(None, None, seq[:, :-1])
    by_hand = sum(float(lp[0, t, seq[0, t + 1]]) for t in range(len(ids) + 1))
    assert scores[0].item() == pytest.approx(by_hand, abs=1e-4)
    assert scores[0] > scores[1]  # word order matters to a language model
    # The command prints the same numbers, one per line.
    done = command("score_lm", [f"ckpt_path={lms['de']}"], stdin="\n".join(lines).encode())
    assert done.returncode == 0, done.stderr.decode()
    assert [float(v) for v in done.stdout.decode().split()] == pytest.approx(scores.tolist(), abs=1e-3)
    # A language model does not translate, and score_lm refuses a translation model.
    refused = command("translate", [f"ckpt_path={lms['de']}"], stdin=b"a man\n")
    assert refused.returncode == 1 and "a language model does not translate" in refused.stderr.decode()


def test_dsl_term_and_gradient(
    trained_ckpt: Path, reverse_rnn: Path, lms: dict[str, Path], tmp_path: Path, multi30k_root, cache_dir
) -> None:
    cfg = compose_train(
        tmp_path, multi30k_root, cache_dir,
        [*TRAINED_OVERRIDES, *dsl_overrides(trained_ckpt, reverse_rnn, lms), "trainer.max_steps=1"],
    )  # fmt: skip
    _, objects = train(cfg)
    module, datamodule = objects["model"], objects["datamodule"]
    module.eval()
    batch = next(iter(datamodule.val_dataloader()))
    module.zero_grad()
    log_probs = module(batch["src"], batch["src_lengths"], batch["tgt"][:, :-1])
    terms = module.dual_terms(batch, log_probs)
    (terms.reverse_loss_sum / terms.reverse_tokens + terms.gap).backward()
    # The term is the one written out from each model's own scores of the same sentence pairs.
    src_tok, tgt_tok = module.src_tokenizer, module.tgt_tokenizer
    x, y = src_tok.decode(token_lists(batch["src"])), tgt_tok.decode(token_lists(batch["tgt"][:, 1:]))
    forward = Translator(module.model, src_tok, tgt_tok).score(x, y)
    reverse = Translator(module.reverse, *module.reverse_tokenizers).score(y, x)  # after its one training step
    lm_en, lm_de = load_checkpoint(lms["en"]), load_checkpoint(lms["de"])
    lp_x = lm_log_probs(lm_en.model, lm_en.tgt_tokenizer, x)
    lp_y = lm_log_probs(lm_de.model, lm_de.tgt_tokenizer, y)
    expected = dual_gap(lp_x, torch.tensor(forward), lp_y, torch.tensor(reverse)).mean()
    assert terms.gap.item() == pytest.approx(expected.item(), rel=1e-4)
    # Its gradient reaches both directions and never the frozen language models.
    assert all(p.grad is not None for p in module.model.parameters() if p.requires_grad)
    assert module.reverse is not None and all(p.grad is not None for p in module.reverse.parameters())
    for lm in module.language_models().values():
        assert all(p.grad is None and not p.requires_grad for p in lm.model.parameters())
    # The language models are not part of the module: not trained, not saved.
    assert not any(k.startswith("_language_models") for k in module.state_dict())


@pytest.mark.slow
@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_dsl_trains_from_the_cli_and_holds_both_directions(
    family: str, request, lms: dict[str, Path], tmp_path: Path, multi30k_root, cache_dir
) -> None:
    forward = request.getfixturevalue("trained_ckpt" if family == "rnn" else "transformer_ckpt")
    reverse = request.getfixturevalue(f"reverse_{family}")
    overrides = TRAINED_OVERRIDES if family == "rnn" else TRANSFORMER
    run = tmp_path / "dsl"
    args = [
        *overrides, *dsl_overrides(forward, reverse, lms), "trainer.limit_train_batches=3", "model.optimizer.lr=0",
        f"data.root={multi30k_root}", f"paths.cache_dir={cache_dir}", f"paths.output_dir={run}",
    ]  # fmt: skip
    done = command("train", args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    metrics = (run / "csv" / "metrics.csv").read_text()
    assert "train/dual_gap" in metrics and "train/reverse_ppl" in metrics and "val/reverse_ppl" in metrics
    ckpt = run / "checkpoints" / "last.ckpt"
    # With a zero learning rate the checkpoint's two directions are the two checkpoints it started from.
    sources = "\n".join(DE[:5]).encode()
    for direction, original in (("tgt2src", reverse), ("src2tgt", forward)):
        text = sources if direction == "tgt2src" else "\n".join(EN[:5]).encode()
        mine = command("translate", [f"ckpt_path={ckpt}", f"direction={direction}", "beam_size=2"], stdin=text)
        theirs = command("translate", [f"ckpt_path={original}", "beam_size=2"], stdin=text)
        assert mine.returncode == 0, mine.stderr.decode()
        assert mine.stdout == theirs.stdout and mine.stdout.strip()
    if family == "rnn":  # evaluate compares the reverse direction with the checkpoint it started from
        (tmp_path / "src.de").write_text("\n".join(DE[:5]) + "\n")
        (tmp_path / "ref.en").write_text("\n".join(EN[:5]) + "\n")
        files = [f"data.src={tmp_path / 'src.de'}", f"data.ref={tmp_path / 'ref.en'}", "beam_size=2"]
        out = tmp_path / "eval"
        both = [f"ckpt_path=[{reverse},{ckpt}]", f"hydra.run.dir={out}", *files]
        done = command("evaluate", [*both, "direction=[src2tgt,tgt2src]"], cwd=tmp_path)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        assert (out / "src.de.0.hyp").read_text() == (out / "src.de.1.hyp").read_text() != ""
        assert f"1: {ckpt} (tgt2src)" in done.stdout.decode()
        # One direction for both: the reverse checkpoint holds no tgt2src; a list of the wrong length.
        done = command("evaluate", [*both, "direction=tgt2src"], cwd=tmp_path)
        assert done.returncode == 1 and "holds one direction only" in done.stderr.decode()
        done = command("evaluate", [*both, "direction=[tgt2src]"], cwd=tmp_path)
        assert done.returncode == 1 and "direction=['tgt2src'] names 1 directions for 2 checkpoints" in (
            done.stderr.decode()
        )


def test_dsl_start_up_errors_name_the_key(
    trained_ckpt: Path, lms: dict[str, Path], tmp_path: Path, multi30k_root, cache_dir
) -> None:
    missing = compose_train(tmp_path, multi30k_root, cache_dir, [*TRAINED_OVERRIDES, "model/objective=dsl"])
    with pytest.raises(ValueError, match=r"model.objective.reverse_from is required"):
        train(missing)
    # The "reverse" direction given as a checkpoint of the same direction.
    same = compose_train(
        tmp_path, multi30k_root, cache_dir, [*TRAINED_OVERRIDES, *dsl_overrides(trained_ckpt, trained_ckpt, lms)]
    )
    # Raised while Hydra builds the module: Hydra wraps it (the command prints it as `error: ...` unwrapped).
    with pytest.raises(Exception, match=r"model.objective.reverse_from=.* translates en -> de; this run's reverse"):
        train(same)
    # A one-direction checkpoint asked for its other direction.
    done = command("translate", [f"ckpt_path={trained_ckpt}", "direction=tgt2src"], stdin=b"ein Mann\n")
    assert done.returncode == 1 and "holds one direction only" in done.stderr.decode()


def test_language_model_experiment_reports_perplexity(lms: dict[str, Path]) -> None:
    ckpt = torch.load(lms["en"], weights_only=True)
    assert ckpt["hyper_parameters"]["network"] == "seq2seq_lit.models.lm.LanguageModel"
    metrics = (lms["en"].parent.parent / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "val/ppl" in metrics and "val/bleu" not in metrics
