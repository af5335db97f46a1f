"""What every fastloss.torch op shares on the autograd side: the double-backward refusal, and the
scaling of a gradient that the forward pass already computed."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

__all__ = ["refuse_double_backward", "scaled_gradient"]


def refuse_double_backward(function: str) -> None:
    """Backward runs with grad mode on only when a graph of the backward is being recorded
    (create_graph=True): a second derivative, which these ops do not provide."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"fastloss.torch.{function}: double backward (backward with create_graph=True, a "
            "gradient of a gradient) is not supported: fastloss computes first derivatives "
            "only. Use torch.nn.functional's version where second derivatives are needed."
        )


def _eager(t: torch.Tensor) -> bool:
    """Whether `t` holds real values that may be read: not a fake or functional tensor under a
    tracer (torch.compile, AOTAutograd, opcheck, make_fx), whose graph cannot branch on them."""
    return (
        type(t) is torch.Tensor
        and not torch.compiler.is_compiling()
        and not is_in_torch_dispatch_mode()
    )


def scaled_gradient(gradient: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
    """``gradient * grad_output`` for a gradient the forward pass computed for grad_output = 1.

    In eager mode the common ``loss.backward()`` (grad_output 1) returns it untouched: no pass
    over it, and autograd moves it into ``.grad`` without a copy when nothing else holds it
    (the functions drop the op's gradient output; the autograd context lets go of it before
    this). Another scale is a new product, not an in-place one: whoever called the op itself
    may hold the gradient output. Under a tracer (torch.compile) the product is always part of
    the graph, which cannot depend on grad_output's value."""
    if _eager(grad_output) and grad_output.numel() == 1 and grad_output.item() == 1.0:
        return gradient
    return gradient * grad_output
