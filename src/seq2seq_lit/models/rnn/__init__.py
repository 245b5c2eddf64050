"""The attentional RNN encoder-decoder (Luong et al., 2015)."""

from seq2seq_lit.models.rnn.seq2seq import Seq2Seq

__all__ = ["Seq2Seq"]
