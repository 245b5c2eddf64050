"""The network families and the one seam between them and the rest of the framework.

A network is built from the flat hyper-parameters ``model.*`` (and a checkpoint's); ``model.network`` names its
class. Every network offers the same four calls, so the LightningModule, search and the commands never look
inside one:

- ``forward(src, src_lengths, tgt_in)``: teacher-forced log-probabilities ``(batch, tgt_len, |V_tgt|)``;
- ``encode(src, src_lengths)``: the decoding state after the encoder, one row per sentence;
- ``decode(y, state, need_attention)``: log-probabilities of the next token after each row's last input,
  attention weights (or None) and the new state;
- ``reorder_state(state, index)``: the state of rows ``index``. Search keeps a sentence's rows together,
  in sentence order, with as many rows per sentence for all sentences (1 in greedy search, the beam in beam
  search), so a network stores what the encoder computed once per sentence, not once per row.

and a class method ``validate(hparams)`` that names the key of a setting it cannot take.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from hydra.utils import get_class
from torch import nn

# Checkpoints written before the Transformer record no ``network``: they hold this one.
RNN_NETWORK = "seq2seq_lit.models.rnn.Seq2Seq"


def network_class(hparams: Mapping[str, Any]) -> type[nn.Module]:
    """The class ``model.network`` names (the RNN for checkpoints that name none)."""
    return get_class(hparams.get("network") or RNN_NETWORK)


def network_keys(cls: type) -> tuple[str, ...]:
    """The hyper-parameters a network class takes: its constructor's arguments."""
    return tuple(name for name in inspect.signature(cls).parameters)


def build_model(hparams: Mapping[str, Any]) -> nn.Module:
    """The network that a run's (or a checkpoint's) hyper-parameters describe."""
    cls = network_class(hparams)
    return cls(**{key: hparams[key] for key in network_keys(cls) if key in hparams})


def group_sentences(index: torch.Tensor, rows_per_sentence: int, n_sentences: int) -> tuple[torch.Tensor | None, int]:
    """For ``reorder_state``: which sentences rows ``index`` belong to and how many rows each then has.

    Returns ``(sentences, rows_per_sentence)``, ``sentences`` None when every sentence stays (nothing to
    select from what is stored per sentence).
    """
    sentences = torch.unique_consecutive(index // rows_per_sentence)
    rows = index.numel() // sentences.numel()
    return (None if sentences.numel() == n_sentences else sentences), rows
