"""BudgetCosineLR: the cosine over steps, over time, whichever runs out first; resumable; in a real run."""

from __future__ import annotations

import datetime
import io
import math
from pathlib import Path

import pytest
import torch
from conftest import TINY_QUIET, compose_train

from seq2seq_lit import schedule
from seq2seq_lit.report import read_metrics
from seq2seq_lit.schedule import BudgetCosineLR, parse_seconds
from seq2seq_lit.train import train


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(schedule.time, "monotonic", fake)
    return fake


def optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def step(scheduler: BudgetCosineLR) -> None:
    scheduler.optimizer.step()
    scheduler.step()


def lr_of(scheduler: BudgetCosineLR) -> float:
    return scheduler.optimizer.param_groups[0]["lr"]


def test_steps_alone_give_the_per_step_cosine(clock: FakeClock) -> None:
    sched = BudgetCosineLR(optimizer(2.0), total_steps=4, eta_min=0.5)
    seen = [lr_of(sched)]
    for _ in range(5):
        clock.now += 1e6  # no time budget: the clock does not matter
        step(sched)
        seen.append(lr_of(sched))
    expected = [0.5 + 1.5 * 0.5 * (1 + math.cos(math.pi * min(k, 4) / 4)) for k in range(6)]
    assert seen == pytest.approx(expected, abs=1e-12)
    assert seen[0] == 2.0 and seen[2] == pytest.approx(1.25) and seen[4] == seen[5] == 0.5


def test_a_linear_warm_up_from_zero_then_the_cosine_over_the_whole_budget(clock: FakeClock) -> None:
    sched = BudgetCosineLR(optimizer(2.0), total_steps=10, warmup_steps=4)
    seen = [lr_of(sched)]
    for _ in range(11):
        step(sched)
        seen.append(lr_of(sched))
    warm_up = [2.0 * k / 4 for k in range(4)]
    decay = [2.0 * 0.5 * (1 + math.cos(math.pi * min(k, 10) / 10)) for k in range(4, 12)]
    assert seen == pytest.approx(warm_up + decay, abs=1e-12)


def test_a_run_shorter_than_its_warm_up_ends_warming_up(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    sched = BudgetCosineLR(optimizer(1.0), total_steps=2, warmup_steps=8)
    assert "warmup_steps=8 is not below the run's 2 steps" in caplog.text
    step(sched)
    step(sched)
    assert lr_of(sched) == pytest.approx(2 / 8)
    with pytest.raises(ValueError, match=r"model\.scheduler\.scheduler\.warmup_steps=-1 must be >= 0"):
        BudgetCosineLR(optimizer(), total_steps=2, warmup_steps=-1)


def test_time_runs_out_first_on_a_slow_machine(clock: FakeClock) -> None:
    sched = BudgetCosineLR(optimizer(1.0), total_steps=1000, max_seconds="00:00:01:40")  # 100 s
    assert sched.max_seconds == 100
    clock.now += 50  # half the time gone after one step of a thousand
    step(sched)
    assert sched.progress() == 0.5 and lr_of(sched) == pytest.approx(0.5)
    clock.now += 60
    step(sched)
    assert sched.progress() == 1.0 and lr_of(sched) == pytest.approx(0.0, abs=1e-15)


def test_steps_run_out_first_on_a_fast_machine(clock: FakeClock) -> None:
    sched = BudgetCosineLR(optimizer(1.0), total_steps=10, max_seconds=3600)
    for _ in range(5):
        clock.now += 1
        step(sched)
    assert sched.progress() == 0.5 and lr_of(sched) == pytest.approx(0.5)


def test_the_elapsed_time_survives_a_resume(clock: FakeClock) -> None:
    sched = BudgetCosineLR(optimizer(1.0), total_steps=1000, max_seconds=100)
    clock.now += 30
    step(sched)
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # plain types only, as checkpoints must be
    assert state["elapsed_before"] == 30 and "_started" not in state

    clock.now = 5.0  # another process: its monotonic clock has nothing to do with the first one's
    resumed = BudgetCosineLR(optimizer(1.0), total_steps=1000, max_seconds=100)
    resumed.load_state_dict(state)
    clock.now += 20
    assert resumed.seconds_elapsed() == 50 and resumed.progress() == 0.5


@pytest.mark.parametrize("bad", ["58 minutes", "00:58:00", "00:00:00:00"])
def test_a_bad_time_names_the_key(bad: str) -> None:
    with pytest.raises(ValueError, match=rf"max_seconds={bad!r}"):
        BudgetCosineLR(optimizer(), total_steps=10, max_seconds=bad)


def test_parse_seconds() -> None:
    assert parse_seconds("00:00:58:00") == 3480 and parse_seconds("01:02:03:04.5") == 93784.5
    assert parse_seconds(None) is None and parse_seconds(90) == 90
    assert parse_seconds({"minutes": 58}) == parse_seconds(datetime.timedelta(minutes=58)) == 3480
    with pytest.raises(ValueError, match=r"max_time=\{'minuets': 58\}: .*minuets"):
        parse_seconds({"minuets": 58})


def test_a_real_run_decays_to_zero_over_its_steps(tmp_path: Path, multi30k_root: Path, cache_dir: Path) -> None:
    """model/scheduler=cosine_budget takes the run's length from the trainer and logs `lr` every step."""
    cfg = compose_train(
        tmp_path,
        multi30k_root,
        cache_dir,
        [
            *TINY_QUIET,
            "model/scheduler=cosine_budget",
            "model.optimizer.lr=0.01",
            "trainer.max_epochs=2",
            "trainer.limit_train_batches=4",
            "trainer.limit_val_batches=1",
            "trainer.log_every_n_steps=1",
            "trainer.max_time=00:01:00:00",  # an hour: the 8 steps run out first
        ],
    )
    train(cfg)
    lrs = [r["lr"] for r in read_metrics(tmp_path / "run") if "lr" in r]
    assert lrs == pytest.approx([0.01 * 0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)], rel=1e-3)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    state = ckpt["lr_schedulers"][0]
    assert state["total_steps"] == 8 and state["max_seconds"] == 3600 and state["elapsed_before"] > 0


def test_inverse_sqrt_warms_up_linearly_then_decays_as_one_over_sqrt_step() -> None:
    opt = optimizer(2.0)
    sched = schedule.InverseSqrtLR(opt, warmup_steps=4, warmup_init_factor=0.5)
    rates = []
    for _ in range(8):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    want = [1.0, 1.25, 1.5, 1.75, 2.0, 2 * math.sqrt(4 / 5), 2 * math.sqrt(4 / 6), 2 * math.sqrt(4 / 7)]
    assert rates == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match=r"model\.scheduler\.scheduler\.warmup_steps=0 must be at least 1"):
        schedule.InverseSqrtLR(optimizer(), warmup_steps=0)
    with pytest.raises(ValueError, match=r"model\.scheduler\.scheduler\.warmup_init_factor=1.5 must be in"):
        schedule.InverseSqrtLR(optimizer(), warmup_steps=4, warmup_init_factor=1.5)
