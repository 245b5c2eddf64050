"""The attentional RNN Seq2Seq: Encoder, Decoder and Generator tied together."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from seq2seq_lit.data.vocab import PAD_ID
from seq2seq_lit.errors import ConfigError
from seq2seq_lit.models import group_sentences
from seq2seq_lit.models.generator import output_layer
from seq2seq_lit.models.rnn.decoder import Decoder, DecoderState, reorder_state, validate_decoder_args
from seq2seq_lit.models.rnn.encoder import Encoder


@dataclass
class EncodedSource:
    """What the decoder needs from the encoder, computed once per sentence."""

    h_src: torch.Tensor  # (n_sentences, src_len, hidden_size)
    keys: torch.Tensor | None  # (n_sentences, src_len, hidden_size), attention keys W_a^T h_s
    pad_mask: torch.Tensor  # (n_sentences, 1, src_len), True at PAD

    def index_select(self, index: torch.Tensor) -> EncodedSource:
        keys = self.keys.index_select(0, index) if self.keys is not None else None
        return EncodedSource(self.h_src.index_select(0, index), keys, self.pad_mask.index_select(0, index))


@dataclass
class RNNState:
    """The decoding state: the source once per sentence, the decoder's state once per row."""

    memory: EncodedSource
    decoder: DecoderState
    rows_per_sentence: int = 1


class Seq2Seq(nn.Module):
    """Attentional RNN encoder-decoder (Luong et al., 2015) with a log-softmax generator."""

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        *,
        word_vec_size: int,
        hidden_size: int,
        n_layers: int,
        dropout: float,
        rnn: str,
        attention: bool,
        tie_embeddings: bool,
        share_embeddings: bool,
    ) -> None:
        super().__init__()
        self.validate(locals())
        self.encoder = Encoder(src_vocab_size, word_vec_size, hidden_size, n_layers, dropout, rnn)
        self.decoder = Decoder(tgt_vocab_size, word_vec_size, hidden_size, n_layers, dropout, rnn, attention)
        self.generator = output_layer(self.decoder.embedding, hidden_size, tie_embeddings)
        if share_embeddings:
            self.encoder.embedding.weight = self.decoder.embedding.weight

    @classmethod
    def validate(cls, hp: Mapping[str, Any]) -> None:
        """Settings the RNN cannot take, named by key (before any data is read)."""
        validate_decoder_args(hp)
        if hp["hidden_size"] < 2 or hp["hidden_size"] % 2:
            raise ConfigError(
                f"model.hidden_size={hp['hidden_size']} must be an even number >= 2: the bidirectional encoder "
                "gives each direction hidden_size/2 units"
            )

    @property
    def has_attention(self) -> bool:
        return self.decoder.attention is not None

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> RNNState:
        """Run the encoder; return its states for attention and the decoder's initial state."""
        h_src, enc_state = self.encoder(src, src_lengths)
        attention = self.decoder.attention
        keys = attention.keys(h_src) if attention is not None else None
        pad_mask = (src == PAD_ID).unsqueeze(1)
        return RNNState(EncodedSource(h_src, keys, pad_mask), self.decoder.init_state(enc_state, src.size(0)))

    def decode(
        self, tgt_in: torch.Tensor, state: RNNState, need_attention: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None, RNNState]:
        """Decoder + generator: log-probabilities ``(rows, tgt_len, |V|)``, attention and new state.

        The attention weights come at no extra cost, so they are returned whether asked for or not.
        """
        memory = state.memory
        out, attn, dec_state = self.decoder(tgt_in, state.decoder, memory.h_src, memory.keys, memory.pad_mask)
        return self.generator(out), attn, RNNState(memory, dec_state, state.rows_per_sentence)

    def reorder_state(self, state: RNNState, index: torch.Tensor) -> RNNState:
        """The state of rows ``index`` (see ``seq2seq_lit.models``): the decoder's state is selected row by row,
        the source only when sentences leave."""
        sentences, rows = group_sentences(index, state.rows_per_sentence, state.memory.h_src.size(0))
        memory = state.memory if sentences is None else state.memory.index_select(sentences)
        return RNNState(memory, reorder_state(state.decoder, index), rows)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log-probabilities ``(batch, tgt_len, |V_tgt|)`` for ``tgt_in = [BOS] + y``."""
        log_probs, _, _ = self.decode(tgt_in, self.encode(src, src_lengths))
        return log_probs
