"""Figures: attention heatmaps (used by the module at validation time and by the notebook)."""

from __future__ import annotations

import torch


def attention_figure(weights: torch.Tensor, src_pieces: list[str], tgt_pieces: list[str], title: str = ""):
    """Heatmap of ``weights`` ``(len(tgt_pieces), len(src_pieces))`` with the pieces as tick labels."""
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")  # no display needed during training
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(0.42 * len(src_pieces) + 2.5, 0.36 * len(tgt_pieces) + 1.8))
    ax.imshow(weights.float().numpy(), cmap="Greys", aspect="auto", vmin=0, vmax=1)
    ax.set_xticks(range(len(src_pieces)), src_pieces, rotation=70)
    ax.set_yticks(range(len(tgt_pieces)), tgt_pieces)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
