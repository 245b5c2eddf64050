import torch

from seq2seq_lit.models.rnn.attention import Attention


def test_pad_positions_get_exactly_zero_weight() -> None:
    torch.manual_seed(0)
    attn = Attention(hidden_size=6)
    h_src = torch.randn(2, 5, 6)
    pad_mask = torch.tensor([[False] * 5, [False, False, True, True, True]]).unsqueeze(1)
    context, weights = attn(torch.randn(2, 3, 6), attn.keys(h_src), h_src, pad_mask)
    assert context.shape == (2, 3, 6) and weights.shape == (2, 3, 5)
    assert torch.all(weights[1, :, 2:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))
    # The context of the padded row only mixes its two real positions.
    expected = weights[1, :, :2] @ h_src[1, :2]
    torch.testing.assert_close(context[1], expected)


def test_general_score_matches_definition() -> None:
    torch.manual_seed(1)
    attn = Attention(hidden_size=4)
    h_src, h_t = torch.randn(1, 3, 4), torch.randn(1, 1, 4)
    _, weights = attn(h_t, attn.keys(h_src), h_src, torch.zeros(1, 1, 3, dtype=torch.bool))
    # Luong "general": score(h_t, h_s) = (W_a h_t) . h_s, W_a the weight of the linear layer
    scores = torch.stack([(attn.linear.weight @ h_t[0, 0]) @ h_src[0, s] for s in range(3)])
    torch.testing.assert_close(weights[0, 0], torch.softmax(scores, -1))
