"""Luong "general" attention with PAD positions masked out."""

from __future__ import annotations

import torch
from torch import nn


class Attention(nn.Module):
    """``score(h_t, h_s) = (W_a h_t) . h_s`` (``W_a`` = ``linear.weight``), softmax over non-PAD positions."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, hidden_size, bias=False)

    def keys(self, h_src: torch.Tensor) -> torch.Tensor:
        """Precompute ``W_a^T h_s`` once per batch (same scores), so each step is one batched matmul."""
        # |h_src| = (batch_size, src_len, hidden_size)
        return h_src @ self.linear.weight

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, pad_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend from each query to the source.

        Returns the context ``(batch, tgt_len, hidden_size)`` and the weights ``(batch, tgt_len, src_len)``.
        """
        # |query| = (batch_size, tgt_len, hidden_size), |keys| = |values| = (batch_size, src_len, hidden_size)
        # |pad_mask| = (batch_size, 1, src_len), True at PAD
        scores = torch.bmm(query, keys.transpose(1, 2)).masked_fill(pad_mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        # |weights| = (batch_size, tgt_len, src_len)
        return torch.bmm(weights, values), weights
