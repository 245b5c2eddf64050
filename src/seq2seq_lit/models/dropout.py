"""Dropout whose mask is cheap to draw on a CPU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LEVELS = 1 << 16  # a mask element is 16 random bits: p is a multiple of 1/65536


class Dropout(nn.Module):
    """Inverted dropout, as ``nn.Dropout``, with its mask drawn as 16 random bits per element on a CPU.

    On a CPU ``nn.Dropout`` draws one random number per element (``bernoulli_``), a large part of a small
    Transformer's training step; one 64-bit draw here gives four elements' masks. ``p`` is rounded to a
    multiple of 1/65536 and kept values are scaled by the inverse of that exact keep probability, so the
    expectation is unchanged. Other devices use ``F.dropout``. See BENCHMARKS.md.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.dropped_levels = round(p * LEVELS)  # an element is dropped when its 16 bits fall below this many

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropped_levels == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        n = x.numel()
        # Full-range 64-bit integers (the default generator, so seeds and resumed runs repeat), viewed as four
        # uniform int16 each: values in [-32768, 32767].
        bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None).view(torch.int16)[:n]
        keep = bits.view(x.shape) >= self.dropped_levels - LEVELS // 2
        return x * keep * (LEVELS / (LEVELS - self.dropped_levels))
