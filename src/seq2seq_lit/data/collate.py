"""Turning examples into padded, length-sorted batches."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from seq2seq_lit.data.vocab import BOS_ID, EOS_ID, PAD_ID


def collate(examples: list[tuple[int, np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Pad a batch and sort it by source length (longest first), as packed RNN sequences expect.

    ``ids`` holds each row's dataset index so callers can restore the original order.
    """
    examples = sorted(examples, key=lambda e: len(e[1]), reverse=True)
    eos, bos = torch.tensor([EOS_ID]), torch.tensor([BOS_ID])
    src = [torch.cat([torch.from_numpy(s), eos]) for _, s, _ in examples]
    tgt = [torch.cat([bos, torch.from_numpy(t), eos]) for _, _, t in examples]
    return {
        "ids": torch.tensor([i for i, _, _ in examples]),
        "src": pad_sequence(src, batch_first=True, padding_value=PAD_ID),  # (batch, src_len)
        "src_lengths": torch.tensor([len(s) for s in src]),  # (batch,)
        "tgt": pad_sequence(tgt, batch_first=True, padding_value=PAD_ID),  # (batch, tgt_len)
    }
