"""StepLinear: a per-step linear map whose weight gradient is one matmul over all steps."""

import pytest
import torch
import torch.nn.functional as F

from seq2seq_lit.models.rnn.step_linear import StepLinear


def recurrence(linear, xs: list[torch.Tensor], hidden: int) -> torch.Tensor:
    """A small RNN that applies ``linear`` to ``[x_t; h_{t-1}]`` at each step; returns a scalar loss."""
    h, loss = torch.zeros(xs[0].size(0), hidden), 0.0
    for t, x in enumerate(xs):
        h = torch.tanh(linear(torch.cat([x, h], dim=-1)))
        loss = loss + (t + 1) * h.pow(2).sum()
    return loss


def gradients(use_step_linear: bool) -> list[torch.Tensor]:
    torch.manual_seed(0)
    weight = torch.randn(6, 4 + 6, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True)
    xs = [torch.randn(3, 4, dtype=torch.float64, requires_grad=True) for _ in range(5)]
    linear = StepLinear(weight, bias) if use_step_linear else (lambda z: F.linear(z, weight, bias))
    recurrence(linear, xs, 6).backward()
    return [weight.grad, bias.grad, *(x.grad for x in xs)]


def test_gradients_equal_autograds_per_step_ones() -> None:
    for got, want in zip(gradients(True), gradients(False), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_a_second_backward_through_the_same_graph_gives_the_same_gradient() -> None:
    torch.manual_seed(0)
    weight = torch.randn(5, 7, requires_grad=True)
    loss = recurrence(StepLinear(weight), [torch.randn(2, 2) for _ in range(3)], 5)
    first = torch.autograd.grad(loss, weight, retain_graph=True)[0]
    second = torch.autograd.grad(loss, weight)[0]
    torch.testing.assert_close(second, first)


def test_a_weight_also_used_outside_the_loop_gets_both_gradients() -> None:
    torch.manual_seed(0)
    weight = torch.randn(3, 3, requires_grad=True)
    x = torch.randn(2, 3)
    linear = StepLinear(weight)
    (linear(x).sum() + linear.weight.sum() * 2).backward()
    torch.testing.assert_close(weight.grad, x.sum(0).expand(3, 3) + 2)


def test_without_gradients_it_is_plain_linear() -> None:
    weight, bias, x = torch.randn(4, 3, requires_grad=True), torch.randn(4), torch.randn(2, 3)
    with torch.no_grad():
        linear = StepLinear(weight, bias)
        assert not linear.deferred and linear.weight is weight
        torch.testing.assert_close(linear(x), F.linear(x, weight, bias))


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
def test_decoder_step_gradients_equal_the_rnn_modules(rnn: str) -> None:
    """Several training steps of the decoder's explicit cells back-propagate what nn.LSTM/nn.GRU does."""
    from seq2seq_lit.models.rnn.decoder import Decoder, unstack_state

    torch.manual_seed(0)
    decoder = Decoder(13, 8, 10, n_layers=2, dropout=0.0, rnn=rnn).double()
    xs = torch.randn(4, 18, 3, dtype=torch.float64).unbind(-1)  # 3 steps of (batch, word_vec + hidden)
    init = torch.randn(2, 2, 4, 10, dtype=torch.float64).unbind(0)  # (n_layers, batch, hidden): h, c
    init = init if rnn == "lstm" else init[0]

    def loss_and_grads(explicit: bool) -> list[torch.Tensor]:
        decoder.zero_grad()
        state, layers, loss = init, unstack_state(init), 0.0
        cells = decoder.cells()
        for t, x in enumerate(xs):
            if explicit:
                out, layers = decoder.rnn_step(x, layers, cells)
            else:
                out, state = decoder.rnn(x.unsqueeze(1), state)
                out = out.squeeze(1)
            loss = loss + (t + 1) * out.pow(2).sum()
        loss.backward()
        return [p.grad.clone() for p in decoder.rnn.parameters()]

    for got, want in zip(loss_and_grads(True), loss_and_grads(False), strict=True):
        torch.testing.assert_close(got, want)
