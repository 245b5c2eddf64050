"""An RNN language model: the RNN decoder alone, with no source (``model=lm``, ``experiment=lm_de|lm_en``).

Dual supervised learning (``model/objective=dsl``) needs the marginals ``log P(x)`` and ``log P(y)`` of each
language; ``python -m seq2seq_lit.score_lm`` prints them for any text. Trained through the same LightningModule
as the translation networks on one side of a parallel corpus (``data.tgt_lang``); the source is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from seq2seq_lit.errors import ConfigError
from seq2seq_lit.models.generator import output_layer
from seq2seq_lit.models.rnn.decoder import Decoder, validate_decoder_args


class LanguageModel(nn.Module):
    """Embedding, a unidirectional LSTM/GRU from a zero state, a log-softmax generator."""

    translates = False  # the module reports perplexity only: no search, no BLEU
    has_attention = False

    def __init__(
        self,
        tgt_vocab_size: int,
        *,
        word_vec_size: int,
        hidden_size: int,
        n_layers: int,
        dropout: float,
        rnn: str,
        tie_embeddings: bool,
        share_embeddings: bool,
    ) -> None:
        super().__init__()
        self.validate(locals())
        self.decoder = Decoder(tgt_vocab_size, word_vec_size, hidden_size, n_layers, dropout, rnn, attention=False)
        self.generator = output_layer(self.decoder.embedding, hidden_size, tie_embeddings)

    @classmethod
    def validate(cls, hp: Mapping[str, Any]) -> None:
        """Settings the language model cannot take, named by key."""
        validate_decoder_args(hp)
        if hp["share_embeddings"]:
            raise ConfigError("model.share_embeddings=true: a language model has no source embeddings to share")

    def forward(self, src: torch.Tensor | None, src_lengths: torch.Tensor | None, tgt_in: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``(batch, len, |V|)`` of each next token after ``tgt_in = [BOS] + y``; the source
        arguments are there for the LightningModule's shared step and ignored."""
        # |tgt_in| = (batch_size, len); no encoder: the RNN starts from zeros and attends to nothing.
        out, _, _ = self.decoder(tgt_in, (None, None), None, None, None)
        # |out| = (batch_size, len, hidden_size)
        return self.generator(out)
