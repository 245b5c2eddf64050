"""Faults during training: non-finite losses, Ctrl-C. Nothing written before is lost."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_QUIET, TRAINED_OVERRIDES, compose_train, make_module

from seq2seq_lit.module import TranslationModule
from seq2seq_lit.train import train


def test_nonfinite_losses_are_skipped_then_stop_training(tmp_path: Path, multi30k_root, cache_dir, monkeypatch) -> None:
    forward = TranslationModule.forward

    def poisoned(self, src, src_lengths, tgt_in):
        out = forward(self, src, src_lengths, tgt_in)
        return out * float("nan") if self.training and self.global_step >= 2 else out

    monkeypatch.setattr(TranslationModule, "forward", poisoned)
    overrides = [
        *TINY_QUIET, "trainer.limit_train_batches=30", "trainer.limit_val_batches=1", "model.max_nonfinite_steps=3",
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
    # The counters travel with the checkpoint, so a resumed run goes on counting (train/skipped_steps).
    stopped = torch.load(ckpts / "interrupted.ckpt", weights_only=True)
    assert stopped["nonfinite"] == {"skipped_steps": 3, "consecutive": 3}
    module = make_module(10, 10)
    module.on_load_checkpoint(stopped)
    assert (module.skipped_steps, module.nonfinite_steps) == (3, 3)


def test_a_nonfinite_micro_batch_skips_its_whole_accumulated_step(
    tmp_path: Path, multi30k_root, cache_dir, monkeypatch
) -> None:
    forward, seen = TranslationModule.forward, []

    def poisoned(self, src, src_lengths, tgt_in):
        out = forward(self, src, src_lengths, tgt_in)
        if self.training:
            seen.append(None)
            return out * float("nan") if len(seen) == 3 else out  # the first micro-batch of optimizer step 2
        return out

    monkeypatch.setattr(TranslationModule, "forward", poisoned)
    overrides = [
        *TINY_QUIET, "trainer.limit_train_batches=6", "trainer.accumulate_grad_batches=2",
        "trainer.limit_val_batches=1",
        "callbacks.model_checkpoint.monitor=null", "callbacks.model_checkpoint.save_top_k=-1",
        "callbacks.model_checkpoint.filename='step_{step}'", "+callbacks.model_checkpoint.every_n_train_steps=1",
    ]  # fmt: skip
    train(compose_train(tmp_path, multi30k_root, cache_dir, overrides))
    weights = [
        torch.load(tmp_path / "run" / "checkpoints" / f"step_{n}.ckpt", weights_only=True)["state_dict"]
        for n in (1, 2, 3)
    ]
    # The second step (micro-batches 3 and 4) changed nothing, though its second micro-batch was finite.
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[1][key], value, rtol=0, atol=0)
    assert any(not torch.equal(weights[2][k], v) for k, v in weights[1].items())
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["nonfinite"] == {
        "skipped_steps": 1, "consecutive": 0,
    }  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_saves_a_resumable_checkpoint(sig, tmp_path: Path, multi30k_root, cache_dir, tiny_datamodule) -> None:
    env = {**os.environ, "SEQ2SEQ_LIT_CACHE": str(cache_dir), "WANDB_MODE": "offline"}
    args = [*TINY_QUIET, f"data.root={multi30k_root}", "trainer.max_epochs=50", f"hydra.run.dir={tmp_path / 'run'}"]
    # A shell that starts pytest in the background (`cmd &`) ignores SIGINT, and its children inherit that: the
    # training process gets the default disposition back, as when started from a terminal.
    proc = subprocess.Popen(
        [sys.executable, "-m", "seq2seq_lit.train", *args], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        metrics = tmp_path / "run" / "csv" / "metrics.csv"
        deadline = time.time() + 240
        while time.time() < deadline and not metrics.is_file():
            time.sleep(0.5)  # the CSV logger first writes after 100 steps: training is well under way
        assert proc.poll() is None, "training ended before it could be interrupted"
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()  # a failed test leaves no 50-epoch run behind to slow the rest of the suite
    ckpt_path = tmp_path / "run" / "checkpoints" / "interrupted.ckpt"
    assert ckpt_path.is_file(), stderr[-3000:]
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["global_step"] > 0 and "tokenizers" in ckpt
    # The saved place in the epoch is the steps taken in it, not the batches fetched (the one in flight when
    # the signal came is trained again after the resume).
    per_epoch = len(tiny_datamodule.train_sampler)
    position = ckpt["Multi30kDataModule"]["train_sampler"]
    assert position["epoch"] == ckpt["epoch"]
    assert position["batches_yielded"] == ckpt["global_step"] - ckpt["epoch"] * per_epoch
    # Training resumes from it.
    steps = ckpt["global_step"] + 5
    resumed = [*TINY_QUIET, f"data.root={multi30k_root}", f"ckpt_path={ckpt_path}", f"trainer.max_steps={steps}",
               "trainer.max_epochs=50", f"hydra.run.dir={tmp_path / 'resumed'}"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "seq2seq_lit.train", *resumed], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    last = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == steps


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


FAMILY = {"rnn": [], "transformer": ["model=transformer", "model.hidden_size=32", "model.ffn_size=64"]}


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILY)
def test_sigkill_mid_epoch_then_ckpt_last_resumes_exactly(
    family: str, tmp_path: Path, multi30k_root, cache_dir
) -> None:
    """Kill a real run with SIGKILL mid-epoch, resume with ckpt_path=last: the same weights as never killed."""
    env = {**os.environ, "SEQ2SEQ_LIT_CACHE": str(cache_dir), "WANDB_MODE": "offline"}
    common = [
        *TINY_QUIET, *FAMILY[family], f"data.root={multi30k_root}", "model.n_layers=2", "model.dropout=0.3",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=40", "trainer.limit_val_batches=2", "trainer.log_every_n_steps=1",
        "callbacks.periodic_checkpoint.every_n_train_steps=7", "callbacks.periodic_checkpoint.train_time_interval=null",
    ]  # fmt: skip

    def run(root: Path, *extra: str) -> subprocess.CompletedProcess:
        args = [*common, f"paths.root_dir={root}", *extra]
        cmd = [sys.executable, "-m", "seq2seq_lit.train", *args]
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    assert (done := run(tmp_path / "straight")).returncode == 0, done.stderr[-3000:]
    (straight_dir,) = (tmp_path / "straight" / "logs" / "train" / "runs").iterdir()

    # The run to kill also logs to W&B (offline) and flushes its CSV every step, so rows after the checkpoint exist.
    root = tmp_path / "killed"
    killed_args = [*common, f"paths.root_dir={root}", "logger=default", "logger.csv.flush_logs_every_n_steps=1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "seq2seq_lit.train", *killed_args], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 300

    def logged_past_first_checkpoint() -> bool:
        # The first latest.ckpt holds step 7; CSV rows from step 7 on come from training it never saw.
        if not list(root.glob("logs/train/runs/*/checkpoints/latest.ckpt")):
            return False
        csvs = list(root.glob("logs/train/runs/*/csv/metrics.csv"))
        rows = csv.DictReader(csvs[0].read_text().splitlines()) if csvs else []
        return any((row.get("step") or "").isdigit() and int(row["step"]) >= 7 for row in rows)

    while proc.poll() is None and time.time() < deadline and not logged_past_first_checkpoint():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    (killed_dir,) = (root / "logs" / "train" / "runs").iterdir()
    latest = killed_dir / "checkpoints" / "latest.ckpt"
    killed_csv = (killed_dir / "csv" / "metrics.csv").read_bytes()
    step = torch.load(latest, weights_only=True)["global_step"]
    assert step % 40 != 0, "the checkpoint should be mid-epoch"
    # A newer checkpoint cut short (as by a crash during a non-atomic copy) must be skipped, with a warning.
    broken = killed_dir / "checkpoints" / "newer.ckpt"
    broken.write_bytes(latest.read_bytes()[:4096])
    os.utime(broken, (time.time() + 5, time.time() + 5))

    resumed = run(root, "logger=default", "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    output = resumed.stdout + resumed.stderr
    assert f"skipping {broken}" in output and f"resuming from {latest}" in output
    assert "dataloader is not resumable" not in output
    resumed_dir = max((root / "logs" / "train" / "runs").iterdir())
    assert resumed_dir != killed_dir

    want = torch.load(straight_dir / "checkpoints" / "last.ckpt", weights_only=True)
    got = torch.load(resumed_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert got["global_step"] == want["global_step"] == 80
    for key, value in want["state_dict"].items():
        torch.testing.assert_close(got["state_dict"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    # Same optimizer state too (Adam's moments).
    for a, b in zip(want["optimizer_states"][0]["state"].values(), got["optimizer_states"][0]["state"].values()):
        torch.testing.assert_close(a["exp_avg_sq"], b["exp_avg_sq"], rtol=1e-5, atol=1e-9)

    # The resumed metrics.csv holds the whole history once: the rows of the straight run, in order.
    def kind(row: dict[str, str]) -> tuple[int, str]:
        return int(row["step"]), "train" if row.get("train/loss_step") else "val" if row.get("val/loss") else "other"

    straight_rows, resumed_rows = (
        _rows(straight_dir / "csv" / "metrics.csv"),
        _rows(resumed_dir / "csv" / "metrics.csv"),
    )
    assert [kind(r) for r in resumed_rows] == [kind(r) for r in straight_rows]
    for a, b in zip(straight_rows, resumed_rows):
        if a.get("train/loss_step"):
            assert float(a["train/loss_step"]) == pytest.approx(float(b["train/loss_step"]), rel=1e-5)
    assert (killed_dir / "csv" / "metrics.csv").read_bytes() == killed_csv  # the killed run's own CSV is untouched
    # W&B: the resumed run continues the killed run's id.
    (killed_wandb,) = (killed_dir / "wandb").glob("offline-run-*")
    (resumed_wandb,) = (resumed_dir / "wandb").glob("offline-run-*")
    assert killed_wandb.name.rsplit("-", 1)[1] == resumed_wandb.name.rsplit("-", 1)[1]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.hidden_size=256", r"another model configuration: model.hidden_size=128 there, 256 here"),
        (
            "model=transformer",
            r"another model configuration: model.network=seq2seq_lit.models.rnn.Seq2Seq there, "
            r"seq2seq_lit.models.transformer.Transformer here",
        ),
        ("data.spm_model_type=unigram", r"another src vocabulary"),
    ],
)
def test_resuming_into_another_model_or_vocabulary_names_the_difference(
    override: str, message: str, trained_ckpt: Path, tmp_path: Path, multi30k_root, cache_dir
) -> None:
    overrides = [*TRAINED_OVERRIDES, f"ckpt_path={trained_ckpt}", override]
    if override == "model=transformer":  # the RNN-only key of the trained config goes
        overrides.remove("model.word_vec_size=64")
    cfg = compose_train(tmp_path, multi30k_root, cache_dir, overrides)
    with pytest.raises(ValueError, match=rf"ckpt_path={trained_ckpt} was trained with {message}"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()  # failed before the Trainer started


def test_train_cli_reports_bad_ckpt_path_without_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline"}
    for ckpt, message in [
        ("last", "ckpt_path=last: no readable checkpoint under"),
        ("nope.ckpt", "no such checkpoint"),
    ]:
        args = ["experiment=tiny", f"ckpt_path={ckpt}", f"paths.root_dir={tmp_path}"]
        result = subprocess.run(
            [sys.executable, "-m", "seq2seq_lit.train", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert result.returncode == 1
        assert message in result.stderr and "Traceback" not in result.stderr
