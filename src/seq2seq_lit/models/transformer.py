"""The Transformer encoder-decoder (Vaswani et al., 2017) on PyTorch's ``scaled_dot_product_attention``.

Pre-LN (default) or post-LN layers, sinusoidal or learned positions, embeddings scaled by sqrt(hidden_size),
and incremental decoding: a decoding step reuses the keys and values of earlier steps (self-attention) and those
of the source, computed once per sentence (cross-attention), so a step costs one token's work.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seq2seq_lit.config import validate_model_args
from seq2seq_lit.data.vocab import PAD_ID
from seq2seq_lit.errors import ConfigError
from seq2seq_lit.models import group_sentences
from seq2seq_lit.models.dropout import Dropout
from seq2seq_lit.models.generator import Generator

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": F.relu, "gelu": F.gelu}
NORMS = ("pre", "post")
POSITIONS = ("sinusoidal", "learned")

KeyValue = tuple[torch.Tensor, torch.Tensor]  # each (rows, n_heads, length, head_size)


@dataclass
class TransformerState:
    """The decoding state: the source's keys/values once per sentence, the target's once per row."""

    cross_kv: list[KeyValue]  # per decoder layer, (n_sentences, n_heads, src_len, head_size) each
    src_mask: torch.Tensor  # (n_sentences, 1, 1, src_len), True where a key is a real token
    self_kv: list[KeyValue | None]  # per decoder layer, (rows, n_heads, steps, head_size) each; None before step 1
    steps: int = 0  # target tokens decoded so far: the next token's position
    rows_per_sentence: int = 1


def sinusoids(positions: torch.Tensor, size: int) -> torch.Tensor:
    """Sinusoidal position encodings ``(len(positions), size)``: sin on even, cos on odd dimensions."""
    inv_freq = torch.exp(torch.arange(0, size, 2, device=positions.device) * (-math.log(10000.0) / size))
    angles = positions.float().unsqueeze(1) * inv_freq
    out = torch.zeros(positions.numel(), size, device=positions.device)
    out[:, 0::2], out[:, 1::2] = torch.sin(angles), torch.cos(angles[:, : size // 2])
    return out


class Embeddings(nn.Module):
    """Token embeddings scaled by sqrt(hidden_size), plus positions, then dropout."""

    def __init__(self, vocab_size: int, hidden_size: int, dropout: float, positions: str, max_positions: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, hidden_size, padding_idx=PAD_ID)
        nn.init.normal_(self.tokens.weight, std=hidden_size**-0.5)
        nn.init.zeros_(self.tokens.weight[PAD_ID])
        self.positions = nn.Embedding(max_positions, hidden_size) if positions == "learned" else None
        self.scale = math.sqrt(hidden_size)
        self.dropout = Dropout(dropout)

    def forward(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        # |tokens| = (batch_size, length); ``start``: the position of the first token
        positions = torch.arange(start, start + tokens.size(1), device=tokens.device)
        if self.positions is None:
            pos = sinusoids(positions, self.tokens.embedding_dim)
        elif start + tokens.size(1) > self.positions.num_embeddings:
            raise ConfigError(
                f"a sequence of {start + tokens.size(1)} tokens is longer than model.max_positions="
                f"{self.positions.num_embeddings} learned positions cover"
            )
        else:
            pos = self.positions(positions)
        # |x| = (batch_size, length, hidden_size)
        return self.dropout(self.tokens(tokens) * self.scale + pos)


class MultiHeadAttention(nn.Module):
    """Multi-head attention through ``F.scaled_dot_product_attention``; self- or cross-attention."""

    def __init__(self, hidden_size: int, n_heads: int, dropout: float, cross: bool) -> None:
        super().__init__()
        self.n_heads, self.head_size, self.dropout = n_heads, hidden_size // n_heads, dropout
        # Self-attention projects queries, keys and values in one matmul; cross-attention projects the source's
        # keys and values once per sentence (``project_kv``) and the queries at every step.
        self.qkv = None if cross else nn.Linear(hidden_size, 3 * hidden_size)
        self.q = nn.Linear(hidden_size, hidden_size) if cross else None
        self.kv = nn.Linear(hidden_size, 2 * hidden_size) if cross else None
        self.out = nn.Linear(hidden_size, hidden_size)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        # (batch_size, length, hidden_size) -> (batch_size, n_heads, length, head_size)
        return x.view(x.size(0), x.size(1), self.n_heads, self.head_size).transpose(1, 2)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        # (batch_size, n_heads, length, head_size) -> (batch_size, length, hidden_size)
        return x.transpose(1, 2).reshape(x.size(0), x.size(2), self.n_heads * self.head_size)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
               causal: bool = False) -> torch.Tensor:  # fmt: skip
        p = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)

    def self_attention(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, past: KeyValue | None = None, causal: bool = False
    ) -> tuple[torch.Tensor, KeyValue]:
        """Attend from ``x`` to itself (and to the cached ``past`` keys/values); returns the output and the keys
        and values so far. ``causal``: each position attends only to itself and earlier ones."""
        assert self.qkv is not None
        q, k, v = (self.split(t) for t in self.qkv(x).chunk(3, dim=-1))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        # |q| = (rows, n_heads, length, head_size), |k| = |v| = (rows, n_heads, past + length, head_size)
        length, total = q.size(2), k.size(2)
        if causal and length > 1 and total > length:  # a prefix after cached steps: causal, offset by the cache
            allowed = torch.ones(length, total, dtype=torch.bool, device=x.device).tril(total - length)
            out = self.attend(q, k, v, mask=allowed)
        else:  # one new step may see every cached one
            out = self.attend(q, k, v, mask=mask, causal=causal and length > 1)
        return self.out(self.merge(out)), (k, v)

    def project_kv(self, memory: torch.Tensor) -> KeyValue:
        """The source's keys and values ``(n_sentences, n_heads, src_len, head_size)`` each."""
        assert self.kv is not None
        k, v = self.kv(memory).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def cross_attention(
        self, x: torch.Tensor, kv: KeyValue, src_mask: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from the target rows ``x`` (a sentence's rows together) to their sentence's source.

        Returns the output ``(rows, length, hidden_size)`` and, if asked, the weights averaged over heads
        ``(rows, length, src_len)``.
        """
        assert self.q is not None
        rows, length, hidden_size = x.shape
        n = kv[0].size(0)
        # A sentence's g rows query its source together: g * length queries against one stored copy.
        q = self.split(self.q(x).reshape(n, rows // n * length, hidden_size))
        out = self.merge(self.attend(q, kv[0], kv[1], mask=src_mask)).reshape(rows, length, hidden_size)
        weights = None
        if need_weights:
            scores = (q @ kv[0].transpose(-1, -2)) / math.sqrt(self.head_size)
            weights = scores.masked_fill(~src_mask, float("-inf")).softmax(-1).mean(1).reshape(rows, length, -1)
        return self.out(out), weights


class FeedForward(nn.Module):
    """Position-wise ``W_2 act(W_1 x)``, dropout after the activation."""

    def __init__(self, hidden_size: int, ffn_size: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.w1, self.w2 = nn.Linear(hidden_size, ffn_size), nn.Linear(ffn_size, hidden_size)
        self.activation, self.dropout = ACTIVATIONS[activation], Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.dropout(self.activation(self.w1(x))))


class Sublayers(nn.Module):
    """Residual connections around a layer's sublayers, with LayerNorm before (pre-LN) or after (post-LN)."""

    def __init__(self, n: int, hidden_size: int, dropout: float, norm: str) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_size) for _ in range(n))
        self.dropout, self.pre_norm = Dropout(dropout), norm == "pre"

    def forward(self, i: int, x: torch.Tensor, sublayer: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``x`` plus sublayer ``i``'s output, normalised before it (pre-LN) or after the sum (post-LN)."""
        if self.pre_norm:
            return x + self.dropout(sublayer(self.norms[i](x)))
        return self.norms[i](x + self.dropout(sublayer(x)))


class EncoderLayer(nn.Module):
    def __init__(self, hidden_size: int, n_heads: int, ffn_size: int, dropout: float, attention_dropout: float,
                 activation_dropout: float, activation: str, norm: str) -> None:  # fmt: skip
        super().__init__()
        self.self_attn = MultiHeadAttention(hidden_size, n_heads, attention_dropout, cross=False)
        self.ffn = FeedForward(hidden_size, ffn_size, activation, activation_dropout)
        self.sublayers = Sublayers(2, hidden_size, dropout, norm)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # |x| = (batch_size, src_len, hidden_size), |mask| = (batch_size, 1, 1, src_len)
        x = self.sublayers(0, x, lambda h: self.self_attn.self_attention(h, mask=mask)[0])
        return self.sublayers(1, x, self.ffn)


class DecoderLayer(nn.Module):
    def __init__(self, hidden_size: int, n_heads: int, ffn_size: int, dropout: float, attention_dropout: float,
                 activation_dropout: float, activation: str, norm: str) -> None:  # fmt: skip
        super().__init__()
        self.self_attn = MultiHeadAttention(hidden_size, n_heads, attention_dropout, cross=False)
        self.cross_attn = MultiHeadAttention(hidden_size, n_heads, attention_dropout, cross=True)
        self.ffn = FeedForward(hidden_size, ffn_size, activation, activation_dropout)
        self.sublayers = Sublayers(3, hidden_size, dropout, norm)

    def forward(
        self, x: torch.Tensor, past: KeyValue | None, cross_kv: KeyValue, src_mask: torch.Tensor, need_weights: bool
    ) -> tuple[torch.Tensor, KeyValue, torch.Tensor | None]:
        # |x| = (rows, length, hidden_size)
        kv: list[KeyValue] = []
        weights: list[torch.Tensor | None] = [None]

        def self_attention(h: torch.Tensor) -> torch.Tensor:
            out, new_kv = self.self_attn.self_attention(h, past=past, causal=True)
            kv.append(new_kv)
            return out

        def cross_attention(h: torch.Tensor) -> torch.Tensor:
            out, weights[0] = self.cross_attn.cross_attention(h, cross_kv, src_mask, need_weights)
            return out

        x = self.sublayers(0, x, self_attention)
        x = self.sublayers(1, x, cross_attention)
        return self.sublayers(2, x, self.ffn), kv[0], weights[0]


class Transformer(nn.Module):
    """Transformer encoder-decoder with a log-softmax generator; the same calls as the RNN (``models``)."""

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        *,
        hidden_size: int,
        n_layers: int,
        decoder_layers: int | None,
        n_heads: int,
        ffn_size: int,
        dropout: float,
        attention_dropout: float,
        activation_dropout: float,
        activation: str,
        norm: str,
        positions: str,
        max_positions: int,
        attention_layer: int,
        tie_embeddings: bool,
        share_embeddings: bool,
    ) -> None:
        super().__init__()
        self.validate(locals())
        layer_args = (hidden_size, n_heads, ffn_size, dropout, attention_dropout, activation_dropout, activation, norm)
        self.src_embeddings = Embeddings(src_vocab_size, hidden_size, dropout, positions, max_positions)
        self.tgt_embeddings = Embeddings(tgt_vocab_size, hidden_size, dropout, positions, max_positions)
        self.encoder = nn.ModuleList(EncoderLayer(*layer_args) for _ in range(n_layers))
        self.decoder = nn.ModuleList(DecoderLayer(*layer_args) for _ in range(decoder_layers or n_layers))
        # Pre-LN leaves each stack's output unnormalised: one LayerNorm at the top of each.
        self.encoder_norm = nn.LayerNorm(hidden_size) if norm == "pre" else nn.Identity()
        self.decoder_norm = nn.LayerNorm(hidden_size) if norm == "pre" else nn.Identity()
        for module in [*self.encoder.modules(), *self.decoder.modules()]:
            if isinstance(module, nn.Linear):  # Xavier, as the paper's reference code and fairseq initialise
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        self.generator = Generator(hidden_size, tgt_vocab_size)
        if tie_embeddings:
            self.generator.output.weight = self.tgt_embeddings.tokens.weight
        if share_embeddings:
            self.src_embeddings.tokens.weight = self.tgt_embeddings.tokens.weight
        self.attention_layer = attention_layer % len(self.decoder)
        self.has_attention = True

    @classmethod
    def validate(cls, hp: Mapping[str, Any]) -> None:
        """Settings the Transformer cannot take, named by key (before any data is read)."""
        validate_model_args(hp)
        for key, allowed in (("norm", NORMS), ("positions", POSITIONS), ("activation", tuple(ACTIVATIONS))):
            if hp[key] not in allowed:
                raise ConfigError(f"model.{key}={hp[key]!r} is not supported; allowed values: {list(allowed)}")
        if hp["n_heads"] < 1 or hp["hidden_size"] % hp["n_heads"]:
            raise ConfigError(
                f"model.hidden_size={hp['hidden_size']} must be a multiple of model.n_heads={hp['n_heads']}: each "
                "head gets hidden_size/n_heads dimensions"
            )
        if hp["ffn_size"] < 1 or hp["max_positions"] < 1:
            raise ConfigError(f"model.ffn_size={hp['ffn_size']} and model.max_positions={hp['max_positions']} "
                              "must be >= 1")  # fmt: skip
        layers = hp.get("decoder_layers") or hp["n_layers"]
        if not -layers <= hp["attention_layer"] < layers:
            raise ConfigError(f"model.attention_layer={hp['attention_layer']} is not a decoder layer (0..{layers - 1})")

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> TransformerState:
        """Run the encoder; return the cross-attention keys/values of every decoder layer, once per sentence."""
        # |src| = (batch_size, src_len); keys past each sentence's length (its padding) are masked
        positions = torch.arange(src.size(1), device=src.device)
        src_mask = (positions < src_lengths.to(src.device).unsqueeze(1)).view(src.size(0), 1, 1, src.size(1))
        x = self.src_embeddings(src)
        for layer in self.encoder:
            x = layer(x, src_mask)
        h_src = self.encoder_norm(x)
        # |h_src| = (batch_size, src_len, hidden_size)
        cross_kv = [layer.cross_attn.project_kv(h_src) for layer in self.decoder]
        return TransformerState(cross_kv, src_mask, [None] * len(self.decoder))

    def decode(
        self, tgt_in: torch.Tensor, state: TransformerState, need_attention: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None, TransformerState]:
        """Log-probabilities ``(rows, tgt_len, |V|)`` after each of ``tgt_in``'s tokens, following the tokens
        decoded so far (their keys/values are in ``state``); with ``need_attention``, the cross-attention
        weights of ``attention_layer``, heads averaged ``(rows, tgt_len, src_len)``."""
        x = self.tgt_embeddings(tgt_in, start=state.steps)
        self_kv, attention = [], None
        for i, layer in enumerate(self.decoder):
            need = need_attention and i == self.attention_layer
            x, kv, weights = layer(x, state.self_kv[i], state.cross_kv[i], state.src_mask, need)
            self_kv.append(kv)
            attention = weights if need else attention
        log_probs = self.generator(self.decoder_norm(x))
        steps = state.steps + tgt_in.size(1)
        return log_probs, attention, TransformerState(state.cross_kv, state.src_mask, self_kv, steps,
                                                      state.rows_per_sentence)  # fmt: skip

    def reorder_state(self, state: TransformerState, index: torch.Tensor) -> TransformerState:
        """The state of rows ``index`` (see ``seq2seq_lit.models``): every row's cached keys/values are
        selected; the source's only when sentences leave."""
        sentences, rows = group_sentences(index, state.rows_per_sentence, state.src_mask.size(0))
        cross_kv, src_mask = state.cross_kv, state.src_mask
        if sentences is not None:
            cross_kv = [(k.index_select(0, sentences), v.index_select(0, sentences)) for k, v in cross_kv]
            src_mask = src_mask.index_select(0, sentences)
        self_kv = [None if kv is None else (kv[0].index_select(0, index), kv[1].index_select(0, index))
                   for kv in state.self_kv]  # fmt: skip
        return TransformerState(cross_kv, src_mask, self_kv, state.steps, rows)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log-probabilities ``(batch, tgt_len, |V_tgt|)`` for ``tgt_in = [BOS] + y``."""
        log_probs, _, _ = self.decode(tgt_in, self.encode(src, src_lengths))
        return log_probs
