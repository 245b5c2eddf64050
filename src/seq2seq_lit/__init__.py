"""seq2seq_lit: RNN sequence-to-sequence NMT on PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
