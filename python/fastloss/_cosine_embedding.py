"""cosine_embedding_loss: torch.nn.functional.cosine_embedding_loss, one fused pass per row."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _core
from ._aliasing import separate_from
from ._gradient import (
    LossAndGrad,
    LossValue,
    check_gradient_options,
    gradient_in_dtype,
    gradient_operands,
    loss_value,
    promoted_grad_out,
    sum_to_shape,
)
from ._validation import (
    _to_ndarray,
    as_float_array,
    broadcast_shapes,
    broadcast_view,
    check_reduction,
    promote_dtypes,
    real_number,
)

__all__ = ["cosine_embedding_loss"]


def cosine_embedding_loss(
    x1: Any,
    x2: Any,
    target: Any,
    *,
    margin: float = 0.0,
    reduction: str = "mean",
    return_grad: bool = False,
    grad_output: Any = None,
    grad_out: np.ndarray | None = None,
) -> LossValue | LossAndGrad:
    """Cosine embedding loss, as ``torch.nn.functional.cosine_embedding_loss``.

    ``x1`` and ``x2`` are (N, D) with ``target`` (N,), or (D,) with a 0-d target; the two
    inputs broadcast against each other along N (a (1, D) input against (N, D)); D must be
    equal (PyTorch broadcasts a length-1 D too but then divides by each input's own norm, a
    "cosine" that can exceed 1: ValueError here). Per row, PyTorch's own cosine (not
    ``F.cosine_similarity``'s): ``cos = sum(x1 * x2) / sqrt((sum(x1**2) + 1e-12) *
    (sum(x2**2) + 1e-12))`` (PyTorch's EPSILON is the float32 constant 1e-12, also for
    float64 inputs), and the loss is ``1 - cos`` where ``target == 1``,
    ``max(0, cos - margin)`` where ``target == -1`` and 0 for any other target value (no
    error, as in PyTorch). A zero vector has cos = 0. ``reduction``: "mean" over rows (NaN
    for N = 0), "sum" or "none".

    With ``return_grad=True``, returns ``LossAndGrad(loss, grad)``, the gradient with respect to
    `x1` computed in the same pass (``d cos/d x1 = x2 / Dn - cos * x1 / (|x1|**2 + 1e-12)``
    with ``Dn`` the denominator above, times -1 where ``target == 1``, +1 where
    ``target == -1`` and ``cos >= margin``, 0 elsewhere, as PyTorch's autograd). A broadcast
    `x1` gets the gradient summed over the rows it was broadcast to. ``grad_output`` and
    ``grad_out`` as in `cross_entropy` (``grad_out`` may be `x1` itself).
    """
    result = _core.cosine_embedding_loss_common_case(  # see cross_entropy
        x1, x2, target, margin, reduction, return_grad, grad_output, grad_out
    )
    if result is not None:
        return result
    check_gradient_options(return_grad, grad_output, grad_out)
    a = as_float_array(x1, "x1")
    b = as_float_array(x2, "x2")
    reduction = check_reduction(reduction)
    m = real_number(margin, "margin")
    y = target if type(target) is np.ndarray else _to_ndarray(target, "target")
    if y.dtype.kind not in "iuf" and y.dtype != np.float16 and y.dtype.name != "bfloat16":
        raise TypeError(f"target must be a numeric array of 1 and -1, got dtype {y.dtype}")
    if a.ndim != b.ndim or a.ndim not in (1, 2):
        raise ValueError(
            f"x1 and x2 must both be (N, D) or both (D,) arrays, got shapes {a.shape} and {b.shape}"
        )
    try:
        shape = broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"x1 of shape {a.shape} and x2 of shape {b.shape} cannot be broadcast together"
        ) from None
    if a.shape[-1] != b.shape[-1]:
        # PyTorch broadcasts a length-1 feature axis in x1 * x2 but takes each input's squared
        # norm over its own length: a "cosine" above 1, not one this function can return.
        raise ValueError(
            f"x1 of shape {a.shape} and x2 of shape {b.shape} must have the same number of "
            "features (last axis); only the batch axis broadcasts"
        )
    expected_target = shape[:-1]
    if y.shape != expected_target:
        raise ValueError(
            f"target has shape {y.shape}, expected {expected_target} for inputs of shape {shape}"
        )
    input_dtype = a.dtype
    result_dtype = promote_dtypes(x1=a, x2=b)
    rows_shape = (math.prod(shape[:-1]), shape[-1])
    a = a.astype(result_dtype, copy=False)
    b = b.astype(result_dtype, copy=False)
    rows = rows_shape[0]
    y64 = np.asarray(y, dtype=np.float64).reshape(-1)
    if not y64.flags.aligned:  # a misaligned float64 target is not copied by asarray
        y64 = y64.copy()
    out = np.empty(rows, result_dtype) if reduction == "none" else None
    grad = kernel_grad = go = None
    direct = False  # whether the kernel writes the gradient into `grad` itself
    if return_grad:
        grad_out, final = promoted_grad_out(grad_out, a.shape, input_dtype, result_dtype)
        a, grad, go = gradient_operands(a, expected_target, reduction, grad_output, grad_out)
        if go is not None and reduction == "none":
            go = go.reshape(rows)
        b, y64 = separate_from(grad_out, b), separate_from(grad_out, y64)
        # A broadcast x1's gradient is a sum over rows: it goes through a temporary.
        direct = a.shape == shape
        kernel_grad = grad.reshape(rows_shape) if direct else np.empty(rows_shape, result_dtype)
    # Any layout is read as it is (no copy): (N, D) and (D,) inputs are (rows, D) views.
    a_rows = broadcast_view(a, shape).reshape(rows_shape)
    b_rows = broadcast_view(b, shape).reshape(rows_shape)
    # A broadcast x1's gradient is a sum over rows: under "mean" the kernel sums (its per-row terms
    # then are not divided by N, which in float16 could make them subnormal) and the division by
    # N joins the float64 sum below, as it does the loss here.
    divide_later = return_grad and not direct and reduction == "mean"
    kernel_reduction = "sum" if divide_later else reduction
    value = _core.cosine_embedding_loss(
        a_rows, b_rows, y64, m, kernel_reduction, out, kernel_grad, go
    )
    if divide_later:
        value = value / rows if rows else float("nan")
    if out is not None:
        out = out.reshape(expected_target)
    loss = loss_value(value, out, reduction, result_dtype)
    if not return_grad:
        return loss
    assert grad is not None and kernel_grad is not None
    if not direct:
        full = kernel_grad.reshape(shape)
        summed = sum_to_shape(full, grad.shape)  # over the rows x1 was repeated along
        grad[...] = summed / rows if divide_later and rows else summed
    return LossAndGrad(loss, gradient_in_dtype(grad, input_dtype, final))
