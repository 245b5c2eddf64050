"""Bidirectional RNN encoder over packed sequences."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq_lit.data.vocab import PAD_ID

RNN_TYPES = {"lstm": nn.LSTM, "gru": nn.GRU}

# An LSTM state is (h, c); a GRU state is h alone.
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class Encoder(nn.Module):
    """Embedding + bidirectional LSTM/GRU with ``hidden_size / 2`` units per direction."""

    def __init__(
        self,
        vocab_size: int,
        word_vec_size: int,
        hidden_size: int,
        n_layers: int,
        dropout: float,
        rnn: str = "lstm",
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, word_vec_size, padding_idx=PAD_ID)
        self.rnn = RNN_TYPES[rnn](
            word_vec_size,
            hidden_size // 2,
            num_layers=n_layers,
            dropout=dropout if n_layers > 1 else 0.0,
            bidirectional=True,
            batch_first=True,
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, State]:
        """Encode a padded batch.

        Returns all hidden states ``(batch, src_len, hidden_size)`` (zero at PAD positions) and the final
        state, each tensor ``(n_layers * 2, batch, hidden_size / 2)`` in PyTorch's layer-major order.
        """
        # |src| = (batch_size, src_len), |lengths| = (batch_size,)
        emb = self.dropout(self.embedding(src))
        # |emb| = (batch_size, src_len, word_vec_size)
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        # |out| = (batch_size, src_len, hidden_size)
        return out, state


def merge_directions(state: torch.Tensor) -> torch.Tensor:
    """Turn a bidirectional final state into a unidirectional one, layer by layer.

    ``(n_layers * 2, batch, h / 2)`` -> ``(n_layers, batch, h)`` where layer ``l`` is
    ``[h_fwd(l); h_bwd(l)]``.
    """
    n2, batch, half = state.shape
    # PyTorch orders the directions inside each layer: index 2l is forward, 2l + 1 is backward.
    return state.view(n2 // 2, 2, batch, half).transpose(1, 2).reshape(n2 // 2, batch, 2 * half)
