"""Faults during training: non-finite losses, Ctrl-C. Nothing written before is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import compose_train

from seq2seq_lit.module import TranslationModule
from seq2seq_lit.train import train

TINY = ["experiment=tiny", "logger=csv", "~callbacks.rich_progress_bar", "model.decoding.val_bleu=false", "test=false"]


def test_nonfinite_losses_are_skipped_then_stop_training(tmp_path: Path, multi30k_root, cache_dir, monkeypatch) -> None:
    forward = TranslationModule.forward

    def poisoned(self, src, src_lengths, tgt_in):
        out = forward(self, src, src_lengths, tgt_in)
        return out * float("nan") if self.training and self.global_step >= 2 else out

    monkeypatch.setattr(TranslationModule, "forward", poisoned)
    overrides = [
        *TINY, "trainer.limit_train_batches=30", "trainer.limit_val_batches=1", "model.max_nonfinite_steps=3",
        "callbacks.model_checkpoint.monitor=null", "callbacks.model_checkpoint.save_top_k=-1",
        "callbacks.model_checkpoint.filename='step_{step}'", "+callbacks.model_checkpoint.every_n_train_steps=2",
    ]  # fmt: skip
    cfg = compose_train(tmp_path, multi30k_root, cache_dir, overrides)
    # Steps 2, 3 and 4 are non-finite (Lightning still counts a skipped step in global_step).
    with pytest.raises(
        FloatingPointError, match=r"3 consecutive non-finite losses, the last at step 4 .*max_nonfinite"
    ):
        train(cfg)
    ckpts = tmp_path / "run" / "checkpoints"
    good = torch.load(ckpts / "step_2.ckpt", weights_only=True)
    assert good["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in good["state_dict"].values() if v.is_floating_point())
    # Skipped steps did not touch the weights: later checkpoints hold exactly the last good ones.
    for later in ("step_4.ckpt", "interrupted.ckpt"):
        state = torch.load(ckpts / later, weights_only=True)["state_dict"]
        for key, value in good["state_dict"].items():
            torch.testing.assert_close(state[key], value)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_saves_a_resumable_checkpoint(sig, tmp_path: Path, multi30k_root, cache_dir) -> None:
    env = {**os.environ, "SEQ2SEQ_LIT_CACHE": str(cache_dir), "WANDB_MODE": "offline"}
    args = [*TINY, f"data.root={multi30k_root}", "trainer.max_epochs=50", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "seq2seq_lit.train", *args], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics = tmp_path / "run" / "csv" / "metrics.csv"
    deadline = time.time() + 240
    while time.time() < deadline and not metrics.is_file():
        time.sleep(0.5)  # the CSV logger first writes after 100 steps: training is well under way
    assert proc.poll() is None, "training ended before it could be interrupted"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    ckpt_path = tmp_path / "run" / "checkpoints" / "interrupted.ckpt"
    assert ckpt_path.is_file(), stderr[-3000:]
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["global_step"] > 0 and "tokenizers" in ckpt
    # Training resumes from it.
    steps = ckpt["global_step"] + 5
    resumed = [*TINY, f"data.root={multi30k_root}", f"ckpt_path={ckpt_path}", f"trainer.max_steps={steps}",
               "trainer.max_epochs=50", f"hydra.run.dir={tmp_path / 'resumed'}"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "seq2seq_lit.train", *resumed], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    last = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == steps
