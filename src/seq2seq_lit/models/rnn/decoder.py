"""Conditional language model decoder with Luong attention and input feeding."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seq2seq_lit.config import validate_model_args
from seq2seq_lit.data.vocab import PAD_ID
from seq2seq_lit.errors import ConfigError
from seq2seq_lit.models.rnn.attention import Attention
from seq2seq_lit.models.rnn.encoder import RNN_TYPES, State, merge_directions
from seq2seq_lit.models.rnn.step_linear import StepLinear

# What the decoder carries from one step to the next: the RNN state and the previous attentional
# vector (input feeding; None without attention).
DecoderState = tuple[State, torch.Tensor | None]


def validate_decoder_args(hp: Mapping[str, Any]) -> None:
    """Settings no RNN decoder can take (the Seq2Seq's or the language model's), named by key."""
    validate_model_args(hp)
    if hp["rnn"] not in RNN_TYPES:
        raise ConfigError(f"model.rnn={hp['rnn']!r} is not supported; allowed values: {sorted(RNN_TYPES)}")
    if hp["word_vec_size"] < 1:
        raise ConfigError(f"model.word_vec_size={hp['word_vec_size']} must be >= 1")


class Decoder(nn.Module):
    """RNN decoder; with ``attention`` it attends over the encoder states and feeds its input."""

    def __init__(
        self,
        vocab_size: int,
        word_vec_size: int,
        hidden_size: int,
        n_layers: int,
        dropout: float,
        rnn: str = "lstm",
        attention: bool = True,
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(vocab_size, word_vec_size, padding_idx=PAD_ID)
        input_size = word_vec_size + hidden_size if attention else word_vec_size
        self.rnn = RNN_TYPES[rnn](
            input_size,
            hidden_size,
            num_layers=n_layers,
            dropout=dropout if n_layers > 1 else 0.0,
            batch_first=True,
        )
        self.attention = Attention(hidden_size) if attention else None
        self.concat = nn.Linear(2 * hidden_size, hidden_size) if attention else None
        # On the embeddings and on each output (the attentional vector, which is also fed back), as in
        # OpenNMT; the RNN's own dropout only acts between its layers.
        self.dropout = nn.Dropout(dropout)
        self._cells_cache: tuple | None = None

    def init_state(self, encoder_state: State, batch_size: int) -> DecoderState:
        """The encoder's final state, directions merged per layer, and a zero attentional vector."""
        if isinstance(encoder_state, tuple):
            rnn_state: State = (merge_directions(encoder_state[0]), merge_directions(encoder_state[1]))
        else:
            rnn_state = merge_directions(encoder_state)
        h = rnn_state[0] if isinstance(rnn_state, tuple) else rnn_state
        feed = h.new_zeros(batch_size, 1, self.hidden_size) if self.attention is not None else None
        return rnn_state, feed

    def forward(
        self,
        tgt_in: torch.Tensor,
        state: DecoderState,
        h_src: torch.Tensor,
        keys: torch.Tensor | None,
        pad_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None, DecoderState]:
        """Run over a whole target prefix (teacher forcing) or a single step (decoding).

        Returns the decoder outputs ``(batch, tgt_len, hidden_size)``, the attention weights
        ``(batch, tgt_len, src_len)`` (None without attention) and the state after the last step.
        """
        # |tgt_in| = (batch_size, tgt_len)
        emb = self.dropout(self.embedding(tgt_in))
        # |emb| = (batch_size, tgt_len, word_vec_size)
        rnn_state, feed = state
        if self.attention is None:
            out, rnn_state = self.rnn(emb, rnn_state)
            return self.dropout(out), None, (rnn_state, None)
        assert keys is not None and feed is not None  # with attention, encode() computed the keys

        outputs, weights = [], []
        layers, cells = unstack_state(rnn_state), self.cells()
        # Input feeding makes step t depend on the attentional vector of step t-1, so the time loop
        # cannot be folded into one RNN call.
        for t in range(emb.size(1)):
            feed, w, layers = self.step(emb[:, t], feed, layers, cells, keys, h_src, pad_mask)
            outputs.append(feed)
            weights.append(w)
        return torch.cat(outputs, dim=1), torch.cat(weights, dim=1), (stack_state(layers), feed)

    def step(
        self,
        emb: torch.Tensor,
        feed: torch.Tensor,
        layers: list,
        cells: list,
        keys: torch.Tensor,
        h_src: torch.Tensor,
        pad_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, list]:
        """One attentional step: returns the attentional vector, the attention weights and the new layers."""
        assert self.attention is not None and self.concat is not None  # only attentional decoders step here
        # |emb| = (batch_size, word_vec_size), |feed| = (batch_size, 1, hidden_size)
        x = torch.cat([emb, feed.squeeze(1)], dim=-1)
        # |x| = (batch_size, word_vec_size + hidden_size)
        h, layers = self.rnn_step(x, layers, cells)
        h = h.unsqueeze(1)
        # |h| = (batch_size, 1, hidden_size)
        context, w = self.attention(h, keys, h_src, pad_mask)
        feed = self.dropout(torch.tanh(self.concat(torch.cat([context, h], dim=-1))))
        # |feed| = (batch_size, 1, hidden_size), |w| = (batch_size, 1, src_len)
        return feed, w, layers

    def cells(self) -> list[tuple[StepLinear, ...]]:
        """Per layer, the linear maps ``rnn_step`` applies; built once per ``forward``, not per step.

        An LSTM layer's two products are fused into one, ``[x; h] @ [W_ih | W_hh]^T + (b_ih + b_hh)``:
        one larger matmul instead of two and an add (BENCHMARKS.md). A GRU keeps them apart, as its
        candidate gate needs ``W_hn h`` on its own. In training each map's weight gradient is one matmul
        over all steps (``StepLinear``). With gradients off (decoding calls ``forward`` once per output
        token) the fused weights are kept until a weight changes.
        """
        # Autocast caches its casts of parameters only, so it would cast fused weights at every step.
        device = self.rnn.weight_ih_l0.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        if torch.is_grad_enabled():
            return self._build_cells(dtype)
        key = (dtype, *((p.data_ptr(), p._version) for p in self.rnn.parameters()))
        if self._cells_cache is None or self._cells_cache[0] != key:
            self._cells_cache = (key, self._build_cells(dtype))
        return self._cells_cache[1]

    def _build_cells(self, dtype: torch.dtype | None = None) -> list[tuple[StepLinear, ...]]:
        rnn, cells = self.rnn, []
        for i in range(rnn.num_layers):
            w_ih, w_hh = getattr(rnn, f"weight_ih_l{i}"), getattr(rnn, f"weight_hh_l{i}")
            b_ih, b_hh = getattr(rnn, f"bias_ih_l{i}"), getattr(rnn, f"bias_hh_l{i}")
            if isinstance(rnn, nn.LSTM):
                maps = [(torch.cat([w_ih, w_hh], dim=1), b_ih + b_hh)]
            else:
                maps = [(w_ih, b_ih), (w_hh, b_hh)]
            if dtype is not None:
                maps = [(w.to(dtype), b.to(dtype)) for w, b in maps]
            cells.append(tuple(StepLinear(w, b) for w, b in maps))
        return cells

    def rnn_step(self, x: torch.Tensor, layers: list, cells: list | None = None) -> tuple[torch.Tensor, list]:
        """One time step of the stacked RNN, as explicit cells on ``self.rnn``'s own weights.

        Same result as calling ``self.rnn`` on a length-1 sequence, but per-step matmuls (forward and
        backward) run faster than a oneDNN RNN call per step (BENCHMARKS.md).
        ``layers`` holds each layer's state: ``(h, c)`` for an LSTM, ``h`` for a GRU, each ``(batch, hidden)``;
        ``cells`` is ``self.cells()``, passed in so a time loop builds it once.
        """
        cells = cells if cells is not None else self.cells()
        new_layers: list = []
        for i, (state, maps) in enumerate(zip(layers, cells)):
            if i > 0:
                x = F.dropout(x, self.rnn.dropout, self.training)  # as nn.LSTM/GRU: between layers
            if isinstance(state, tuple):  # LSTM, gates in PyTorch's order i, f, g, o
                h, c = state
                (gates_of,) = maps
                gates = gates_of(torch.cat([x, h], dim=-1))
                # |gates| = (batch_size, 4 * hidden_size)
                i_gate, f_gate, g_gate, o_gate = gates.chunk(4, dim=-1)
                c = torch.sigmoid(f_gate) * c + torch.sigmoid(i_gate) * torch.tanh(g_gate)
                x = torch.sigmoid(o_gate) * torch.tanh(c)
                new_layers.append((x, c))
            else:  # GRU, gates in PyTorch's order r, z, n
                input_gates, hidden_gates = maps
                gi_r, gi_z, gi_n = input_gates(x).chunk(3, dim=-1)
                gh_r, gh_z, gh_n = hidden_gates(state).chunk(3, dim=-1)
                r, z = torch.sigmoid(gi_r + gh_r), torch.sigmoid(gi_z + gh_z)
                n = torch.tanh(gi_n + r * gh_n)
                x = (1 - z) * n + z * state
                new_layers.append(x)
        return x, new_layers


def unstack_state(state: State) -> list:
    """nn.LSTM/GRU state ``(n_layers, batch, hidden)`` -> one state per layer, each ``(batch, hidden)``."""
    if isinstance(state, tuple):
        return list(zip(state[0].unbind(0), state[1].unbind(0)))
    return list(state.unbind(0))


def stack_state(layers: list) -> State:
    """The inverse of ``unstack_state``."""
    if isinstance(layers[0], tuple):
        return torch.stack([h for h, _ in layers]), torch.stack([c for _, c in layers])
    return torch.stack(layers)


def reorder_state(state: DecoderState, index: torch.Tensor) -> DecoderState:
    """Select batch entries of a decoder state (beam search keeps and duplicates hypotheses)."""
    rnn_state, feed = state
    if isinstance(rnn_state, tuple):
        rnn_state = (rnn_state[0].index_select(1, index), rnn_state[1].index_select(1, index))
    else:
        rnn_state = rnn_state.index_select(1, index)
    return rnn_state, (feed.index_select(0, index) if feed is not None else None)
