import torch

from seq2seq_lit.models.generator import Generator


def test_log_probabilities_over_target_vocab() -> None:
    gen = Generator(hidden_size=8, vocab_size=11)
    log_probs = gen(torch.randn(2, 3, 8))
    assert log_probs.shape == (2, 3, 11)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 3))
