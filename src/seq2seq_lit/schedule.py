"""A cosine learning-rate decay that ends when a step budget or a time budget runs out, whichever comes first."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from seq2seq_lit.errors import ConfigError

log = logging.getLogger(__name__)


def parse_seconds(max_time: str | float | Mapping | timedelta | None, key: str = "max_time") -> float | None:
    """Seconds in any form ``trainer.max_time`` takes (``"DD:HH:MM:SS"``, a dict of timedelta arguments, a
    timedelta) or a number of seconds; None stays None."""
    if max_time is None or isinstance(max_time, int | float):
        seconds = max_time
    elif isinstance(max_time, timedelta):
        seconds = max_time.total_seconds()
    elif isinstance(max_time, Mapping):
        try:
            seconds = timedelta(**max_time).total_seconds()
        except TypeError as err:
            raise ConfigError(f"{key}={dict(max_time)!r}: {err}") from None
    else:
        fields = str(max_time).split(":")
        try:
            days, hours, minutes, secs = (float(f) for f in fields)
        except ValueError:
            raise ConfigError(f"{key}={max_time!r} is not a time in the form DD:HH:MM:SS (e.g. 00:00:58:00)") from None
        seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    if seconds is not None and seconds <= 0:
        raise ConfigError(f"{key}={max_time!r} must be a positive time")
    return seconds


class BudgetCosineLR(LRScheduler):
    """Per-step cosine decay from each group's lr to ``eta_min``, driven by the larger of two fractions,
    after an optional linear warm-up from 0 over ``warmup_steps`` steps (which the decay's budget includes).
    A run shorter than its warm-up (a ``debug=fdr`` smoke test of a recipe) ends still warming up, with a warning.

    progress = max(steps taken / ``total_steps``, seconds since the schedule started / ``max_seconds``).
    A run limited by ``trainer.max_time`` then ends with its rate decayed even on a machine slower than the
    one its epoch count was chosen on, instead of being cut off half-way down the curve. Where the steps run
    out first (a fast machine, or ``max_seconds=None``) it is the ordinary per-step cosine and deterministic;
    where the clock does, the rate depends on the machine's speed, so such runs do not repeat bit for bit.
    The elapsed time is part of ``state_dict``, so a resumed run goes on from where it stopped.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        max_seconds: str | float | Mapping | timedelta | None = None,
        eta_min: float = 0.0,
        warmup_steps: int = 0,
        last_epoch: int = -1,
    ) -> None:
        if total_steps < 1:
            raise ConfigError(f"total_steps={total_steps} must be at least 1")
        if warmup_steps < 0:
            raise ConfigError(f"model.scheduler.scheduler.warmup_steps={warmup_steps} must be >= 0")
        if warmup_steps >= total_steps:
            log.warning(
                "model.scheduler.scheduler.warmup_steps=%d is not below the run's %d steps: the run ends warming up",
                warmup_steps,
                total_steps,
            )
        self.total_steps, self.warmup_steps = int(total_steps), int(warmup_steps)
        self.max_seconds = parse_seconds(max_seconds, "max_seconds")
        self.eta_min = eta_min
        self.elapsed_before = 0.0
        self._started = time.monotonic()
        super().__init__(optimizer, last_epoch)

    def seconds_elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self._started

    def progress(self) -> float:
        """Fraction of the budget used, in [0, 1]."""
        fraction = self.last_epoch / self.total_steps
        if self.max_seconds is not None:
            fraction = max(fraction, self.seconds_elapsed() / self.max_seconds)
        return min(fraction, 1.0)

    def get_lr(self) -> list[float | Tensor]:
        if self.last_epoch < self.warmup_steps:
            return [base * self.last_epoch / self.warmup_steps for base in self.base_lrs]
        factor = 0.5 * (1.0 + math.cos(math.pi * self.progress()))
        return [self.eta_min + (base - self.eta_min) * factor for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.pop("_started")  # a monotonic-clock reading means nothing in another process
        state["elapsed_before"] = self.seconds_elapsed()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._started = time.monotonic()


class InverseSqrtLR(LRScheduler):
    """The Transformer's schedule (Vaswani et al., 2017, as in fairseq's ``inverse_sqrt``): the rate rises
    linearly from ``warmup_init_factor`` x each group's lr to the lr over ``warmup_steps`` steps, then decays
    as ``lr * sqrt(warmup_steps / step)``."""

    def __init__(
        self, optimizer: Optimizer, warmup_steps: int, warmup_init_factor: float = 0.0, last_epoch: int = -1
    ) -> None:
        if warmup_steps < 1:
            raise ConfigError(f"model.scheduler.scheduler.warmup_steps={warmup_steps} must be at least 1")
        if not 0.0 <= warmup_init_factor <= 1.0:
            raise ConfigError(f"model.scheduler.scheduler.warmup_init_factor={warmup_init_factor} must be in [0, 1]")
        self.warmup_steps, self.warmup_init_factor = int(warmup_steps), warmup_init_factor
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """The multiple of the peak rate at optimizer step ``step`` (0 before the first step)."""
        if step < self.warmup_steps:
            return self.warmup_init_factor + (1.0 - self.warmup_init_factor) * step / self.warmup_steps
        return math.sqrt(self.warmup_steps / step)

    def get_lr(self) -> list[float | Tensor]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]
