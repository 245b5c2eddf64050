"""Output layer: hidden state -> log-probabilities over the target vocabulary."""

from __future__ import annotations

import torch
from torch import nn


class Generator(nn.Module):
    """Linear ``hidden_size -> |V_tgt|`` followed by log-softmax."""

    def __init__(self, hidden_size: int, vocab_size: int) -> None:
        super().__init__()
        self.output = nn.Linear(hidden_size, vocab_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # |h| = (batch_size, length, hidden_size) -> (batch_size, length, vocab_size)
        return torch.log_softmax(self.output(h), dim=-1)
