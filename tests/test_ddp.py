"""Distributed data parallel on two CPU processes (gloo): sharded batches, synced metrics, one run."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def test_ddp_cpu_shards_batches_and_syncs_val_ppl(tmp_path: Path, multi30k_root: Path, cache_dir: Path) -> None:
    run_dir = tmp_path / "run"
    args = [
        "experiment=tiny", "trainer=ddp_cpu", "logger=default", "~callbacks.rich_progress_bar",
        f"data.root={multi30k_root}", "trainer.limit_train_batches=4", "trainer.max_epochs=1",
        "trainer.num_sanity_val_steps=0", "model.decoding.val_bleu=false", "test=false", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    env = {**os.environ, "SEQ2SEQ_LIT_CACHE": str(cache_dir), "WANDB_MODE": "offline"}
    result = subprocess.run(
        [sys.executable, "-m", "seq2seq_lit.train", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # Each rank built its own shard of the training batches.
    shards = dict(
        re.findall(r"training batches for rank (\d) of 2: \d+, the first holding examples (\[[^\]]*\])", output)
    )
    assert set(shards) == {"0", "1"} and shards["0"] != shards["1"], output[-3000:]
    # One run directory, one W&B run, one metrics file.
    assert [p.name for p in (tmp_path).iterdir() if p.is_dir()] == ["run"]
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    with open(run_dir / "csv" / "metrics.csv") as f:
        logged = [float(r["val/ppl"]) for r in csv.DictReader(f) if r.get("val/ppl")]
    assert len(logged) == 1

    # The logged val/ppl is the whole validation set's, not rank 0's half.
    from seq2seq_lit.data.datamodule import Multi30kDataModule
    from seq2seq_lit.module import TranslationModule

    module = TranslationModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=True).eval()
    data = module.hparams.data
    settings = {k: v for k, v in data.items() if k != "_target_"}  # the run's own data config
    dm = Multi30kDataModule(**settings | {"root": str(multi30k_root), "cache_dir": str(cache_dir)})
    dm.setup()
    with torch.no_grad():
        for batch in dm.val_dataloader():
            module.shared_step(batch, "val")
    assert module.ppl["val_"].compute().item() == pytest.approx(logged[0], rel=1e-4)


NAN_ON_RANK_1 = """
import os, sys
import torch
from seq2seq_lit.module import TranslationModule
from seq2seq_lit.train import main

forward, batch_start = TranslationModule.forward, TranslationModule.on_train_batch_start
steps = []  # per batch: the global step it started at, and whether it changed the weights


def weights(module):
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


def poisoned(self, src, src_lengths, tgt_in):
    out = forward(self, src, src_lengths, tgt_in)
    return out * float("nan") if self.training and self.global_rank == 1 and self.global_step == 2 else out


def on_train_batch_start(self, batch, batch_idx):
    batch_start(self, batch, batch_idx)
    self._before = (self.global_step, weights(self))


def on_train_batch_end(self, outputs, batch, batch_idx):
    step, before = self._before
    steps.append((step, not torch.equal(before, weights(self))))


def on_train_end(self):
    out = os.path.join(os.environ["RANKS_OUT"], f"rank{self.global_rank}.pt")
    torch.save({"steps": steps, "skipped": self.skipped_steps, "weights": weights(self)}, out)


TranslationModule.forward = poisoned
TranslationModule.on_train_batch_start = on_train_batch_start
TranslationModule.on_train_batch_end = on_train_batch_end
TranslationModule.on_train_end = on_train_end
main()
"""


def test_a_nonfinite_loss_on_one_rank_is_skipped_by_every_rank(tmp_path: Path, multi30k_root: Path, cache_dir: Path):
    script = tmp_path / "nan_on_rank_1.py"
    script.write_text(NAN_ON_RANK_1)
    args = [
        "experiment=tiny", "trainer=ddp_cpu", "logger=csv", "callbacks=none", f"data.root={multi30k_root}",
        "trainer.limit_train_batches=5", "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0",
        "model.decoding.val_bleu=false", "test=false", f"hydra.run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    env = {**os.environ, "SEQ2SEQ_LIT_CACHE": str(cache_dir), "WANDB_MODE": "offline", "RANKS_OUT": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(script), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for rank in ranks:
        # Both ranks skipped the step where rank 1 alone saw NaN, and only that one; training went on.
        assert rank["skipped"] == 1
        assert rank["steps"] == [(0, True), (1, True), (2, False), (3, True), (4, True)]
    torch.testing.assert_close(ranks[0]["weights"], ranks[1]["weights"], rtol=0, atol=0)
    assert output.count("non-finite loss at step 2: step skipped") == 2  # once per rank
