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
        """Attend from each query to its sentence's source.

        The queries may hold several rows per sentence (``rows = n_sentences * g``, a sentence's rows together,
        as beam search keeps them): the source is stored once per sentence, and a sentence's ``g * tgt_len``
        queries attend to it in one matmul. Returns the context ``(rows, tgt_len, hidden_size)`` and the
        weights ``(rows, tgt_len, src_len)``.
        """
        # |query| = (rows, tgt_len, hidden_size), |keys| = |values| = (n_sentences, src_len, hidden_size)
        # |pad_mask| = (n_sentences, 1, src_len), True at PAD
        rows, tgt_len, hidden_size = query.shape
        n = keys.size(0)
        grouped = query.reshape(n, rows // n * tgt_len, hidden_size)
        scores = torch.bmm(grouped, keys.transpose(1, 2)).masked_fill(pad_mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        # |weights| = (n_sentences, g * tgt_len, src_len)
        context = torch.bmm(weights, values).view(rows, tgt_len, hidden_size)
        return context, weights.view(rows, tgt_len, -1)
