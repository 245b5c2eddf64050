"""The CPU dropout: nn.Dropout's semantics with a mask drawn 16 bits per element."""

import pytest
import torch
from test_transformer import batch, make_transformer
from torch import nn

from seq2seq_lit.models.dropout import LEVELS, Dropout


def test_identity_in_eval_mode_and_at_zero() -> None:
    x = torch.randn(4, 5)
    assert Dropout(0.3).eval()(x) is x
    assert Dropout(0.0).train()(x) is x


@pytest.mark.parametrize("p", [0.1, 0.25])
def test_drops_p_of_every_element_position_and_scales_the_rest(p: float) -> None:
    torch.manual_seed(0)
    x = torch.rand(250_000, 4) + 1.0  # no zeros: a zero in the output is a dropped element
    y = Dropout(p).train()(x)
    dropped = y == 0
    # Each column takes a different 16 bits of the 64-bit draws: each must drop p of its elements (7 standard
    # deviations of the binomial); a draw without its sign bit would leave one column undropped.
    assert torch.allclose(dropped.float().mean(0), torch.full((4,), p), atol=7 * (p * (1 - p) / 250_000) ** 0.5)
    keep = 1 - round(p * LEVELS) / LEVELS
    assert torch.equal(y[~dropped], x[~dropped] * (1 / keep))


def test_gradient_is_the_mask_scaled_and_bf16_stays_bf16() -> None:
    torch.manual_seed(0)
    x = (torch.rand(64, 16, 32) + 1.0).requires_grad_()
    y = Dropout(0.2).train()(x)
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float() / (1 - round(0.2 * LEVELS) / LEVELS))
    assert Dropout(0.2).train()(x.detach().bfloat16()).dtype == torch.bfloat16


def test_a_seed_repeats_the_mask_and_the_next_call_draws_another() -> None:
    x, drop = torch.ones(1000), Dropout(0.5).train()
    torch.manual_seed(3)
    first, second = drop(x), drop(x)
    torch.manual_seed(3)
    assert torch.equal(drop(x), first)
    assert not torch.equal(first, second)


def test_refuses_p_outside_zero_to_one() -> None:
    with pytest.raises(ValueError, match="got 1.0"):
        Dropout(1.0)


def test_the_transformer_drops_with_it() -> None:
    model = make_transformer(dropout=0.3).train()
    kinds = {type(m) for m in model.modules()}
    assert Dropout in kinds and nn.Dropout not in kinds
    src, src_lengths, tgt_in = batch()
    torch.manual_seed(1)
    first = model(src, src_lengths, tgt_in)
    assert not torch.equal(model(src, src_lengths, tgt_in), first)
    torch.manual_seed(1)
    assert torch.equal(model(src, src_lengths, tgt_in), first)
