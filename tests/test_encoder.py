import pytest
import torch

from seq2seq_lit.data.vocab import PAD_ID
from seq2seq_lit.models.rnn.encoder import Encoder, merge_directions


def padded_batch(lengths: list[int], vocab: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    src = torch.full((len(lengths), max(lengths)), PAD_ID)
    for i, n in enumerate(lengths):
        src[i, :n] = torch.randint(4, vocab, (n,))
    return src, torch.tensor(lengths)


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
def test_shapes(rnn: str) -> None:
    enc = Encoder(vocab_size=20, word_vec_size=8, hidden_size=12, n_layers=3, dropout=0.0, rnn=rnn)
    src, lengths = padded_batch([5, 3, 4])
    out, state = enc(src, lengths)
    assert out.shape == (3, 5, 12)
    h = state[0] if rnn == "lstm" else state
    assert h.shape == (3 * 2, 3, 6)
    # Padding never enters the recurrence: outputs at PAD positions are exactly zero.
    assert torch.all(out[1, 3:] == 0) and torch.all(out[2, 4:] == 0)


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
def test_packed_equals_unpadded_per_sentence(rnn: str) -> None:
    enc = Encoder(vocab_size=20, word_vec_size=8, hidden_size=12, n_layers=2, dropout=0.0, rnn=rnn).eval()
    src, lengths = padded_batch([2, 6, 4])  # unsorted on purpose
    out, state = enc(src, lengths)
    for i, n in enumerate(lengths.tolist()):
        single_out, single_state = enc(src[i : i + 1, :n], lengths[i : i + 1])
        torch.testing.assert_close(out[i : i + 1, :n], single_out)
        h, h1 = (state[0], single_state[0]) if rnn == "lstm" else (state, single_state)
        torch.testing.assert_close(h[:, i : i + 1], h1)


def test_merge_directions_puts_forward_then_backward_per_layer() -> None:
    enc = Encoder(vocab_size=20, word_vec_size=8, hidden_size=12, n_layers=2, dropout=0.0, rnn="gru").eval()
    src, lengths = padded_batch([5, 3])
    out, h = enc(src, lengths)
    merged = merge_directions(h)
    assert merged.shape == (2, 2, 12)
    for layer in range(2):
        torch.testing.assert_close(merged[layer, :, :6], h[2 * layer])  # forward half of layer l
        torch.testing.assert_close(merged[layer, :, 6:], h[2 * layer + 1])  # backward half
    # Top layer: forward final state = last real output's forward half; backward = first output's back half.
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(merged[1, i, :6], out[i, n - 1, :6])
        torch.testing.assert_close(merged[1, i, 6:], out[i, 0, 6:])
