"""Corpus-level perplexity as a torchmetrics Metric (summed states, synced across processes)."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class CorpusPerplexity(Metric):
    """``exp(sum NLL / sum target tokens)`` over everything seen since the last reset."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("nll", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, nll_sum: torch.Tensor, n_tokens: torch.Tensor) -> None:
        self.nll += nll_sum.detach().to(torch.float64)
        self.tokens += n_tokens.detach()

    def compute(self) -> torch.Tensor:
        nll, tokens = torch.as_tensor(self.nll), torch.as_tensor(self.tokens)
        return torch.exp(nll / tokens).float()
