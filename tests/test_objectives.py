"""Minimum risk training: the expected risk by hand, its gradient, candidates, sampling, and runs of both
model families from the command line."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_QUIET, make_module
from test_search import SRC, SRC_LEN, MarkovModel

from seq2seq_lit.checkpoint import InitFrom, read_checkpoint
from seq2seq_lit.config import ObjectiveConfig, RNNConfig, TransformerConfig, schema_defaults
from seq2seq_lit.data.vocab import BOS_ID, EOS_ID, PAD_ID
from seq2seq_lit.errors import ConfigError
from seq2seq_lit.module import TranslationModule
from seq2seq_lit.objectives import candidate_scores, candidates, check_objective, expected_risk
from seq2seq_lit.search import beam_search, greedy_search, sample


def test_expected_risk_and_its_gradient_by_hand() -> None:
    # Two candidates with P = 0.6 and 0.2 (alpha 1: Q = 0.75, 0.25) and costs 0.1 and 0.9.
    log_p = torch.tensor([[math.log(0.6), math.log(0.2)]], requires_grad=True)
    cost = torch.tensor([[0.1, 0.9]])
    risk = expected_risk(log_p, cost, alpha=1.0)
    assert risk.item() == pytest.approx(0.75 * 0.1 + 0.25 * 0.9)
    risk.sum().backward()
    # dR/dlogP_j = alpha Q_j (cost_j - R): descending it raises the better candidate's probability.
    assert log_p.grad.tolist()[0] == pytest.approx([0.75 * (0.1 - 0.3), 0.25 * (0.9 - 0.3)])
    assert log_p.grad[0, 0] < 0 < log_p.grad[0, 1]
    # alpha sharpens or flattens Q; an invalid (duplicate) candidate gets no weight.
    flat = expected_risk(log_p.detach(), cost, alpha=0.0)
    assert flat.item() == pytest.approx(0.5)
    masked = expected_risk(log_p.detach(), cost, alpha=1.0, valid=torch.tensor([[True, False]]))
    assert masked.item() == pytest.approx(0.1)


def test_candidates_put_the_reference_last_and_count_duplicates_once() -> None:
    samples = torch.tensor([[5, EOS_ID, PAD_ID], [5, EOS_ID, PAD_ID], [6, 7, EOS_ID], [8, EOS_ID, PAD_ID]])
    reference = torch.tensor([[BOS_ID, 9, EOS_ID, PAD_ID], [BOS_ID, 6, 7, EOS_ID]])
    cands = candidates(samples, k=2, reference=reference)
    assert cands.tgt[1].tolist()[:3] == [BOS_ID, 9, EOS_ID] and cands.tgt[0].tolist()[:3] == [BOS_ID, 5, EOS_ID]
    assert cands.tgt[3].tolist() == [BOS_ID, 6, 7, EOS_ID]
    # Sentence 1's sample equals its reference: counted once.
    assert cands.valid.tolist() == [[True, True], [True, False]]


def test_candidates_a_search_did_not_find_count_as_none() -> None:
    # A beam of 3 that finished two outputs for sentence 0 (its third row is empty) and three for sentence 1.
    outputs = torch.tensor([[5, EOS_ID], [6, EOS_ID], [PAD_ID, PAD_ID], [5, EOS_ID], [6, EOS_ID], [7, EOS_ID]])
    found = torch.tensor([[True, True, False], [True, True, True]])
    assert candidates(outputs, k=3, reference=None, found=found).valid.tolist() == found.tolist()
    # The reference takes the last place, found or not.
    reference = torch.tensor([[BOS_ID, 9, EOS_ID], [BOS_ID, 9, EOS_ID]])
    assert candidates(outputs, k=3, reference=reference, found=found).valid.all()


def test_candidate_scores_sum_or_average_the_target_tokens() -> None:
    # Row 0 scores tokens 1, 2 (then PAD); row 1 tokens 3, 1, 2.
    log_probs = torch.log_softmax(torch.randn(2, 3, 5), dim=-1)
    target = torch.tensor([[1, 2, PAD_ID], [3, 1, 2]])
    lp = log_probs.tolist()
    total = [lp[0][0][1] + lp[0][1][2], lp[1][0][3] + lp[1][1][1] + lp[1][2][2]]
    assert candidate_scores(log_probs, target, length_normalize=False).tolist() == pytest.approx(total)
    mean = candidate_scores(log_probs, target, length_normalize=True)
    assert mean.tolist() == pytest.approx([total[0] / 2, total[1] / 3])
    # An empty row (a candidate not found) scores 0 and gives a finite gradient.
    empty = torch.zeros(1, 2, 5, requires_grad=True)
    candidate_scores(empty, torch.full((1, 2), PAD_ID), length_normalize=True).sum().backward()
    assert torch.isfinite(empty.grad).all()


@pytest.mark.parametrize(
    ("key", "value"),
    [("samples", 1), ("mle_weight", 1.0), ("metric", "ter"), ("candidates", "nbest")],
)
def test_mrt_settings_it_cannot_take_fail_naming_the_key(key: str, value) -> None:
    settings = {**vars(ObjectiveConfig(name="mrt")), key: value}
    with pytest.raises(ConfigError, match=f"model.objective.{key}="):
        check_objective(settings)


def test_sampling_a_deterministic_model_is_greedy() -> None:
    table = {BOS_ID: {4: 1.0}, 4: {5: 1.0}, 5: {EOS_ID: 1.0}}
    model = MarkovModel(table)
    drawn, lengths = sample(model, SRC, SRC_LEN, n=3, max_len_a=0, max_len_b=6)
    greedy = greedy_search(model, SRC, SRC_LEN, max_len_a=0, max_len_b=6)
    assert drawn.tolist() == [greedy.tokens[0, 0].tolist()] * 3 and lengths.tolist() == [3, 3, 3]


def test_sampling_follows_the_distribution() -> None:
    table = {BOS_ID: {4: 0.7, 5: 0.3}, 4: {EOS_ID: 1.0}, 5: {EOS_ID: 1.0}}
    torch.manual_seed(0)
    drawn, _ = sample(MarkovModel(table), SRC, SRC_LEN, n=2000, max_len_a=0, max_len_b=6)
    assert (drawn[:, 0] == 4).float().mean().item() == pytest.approx(0.7, abs=0.04)


def test_the_risk_of_candidates_that_are_all_the_reference_is_zero(tiny_datamodule, monkeypatch) -> None:
    dm = tiny_datamodule
    module = make_module(len(dm.src_tokenizer), len(dm.tgt_tokenizer), hidden_size=32, word_vec_size=16, n_layers=1,
                         objective={"name": "mrt", "samples": 3})  # fmt: skip
    module.set_tokenizers(dm.src_tokenizer, dm.tgt_tokenizer)
    batch = next(iter(dm.val_dataloader()))

    def the_reference(model, src, src_lengths, *, n, **limits):
        rows = batch["tgt"][:, 1:].repeat_interleave(n, 0)  # y EOS PAD...
        return rows, (rows != PAD_ID).sum(1)

    monkeypatch.setattr("seq2seq_lit.search.sample", the_reference)
    risk, metric = module.minimum_risk(batch)
    assert risk.item() == pytest.approx(0.0, abs=1e-6) and metric.item() == pytest.approx(100.0)
    risk.backward()  # a risk of 0 everywhere has no gradient to give, but it is a graph


def test_beam_candidates_are_the_beams_k_best(tiny_datamodule, monkeypatch) -> None:
    dm = tiny_datamodule
    objective = {"name": "mrt", "samples": 3, "candidates": "beam", "include_reference": False}
    module = make_module(len(dm.src_tokenizer), len(dm.tgt_tokenizer), hidden_size=32, word_vec_size=16, n_layers=1,
                         objective=objective)  # fmt: skip
    module.set_tokenizers(dm.src_tokenizer, dm.tgt_tokenizer)
    batch = next(iter(dm.val_dataloader()))
    seen = {}

    def keep(outputs, k, reference, found=None):
        seen.update(outputs=outputs, found=found)
        return candidates(outputs, k, reference, found)

    monkeypatch.setattr("seq2seq_lit.objectives.candidates", keep)
    module.train()
    module.minimum_risk(batch)
    assert module.model.training  # dropout is off while decoding and back on for the loss
    d = module.decoding
    module.eval()
    best = beam_search(module.model, batch["src"], batch["src_lengths"], beam_size=3, n_best=3, alpha=d.alpha,
                       max_len_a=d.max_len_a, max_len_b=d.max_len_b)  # fmt: skip
    assert torch.equal(seen["outputs"], best.tokens.flatten(0, 1))
    assert torch.equal(seen["found"], best.log_probs.isfinite())


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_mrt_scores_each_candidate_as_a_pass_over_its_own_source_copy_would(
    family: str, tiny_datamodule, monkeypatch
) -> None:
    # minimum_risk encodes a source once for its k candidates; scores and gradients must equal those of a plain
    # teacher-forced pass over k copies of each source (dropout off, so both see the same network).
    dm = tiny_datamodule
    size = {"word_vec_size": 16} if family == "rnn" else {"n_heads": 4, "ffn_size": 64}
    config = RNNConfig if family == "rnn" else TransformerConfig
    k, objective = 3, {"name": "mrt", "samples": 3, "alpha": 1.0, "mle_weight": 0.5}
    hparams = {**schema_defaults(config), **size, "hidden_size": 32, "n_layers": 1, "objective": objective}
    module = TranslationModule(len(dm.src_tokenizer), len(dm.tgt_tokenizer), **hparams)
    module.set_tokenizers(dm.src_tokenizer, dm.tgt_tokenizer)
    batch = next(iter(dm.val_dataloader()))
    seen = {}

    def keep_candidates(outputs, k, reference, found=None):
        seen["candidates"] = candidates(outputs, k, reference, found)
        return seen["candidates"]

    def keep_risk(scores, cost, alpha, valid=None):
        seen.update(scores=scores, cost=cost, valid=valid)
        return expected_risk(scores, cost, alpha, valid)

    monkeypatch.setattr("seq2seq_lit.objectives.candidates", keep_candidates)
    monkeypatch.setattr("seq2seq_lit.objectives.expected_risk", keep_risk)
    module.eval()
    risk, _ = module.minimum_risk(batch)
    risk.backward()
    shared = [p.grad.clone() for p in module.model.parameters()]
    module.model.zero_grad()

    tgt = seen["candidates"].tgt
    src, src_lengths = batch["src"].repeat_interleave(k, 0), batch["src_lengths"].repeat_interleave(k, 0)
    scores = candidate_scores(module.model(src, src_lengths, tgt[:, :-1]), tgt[:, 1:], False).view(-1, k)
    torch.testing.assert_close(seen["scores"], scores, rtol=1e-6, atol=1e-5)  # sums over whole sentences
    expected_risk(scores, seen["cost"], 1.0, seen["valid"]).mean().backward()
    for got, want in zip(shared, (p.grad for p in module.model.parameters()), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("family", "source"), [("rnn", "sample"), ("transformer", "beam")])
def test_mrt_trains_from_the_command_line(
    family: str, source: str, tmp_path: Path, multi30k_root: Path, cache_dir: Path
) -> None:
    env = {**os.environ, "SEQ2SEQ_LIT_CACHE": str(cache_dir), "WANDB_MODE": "offline"}
    args = [
        *TINY_QUIET, f"model={family}", "model/objective=mrt", "model.objective.samples=3", "trainer.max_steps=3",
        f"model.objective.candidates={source}", "model.objective.length_normalize=true",
        "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1", "data.max_tokens=512",
        f"data.root={multi30k_root}", f"paths.root_dir={tmp_path}",
    ]  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "seq2seq_lit.train", *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    rows = list(csv.DictReader((run / "csv" / "metrics.csv").open()))
    risks = [float(r["train/risk_step"]) for r in rows if r.get("train/risk_step")]
    bleus = [float(r["train/candidate_bleu_step"]) for r in rows if r.get("train/candidate_bleu_step")]
    assert len(risks) == 3 and all(0 <= x <= 1 for x in risks) and all(0 <= b <= 100 for b in bleus)


def test_mrt_balance_weighs_the_two_terms(trained_ckpt: Path, multi30k_root: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from mrt_balance import balance, first_pairs

    start = InitFrom(trained_ckpt, read_checkpoint(trained_ckpt))
    sources, targets = first_pairs(multi30k_root, "en", "de", 8)
    base = {**vars(ObjectiveConfig(name="mrt")), "samples": 3}
    flat = balance(start, {**base, "alpha": 0.0, "mle_weight": 0.2}, sources, targets)
    # alpha 0 makes Q uniform whatever the model says: the risk has no gradient.
    assert flat["risk_grad"] == 0.0 and flat["ratio"] == 0.0 and flat["mle_grad"] > 0
    sharp = balance(start, {**base, "alpha": 1.0, "mle_weight": 0.4}, sources, targets)
    # Same seed, so the same dropout masks: the MLE gradient scales with its weight.
    assert sharp["mle_grad"] == pytest.approx(2 * flat["mle_grad"], rel=1e-5)
    assert sharp["risk_grad"] > 0 and -1 <= sharp["cosine"] <= 1 and 0 <= sharp["metric"] <= 100
