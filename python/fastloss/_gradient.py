"""What every loss returns, and its gradient arguments, written once for all of them.

A loss returns its value (`loss_value`: a NumPy scalar of the computation dtype, or the
per-position array of ``reduction="none"``), or with ``return_grad=True`` a `LossAndGrad`. The
gradient's arguments are checked here for every family: ``grad_output`` (a number for mean and
sum, an array of the loss's shape for none) and ``grad_out`` (the caller's buffer, the input's
shape and dtype, which may be the input itself: `_aliasing` breaks any other overlap).

Who divides for ``mean``: the kernels' callers in C++, which know the denominator (the summed
weights of the non-ignored targets, the batch size...): Python passes the reduction (and, for
the elementwise losses, the count). The one exception is the gradient of an input that
broadcasting repeated (kl_div, the BCEs, cosine_embedding_loss's x1): the kernel writes the
unscaled terms, Python sums them in float64 over the repeated axes (`sum_to_shape`), and the
mean's division joins that sum, so that a small per-element share is never rounded on its own
(cosine_embedding_loss's kernel then returns the loss's float64 sum too, divided here).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Union

import numpy as np

from ._aliasing import separate_from
from ._validation import _is_supported_float, _to_ndarray, is_aligned, refuse_masked

__all__ = [
    "LossAndGrad",
    "LossAndLse",
    "LossLseAndGrad",
    "LossValue",
    "check_grad_out",
    "check_gradient_options",
    "gradient_in_dtype",
    "gradient_operands",
    "loss_value",
    "promoted_grad_out",
    "sum_to_shape",
]

LossValue = Union[np.ndarray, np.floating]

_FLOAT32, _FLOAT64 = np.dtype(np.float32), np.dtype(np.float64)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class LossAndGrad(NamedTuple):
    """What a loss returns with ``return_grad=True``: the loss, and its gradient with respect to
    the first array argument (of ``sum(grad_output * loss)`` for ``reduction="none"``)."""

    loss: LossValue
    grad: np.ndarray


class LossAndLse(NamedTuple):
    """What `cross_entropy` returns with ``return_lse=True``: the loss, and each position's
    log-sum-exp of its logits (the per-position shape)."""

    loss: LossValue
    lse: np.ndarray


class LossLseAndGrad(NamedTuple):
    """`cross_entropy` with ``return_lse=True`` and ``return_grad=True``: the loss, each
    position's log-sum-exp, and the gradient with respect to the logits."""

    loss: LossValue
    lse: np.ndarray
    grad: np.ndarray


def check_gradient_options(return_grad: bool, grad_output: Any, grad_out: Any) -> None:
    if not return_grad and (grad_output is not None or grad_out is not None):
        raise ValueError("grad_output and grad_out are only used with return_grad=True")


def check_grad_out(
    grad_out: Any,
    shape: tuple[int, ...],
    dtype: np.dtype,
    name: str = "grad_out",
    of: str = "the input",
) -> np.ndarray:
    """grad_out (or the buffer `name`), checked to be a writeable array of the shape and dtype of
    `of`, the array whose gradient it receives."""
    if not isinstance(grad_out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(grad_out).__name__}")
    refuse_masked(grad_out, name)
    if grad_out.shape != shape or grad_out.dtype != dtype:
        raise ValueError(
            f"{name} must have {of}'s shape {shape} and dtype {dtype}, "
            f"got shape {grad_out.shape} and dtype {grad_out.dtype}"
        )
    if not grad_out.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    return grad_out


def gradient_operands(
    x: np.ndarray,
    positions: tuple[int, ...],
    reduction: str,
    grad_output: Any,
    grad_out: Any,
) -> tuple[np.ndarray, np.ndarray, Any]:
    """(input, gradient buffer, grad_output as the kernels take it), each separate from the
    gradient buffer but for the input, which may be that buffer itself (see _aliasing).
    `positions` is the loss's shape (of reduction "none")."""
    dtype = x.dtype
    if grad_out is None:
        grad = np.empty_like(x)
    else:
        grad = check_grad_out(grad_out, x.shape, dtype)
        x = separate_from(grad, x, may_alias=True)
    if grad_output is None:
        return x, grad, None
    if reduction == "none":
        go = _to_ndarray(grad_output, "grad_output")
        if go.dtype.kind not in "iu" and not _is_supported_float(go.dtype.newbyteorder("=")):
            raise TypeError(f"grad_output must be numeric, got dtype {go.dtype}")
        if go.shape != positions:
            try:  # a broadcastable grad_output (a scalar, say) is a zero-stride view, not a copy
                go = np.broadcast_to(go, positions)
            except ValueError:
                raise ValueError(
                    f"grad_output must have the loss's shape {positions}, got {go.shape}"
                ) from None
        go = np.asarray(go, dtype=dtype)
        return x, grad, separate_from(grad_out, go if go.flags.aligned else go.copy())
    if np.ndim(grad_output) != 0:
        raise ValueError(
            f"grad_output must be a number for reduction={reduction!r}, "
            f"got shape {np.shape(grad_output)}"
        )
    return x, grad, float(grad_output)


def promoted_grad_out(
    grad_out: Any, shape: tuple[int, ...], input_dtype: np.dtype, result_dtype: np.dtype
) -> tuple[Any, Optional[np.ndarray]]:
    """Gradients are returned in the input's dtype. When mixed dtypes promoted the input to
    `result_dtype`, or grad_out is misaligned (kernels store whole elements), the kernel writes
    the gradient into a new array and the caller's grad_out (checked against the input's dtype)
    receives it afterwards: returns (grad_out for the kernel, that final array or None)."""
    if grad_out is None or (input_dtype == result_dtype and is_aligned(grad_out)):
        return grad_out, None
    return None, check_grad_out(grad_out, shape, input_dtype)


def gradient_in_dtype(grad: np.ndarray, dtype: np.dtype, final: Optional[np.ndarray]) -> np.ndarray:
    """The gradient as returned: in `dtype` (the input's), written to `final` if given."""
    with np.errstate(over="ignore"):  # beyond float16's range is inf
        if final is not None:
            np.copyto(final, grad, casting="unsafe")
            return final
        return grad if grad.dtype == dtype else grad.astype(dtype)


def sum_to_shape(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The gradient of a broadcast operand of `shape`: `grad` summed, in float64, over the axes
    that broadcasting added or stretched (as PyTorch's sum_to_size)."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + k for k, n in enumerate(shape) if n == 1 and grad.shape[lead + k] != 1
    )
    # (np.asarray: summing everything into a 0-d input gives a NumPy scalar, not an array)
    return np.asarray(grad.sum(axis=axes, dtype=np.float64)).reshape(shape)


def loss_value(
    value: Any, out: Optional[np.ndarray], reduction: str, result_dtype: np.dtype
) -> LossValue:
    """The loss as returned: `out` (reduction "none") in the result dtype, or the reduced `value`
    (a Python float, or already a NumPy scalar of the result dtype) as a NumPy scalar."""
    if reduction == "none":
        assert out is not None
        return out if out.dtype == result_dtype else out.astype(result_dtype)
    if type(value) is not float:
        return value
    if result_dtype == _FLOAT64 or (result_dtype == _FLOAT32 and abs(value) <= _FLOAT32_MAX):
        return result_dtype.type(value)  # the common case: no overflow to silence
    with np.errstate(over="ignore"):  # beyond float16's range is inf, as in PyTorch
        if result_dtype.kind == "f":
            return result_dtype.type(value)
        return np.asarray(value, dtype=np.float32).astype(result_dtype)[()]  # bfloat16
