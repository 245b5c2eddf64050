"""The Seq2Seq model: Encoder, Decoder and Generator tied together."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from seq2seq_lit.config import validate_model_args
from seq2seq_lit.decoder import Decoder, DecoderState
from seq2seq_lit.encoder import Encoder
from seq2seq_lit.errors import ConfigError
from seq2seq_lit.generator import Generator
from seq2seq_lit.vocab import PAD_ID


@dataclass
class EncodedSource:
    """What the decoder needs from the encoder, computed once per batch."""

    h_src: torch.Tensor  # (batch, src_len, hidden_size)
    keys: torch.Tensor | None  # (batch, src_len, hidden_size), attention keys W_a^T h_s
    pad_mask: torch.Tensor  # (batch, 1, src_len), True at PAD

    def index_select(self, index: torch.Tensor) -> EncodedSource:
        keys = self.keys.index_select(0, index) if self.keys is not None else None
        return EncodedSource(self.h_src.index_select(0, index), keys, self.pad_mask.index_select(0, index))


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
        validate_model_args(hidden_size, n_layers, dropout, rnn, word_vec_size)
        if share_embeddings and src_vocab_size != tgt_vocab_size:
            raise ConfigError(
                f"model.share_embeddings=true needs one vocabulary for both languages (data.joint_vocab=true); "
                f"got {src_vocab_size} source and {tgt_vocab_size} target pieces"
            )
        self.encoder = Encoder(src_vocab_size, word_vec_size, hidden_size, n_layers, dropout, rnn)
        self.decoder = Decoder(tgt_vocab_size, word_vec_size, hidden_size, n_layers, dropout, rnn, attention)
        proj_size = word_vec_size if tie_embeddings and word_vec_size != hidden_size else None
        self.generator = Generator(hidden_size, tgt_vocab_size, proj_size)
        if tie_embeddings:
            self.generator.output.weight = self.decoder.embedding.weight
        if share_embeddings:
            self.encoder.embedding.weight = self.decoder.embedding.weight

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[EncodedSource, DecoderState]:
        """Run the encoder; return its states for attention and the decoder's initial state."""
        h_src, enc_state = self.encoder(src, src_lengths)
        attention = self.decoder.attention
        keys = attention.keys(h_src) if attention is not None else None
        pad_mask = (src == PAD_ID).unsqueeze(1)
        return EncodedSource(h_src, keys, pad_mask), self.decoder.init_state(enc_state, src.size(0))

    def decode(
        self, tgt_in: torch.Tensor, memory: EncodedSource, state: DecoderState
    ) -> tuple[torch.Tensor, torch.Tensor | None, DecoderState]:
        """Decoder + generator: log-probabilities ``(batch, tgt_len, |V|)``, attention and new state."""
        out, attn, state = self.decoder(tgt_in, state, memory.h_src, memory.keys, memory.pad_mask)
        return self.generator(out), attn, state

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log-probabilities ``(batch, tgt_len, |V_tgt|)`` for ``tgt_in = [BOS] + y``."""
        memory, state = self.encode(src, src_lengths)
        log_probs, _, _ = self.decode(tgt_in, memory, state)
        return log_probs


# The hyper-parameters ``Seq2Seq`` takes; the rest of ``model.*`` configures training.
NETWORK_KEYS = (
    "src_vocab_size", "tgt_vocab_size", "word_vec_size", "hidden_size", "n_layers", "dropout", "rnn", "attention",
    "tie_embeddings", "share_embeddings",
)  # fmt: skip


def build_model(hparams: Mapping[str, Any]) -> Seq2Seq:
    """The network that a run's (or a checkpoint's) hyper-parameters describe."""
    return Seq2Seq(**{key: hparams[key] for key in NETWORK_KEYS})
