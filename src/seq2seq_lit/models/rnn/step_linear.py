"""A linear map applied at every step of a time loop, with its weight gradient computed once."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class StepLinear:
    """``x @ weight^T + bias`` for each time step's ``x``; the weight gradient is one matmul over all steps.

    Autograd would make a full ``(out, in)`` weight gradient at every step, from a matmul whose inner
    dimension is only the batch, and add it to a running sum: for the decoder's first LSTM layer
    (2048 x 1280) that is 10 MB written and summed per step. Here each step's backward only keeps its input
    and output gradient, and once the earliest step is done one matmul over all steps makes the gradient
    (BENCHMARKS.md). Same gradient up to the order of float additions. With gradients off, or a weight
    that needs none, it is plain ``F.linear``.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.bias = bias
        self.deferred = torch.is_grad_enabled() and weight.requires_grad
        if self.deferred:
            # Filled by each step's backward: that step's inputs and gradients of its outputs.
            self.steps: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
            weight = _WeightGradient.apply(weight, self.steps)
        self.weight = weight

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.deferred:
            return F.linear(x, self.weight, self.bias)
        # |x| = (batch_size, in_features); the weight is already in the autocast dtype where there is one
        y = _Step.apply(x.to(self.weight.dtype), self.weight, self.steps)
        return y if self.bias is None else y + self.bias


class _WeightGradient(torch.autograd.Function):
    """Passes the weight on; in backward, after every step's, sums all steps' weight gradients in one matmul."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, steps: tuple[list, list]) -> torch.Tensor:
        ctx.steps = steps
        ctx.set_materialize_grads(False)
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor | None) -> tuple[torch.Tensor | None, None]:
        inputs, grad_outputs = ctx.steps
        if inputs:
            # |x| = (steps * batch_size, in_features), |g| = (steps * batch_size, out_features)
            x, g = torch.cat(inputs), torch.cat(grad_outputs)
            inputs.clear()
            grad_outputs.clear()
            summed = g.t().mm(x)
            grad = summed if grad is None else grad + summed
        return grad, None


class _Step(torch.autograd.Function):
    """``x @ weight^T`` whose backward returns the input gradient and leaves the weight's to ``_WeightGradient``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, steps: tuple[list, list]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.steps = steps
        return x.mm(weight.t())

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        x, weight = ctx.saved_tensors
        ctx.steps[0].append(x)
        ctx.steps[1].append(grad_output)
        return (grad_output.mm(weight) if ctx.needs_input_grad[0] else None), None, None
