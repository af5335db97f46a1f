"""softmax, log_softmax, logsumexp and entropy as torch custom ops.

Their forward passes are fastloss's kernels. They have no fused gradient to precompute (it
depends on grad_output everywhere), so backward takes grad_output: softmax's and log_softmax's
through fastloss's backward kernels (custom ops too, so that torch.compile traces them),
logsumexp's and entropy's closed forms in torch operations.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import _entropy, _softmax
from ._autograd import refuse_double_backward
from ._convert import to_numpy, to_tensor
from ._threads import call_with_torch_threads

__all__ = [
    "entropy_op",
    "log_softmax_backward_op",
    "log_softmax_op",
    "logsumexp_op",
    "softmax_backward_op",
    "softmax_op",
]


def _kept(t: torch.Tensor, dims: list[int], ndim: int) -> torch.Tensor:
    """A reduced tensor with its reduced dims put back as length 1 (to broadcast)."""
    for d in sorted(d % ndim for d in dims):
        t = t.unsqueeze(d)
    return t


# -- softmax and log_softmax -------------------------------------------------------------------


@torch.library.custom_op("fastloss::softmax", mutates_args=())
def softmax_op(input: torch.Tensor, dim: int) -> torch.Tensor:
    return to_tensor(call_with_torch_threads(_softmax.softmax, to_numpy(input), dim))


@torch.library.custom_op("fastloss::log_softmax", mutates_args=())
def log_softmax_op(input: torch.Tensor, dim: int) -> torch.Tensor:
    return to_tensor(call_with_torch_threads(_softmax.log_softmax, to_numpy(input), dim))


@softmax_op.register_fake
@log_softmax_op.register_fake
def _softmax_fake(input: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.empty_like(input, memory_format=torch.contiguous_format)


@torch.library.custom_op("fastloss::softmax_backward", mutates_args=())
def softmax_backward_op(grad_output: torch.Tensor, output: torch.Tensor, dim: int) -> torch.Tensor:
    """``output * (grad_output - sum(grad_output * output, dim))``, by fastloss's kernel."""
    result = call_with_torch_threads(
        _softmax.softmax_backward, to_numpy(grad_output), to_numpy(output), dim
    )
    return to_tensor(result)


@torch.library.custom_op("fastloss::log_softmax_backward", mutates_args=())
def log_softmax_backward_op(
    grad_output: torch.Tensor, output: torch.Tensor, dim: int
) -> torch.Tensor:
    """``grad_output - exp(output) * sum(grad_output, dim)``, by fastloss's kernel."""
    result = call_with_torch_threads(
        _softmax.log_softmax_backward, to_numpy(grad_output), to_numpy(output), dim
    )
    return to_tensor(result)


@softmax_backward_op.register_fake
@log_softmax_backward_op.register_fake
def _softmax_backward_fake(
    grad_output: torch.Tensor, output: torch.Tensor, dim: int
) -> torch.Tensor:
    return torch.empty_like(output, memory_format=torch.contiguous_format)


def _save_output(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
    ctx.save_for_backward(output)
    ctx.dim = inputs[1]


def _softmax_backward(ctx: Any, grad: torch.Tensor) -> tuple:
    refuse_double_backward("softmax")
    (output,) = ctx.saved_tensors
    return softmax_backward_op(grad, output, ctx.dim), None


def _log_softmax_backward(ctx: Any, grad: torch.Tensor) -> tuple:
    refuse_double_backward("log_softmax")
    (output,) = ctx.saved_tensors
    return log_softmax_backward_op(grad, output, ctx.dim), None


softmax_op.register_autograd(_softmax_backward, setup_context=_save_output)
log_softmax_op.register_autograd(_log_softmax_backward, setup_context=_save_output)


# -- logsumexp --------------------------------------------------------------------------------


@torch.library.custom_op("fastloss::logsumexp", mutates_args=())
def logsumexp_op(input: torch.Tensor, dim: list[int], keepdim: bool) -> torch.Tensor:
    axis = tuple(dim) if len(dim) != 1 else dim[0]
    result = call_with_torch_threads(_softmax.logsumexp, to_numpy(input), axis, keepdims=keepdim)
    return to_tensor(result)


@logsumexp_op.register_fake
def _logsumexp_fake(input: torch.Tensor, dim: list[int], keepdim: bool) -> torch.Tensor:
    reduced = {d % max(input.dim(), 1) for d in dim}
    shape = [
        1 if d in reduced else n for d, n in enumerate(input.shape) if keepdim or d not in reduced
    ]
    return input.new_empty(shape)


def _logsumexp_setup(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
    ctx.save_for_backward(inputs[0], output)
    ctx.dim, ctx.keepdim = inputs[1], inputs[2]


def _logsumexp_backward(ctx: Any, grad: torch.Tensor) -> tuple:
    """torch's formula: grad * exp(input - logsumexp), broadcast over the reduced dims."""
    refuse_double_backward("logsumexp")
    input, result = ctx.saved_tensors
    if not ctx.keepdim and input.dim():
        grad, result = _kept(grad, ctx.dim, input.dim()), _kept(result, ctx.dim, input.dim())
    return grad * (input - result).exp(), None, None


logsumexp_op.register_autograd(_logsumexp_backward, setup_context=_logsumexp_setup)


# -- entropy ----------------------------------------------------------------------------------


@torch.library.custom_op("fastloss::entropy", mutates_args=())
def entropy_op(logits: torch.Tensor, dim: int) -> torch.Tensor:
    return to_tensor(call_with_torch_threads(_entropy.entropy, to_numpy(logits), dim))


@entropy_op.register_fake
def _entropy_fake(logits: torch.Tensor, dim: int) -> torch.Tensor:
    d = dim % logits.dim()
    return logits.new_empty([n for k, n in enumerate(logits.shape) if k != d])


def _entropy_setup(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
    ctx.save_for_backward(inputs[0], output)
    ctx.dim = inputs[1]


def _entropy_backward(ctx: Any, grad: torch.Tensor) -> tuple:
    """H = logsumexp(x) - sum(p * x), so dH/dx = -p * (log p + H); 0 where p = 0 (a -inf logit,
    whose term torch's Categorical entropy clamps away). Computed in float32 for half precision."""
    refuse_double_backward("entropy")
    logits, h = ctx.saved_tensors
    compute = torch.promote_types(logits.dtype, torch.float32)
    x = logits.to(compute)
    log_p = torch.log_softmax(x, ctx.dim)
    p = log_p.exp()
    scale = grad.to(compute).unsqueeze(ctx.dim)
    d = -p * (log_p + h.to(compute).unsqueeze(ctx.dim))
    d = torch.where(p == 0, torch.zeros_like(d), d)
    return (d * scale).to(logits.dtype), None


entropy_op.register_autograd(_entropy_backward, setup_context=_entropy_setup)
