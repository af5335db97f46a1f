"""What every fastloss.torch op shares on the autograd side: the double-backward refusal, and the
scaling of a gradient that the forward pass already computed."""

from __future__ import annotations

import torch

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


def scaled_gradient(gradient: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
    """``gradient * grad_output`` for a gradient the forward pass computed for grad_output = 1,
    which the caller owns (taken off the autograd context, so nothing else holds it).

    In eager mode the common ``loss.backward()`` (grad_output 1) returns it untouched, and
    autograd then moves it into ``.grad`` without a copy; any other scale is applied in place.
    Either way no second gradient-sized buffer is written. Under torch.compile the product is
    part of the traced graph (it cannot depend on grad_output's value)."""
    if torch.compiler.is_compiling():
        return gradient * grad_output
    if grad_output.numel() == 1 and grad_output.item() == 1.0:
        return gradient
    return gradient.mul_(grad_output)
