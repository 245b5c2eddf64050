"""Output layer: hidden state -> log-probabilities over the target vocabulary."""

from __future__ import annotations

import torch
from torch import nn


class Generator(nn.Module):
    """Linear ``hidden_size -> |V_tgt|`` followed by log-softmax.

    With ``embed_size`` set (tied embeddings narrower than the hidden state), the hidden state is first
    projected to ``embed_size`` so the output matrix can be the decoder's embedding matrix, as fairseq's
    LSTM decoder does with ``decoder_out_embed_dim``; it also makes the largest matmul of a step smaller.
    """

    def __init__(self, hidden_size: int, vocab_size: int, embed_size: int | None = None) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_size, embed_size, bias=False) if embed_size is not None else None
        self.output = nn.Linear(embed_size if embed_size is not None else hidden_size, vocab_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # |h| = (batch_size, length, hidden_size) -> (batch_size, length, vocab_size)
        if self.proj is not None:
            h = self.proj(h)  # |h| = (batch_size, length, embed_size)
        return torch.log_softmax(self.output(h), dim=-1)


def output_layer(embedding: nn.Embedding, hidden_size: int, tie: bool) -> Generator:
    """The generator over ``embedding``'s vocabulary; with ``tie`` its output matrix is the embedding matrix
    (Press & Wolf, 2017), after a projection when the embeddings are narrower than ``hidden_size``."""
    vocab_size, embed_size = embedding.weight.shape
    generator = Generator(hidden_size, vocab_size, embed_size if tie and embed_size != hidden_size else None)
    if tie:
        generator.output.weight = embedding.weight
    return generator
