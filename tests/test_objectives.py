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

from seq2seq_lit.data.vocab import BOS_ID, EOS_ID, PAD_ID
from seq2seq_lit.objectives import candidates, expected_risk
from seq2seq_lit.search import greedy_search, sample


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
    cands = candidates(samples, torch.tensor([2, 2, 3, 2]), k=2, reference=reference)
    assert cands.tgt[1].tolist()[:3] == [BOS_ID, 9, EOS_ID] and cands.tgt[0].tolist()[:3] == [BOS_ID, 5, EOS_ID]
    assert cands.tgt[3].tolist() == [BOS_ID, 6, 7, EOS_ID]
    # Sentence 1's sample equals its reference: counted once.
    assert cands.valid.tolist() == [[True, True], [True, False]]


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


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_mrt_trains_from_the_command_line(family: str, tmp_path: Path, multi30k_root: Path, cache_dir: Path) -> None:
    env = {**os.environ, "SEQ2SEQ_LIT_CACHE": str(cache_dir), "WANDB_MODE": "offline"}
    args = [
        *TINY_QUIET, f"model={family}", "model/objective=mrt", "model.objective.samples=3", "trainer.max_steps=3",
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
