"""distillation_loss with a top-k teacher (``teacher_topk=(indices, logprobs)``): the teacher of a
large vocabulary kept as its k most likely classes per position, so that no N x C teacher array
exists. One fused kernel per position (cpp/src/kernels/topk_distillation.cpp) reads the student's
row once for every sum, gathers the k entries, and writes the gradient from L1/L2.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import _core
from ._aliasing import separate_from
from ._class_losses import (
    class_target,
    in_result_dtype,
    position_shape,
    probabilities_or_none,
)
from ._gradient import (
    LossAndGrad,
    LossValue,
    gradient_in_dtype,
    gradient_operands,
    loss_value,
    promoted_grad_out,
)
from ._losses import cross_entropy
from ._validation import as_float_array, as_index_array, promote_dtypes

__all__ = ["TOPK_RESIDUALS", "check_topk_residual", "topk_distillation_loss"]

TOPK_RESIDUALS = ("renormalize", "tail")
_DIVERGENCE_CODES = {"kl": 0, "reverse_kl": 1, "jsd": 2}


def check_topk_residual(residual: Any) -> str:
    if not isinstance(residual, str) or residual not in TOPK_RESIDUALS:
        raise ValueError(
            "topk_residual must be one of "
            f"{', '.join(map(repr, TOPK_RESIDUALS))}, got {residual!r}"
        )
    return residual


def _teacher_entries(
    teacher_topk: Any, s: np.ndarray, axis: int
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, logprobs), checked to be integers and floats of the student's shape with k in
    place of its C classes, 1 <= k <= C. Their values are checked by the kernel's caller in C++
    (distinct classes in [0, C))."""
    if not isinstance(teacher_topk, (tuple, list)) or len(teacher_topk) != 2:
        raise TypeError(
            "teacher_topk must be a pair (indices, logprobs), got "
            f"{type(teacher_topk).__name__}"
        )
    indices = as_index_array(teacher_topk[0], "teacher_topk indices")
    logprobs = as_float_array(teacher_topk[1], "teacher_topk logprobs")
    classes = s.shape[axis]
    positions = position_shape(s.shape, axis)
    if indices.ndim != s.ndim or position_shape(indices.shape, axis) != positions:
        raise ValueError(
            f"teacher_topk indices have shape {indices.shape}; expected the student's shape "
            f"{s.shape} with k entries in place of its {classes} classes (axis {axis})"
        )
    if logprobs.shape != indices.shape:
        raise ValueError(
            f"teacher_topk logprobs have shape {logprobs.shape}, expected the indices' shape "
            f"{indices.shape}"
        )
    k = indices.shape[axis]
    if not 1 <= k <= classes:
        raise ValueError(
            f"teacher_topk must hold between 1 and {classes} (the classes) entries per position, "
            f"got k={k}"
        )
    return indices, logprobs


def _as_rows(a: np.ndarray, axis: int, dtype: Optional[np.dtype] = None) -> np.ndarray:
    """`a` with its class axis last, as (positions, classes) rows whose classes are contiguous:
    a view where one exists, else a copy."""
    moved = np.moveaxis(a, axis, -1)
    rows = moved.reshape(-1, a.shape[axis]) if a.ndim != 1 else moved.reshape(1, -1)
    if dtype is not None and rows.dtype != dtype:
        return np.ascontiguousarray(rows, dtype=dtype)
    if rows.shape[1] > 1 and rows.strides[1] != rows.itemsize:
        return np.ascontiguousarray(rows)
    return rows


def topk_distillation_loss(
    s: np.ndarray,
    teacher_topk: Any,
    target: Any,
    *,
    axis: int,
    temperature: float,
    alpha: float,
    divergence: str,
    beta: float,
    topk_residual: str,
    reduction: str,
    weight: Optional[np.ndarray],
    ignore_index: int,
    label_smoothing: float,
    z_loss: float,
    softcap: float,
    return_grad: bool,
    grad_output: Any,
    grad_out: Any,
) -> LossValue | LossAndGrad:
    """distillation_loss's teacher_topk path; the options are checked by distillation_loss."""
    indices, logprobs = _teacher_entries(teacher_topk, s, axis)
    classes, k = s.shape[axis], indices.shape[axis]
    if divergence == "jsd" and beta in (0.0, 1.0):  # Liger's limits, as in the dense kernels
        divergence = "kl" if beta == 0.0 else "reverse_kl"
    if divergence == "reverse_kl" and topk_residual == "renormalize" and k < classes:
        raise ValueError(
            "divergence='reverse_kl' (or 'jsd' with beta=1) with topk_residual='renormalize' is "
            f"infinite when k={k} < {classes} classes: the renormalized teacher has no mass "
            "outside its top-k, where the student has some; use topk_residual='tail'"
        )
    y = class_target(target, s, axis, ignore_index, "the logits'")
    input_dtype = s.dtype
    result_dtype = promote_dtypes(
        student_logits=s, teacher_logprobs=logprobs, target=probabilities_or_none(y), weight=weight
    )
    s, y, weight = in_result_dtype(result_dtype, s, y, weight)
    compute = np.dtype(np.float32) if result_dtype.itemsize == 2 else result_dtype
    positions = position_shape(s.shape, axis)
    n = int(np.prod(positions, dtype=np.int64))
    index_targets = y.dtype == np.int64

    grad = go = final = None
    if return_grad:
        grad_out, final = promoted_grad_out(grad_out, s.shape, input_dtype, result_dtype)
        s, grad, go = gradient_operands(s, positions, reduction, grad_output, grad_out)
    rows = _as_rows(s, axis)
    idx = separate_from(grad_out, np.ascontiguousarray(_as_rows(indices, axis)))
    lp = separate_from(grad_out, np.ascontiguousarray(_as_rows(logprobs, axis, compute)))
    y_rows = separate_from(grad_out, np.ascontiguousarray(y.reshape(n))) if index_targets else None
    w = None if weight is None else separate_from(grad_out, weight.astype(compute, copy=False))

    # The reduction's factors: the hard term's mean divides by the summed weights of the counted
    # targets (every position for probability targets), the divergence's by shape[0] (batchmean),
    # the z-loss's by the count of counted positions (Liger's).
    mean = reduction == "mean"
    if index_targets:
        counted = y_rows != ignore_index
        count = int(np.count_nonzero(counted))
        hard_denominator = (
            # (clipped: a target out of range raises in the kernel's checks, before any use)
            float(np.sum(w.take(y_rows[counted], mode="clip"), dtype=np.float64))
            if w is not None
            else float(count)
        )
    else:
        counted, count, hard_denominator = None, n, float(n)
    batch = float(s.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):  # no counted target: NaN, as 0/0 is
        hard_grad = float(np.float64(alpha) / hard_denominator) if mean else alpha
        z_ratio = float(np.float64(hard_denominator) / count) if mean else 1.0
        soft_grad = float(np.float64((1.0 - alpha) * temperature) / (batch if mean else 1.0))

    ce = None
    if not index_targets:
        # Probability targets: the hard term is cross_entropy's, with its own fused gradient,
        # taken before the kernel, which may overwrite s with the gradient (grad_out=s).
        ce = _probability_hard_term(
            s, y, weight, axis, reduction, alpha, label_smoothing, z_loss, softcap, go, return_grad
        )

    hard, soft, lse = (np.empty(n, compute) for _ in range(3))
    grad_rows = scale = None
    if return_grad:
        grad_rows = _as_rows(grad, axis)
        if not np.may_share_memory(grad_rows, grad) and grad_rows.size:
            grad_rows = np.empty((n, classes), result_dtype)  # written back below
        if reduction == "none" and go is not None:
            scale = np.ascontiguousarray(np.asarray(go).reshape(n), dtype=compute)
        else:
            scale = np.full(n, 1.0 if go is None else go, compute)
        scale = separate_from(grad_out, scale)
    _core.topk_distillation(
        rows, idx, lp, y_rows, w, hard, soft, lse, grad_rows, scale,
        ignore_index=ignore_index, label_smoothing=label_smoothing if index_targets else 0.0,
        temperature=temperature, divergence=_DIVERGENCE_CODES[divergence], beta=beta,
        residual=TOPK_RESIDUALS.index(topk_residual), softcap=softcap, hard_grad=hard_grad,
        soft_grad=soft_grad, z_loss_grad=2.0 * z_loss * z_ratio if return_grad else 0.0,
    )
    if return_grad and not np.may_share_memory(grad_rows, grad) and grad_rows.size:
        moved = np.moveaxis(grad, axis, -1)
        np.copyto(moved, grad_rows.reshape(moved.shape))

    soft_scale = (1.0 - alpha) * temperature * temperature
    with np.errstate(divide="ignore", invalid="ignore"):
        if index_targets:
            hard_terms = hard.astype(np.float64)
            if z_loss:
                hard_z = np.where(counted, lse.astype(np.float64) ** 2, 0.0)
        if reduction == "none":
            total = soft_scale * soft.astype(np.float64)
            if ce is None:
                total += alpha * (hard_terms + z_loss * hard_z if z_loss else hard_terms)
            else:
                total += alpha * np.asarray(ce.loss, np.float64).reshape(n)
            out = total.reshape(positions).astype(result_dtype)
            value: Any = None
        else:
            out = None
            if ce is not None:
                hard_value = float(ce.loss)
            else:
                hard_total = float(np.sum(hard_terms))
                z_total = z_loss * float(np.sum(hard_z)) if z_loss else 0.0
                hard_value = (
                    float(np.float64(hard_total) / hard_denominator + np.float64(z_total) / count)
                    if mean
                    else hard_total + z_total
                )
            soft_total = float(np.sum(soft, dtype=np.float64))
            soft_value = float(np.float64(soft_total) / (batch if mean else 1.0))
            value = alpha * hard_value + soft_scale * soft_value
    loss = loss_value(value, out, reduction, result_dtype)
    if not return_grad:
        return loss
    if ce is not None:
        grad += ce.grad
    return LossAndGrad(loss, gradient_in_dtype(grad, input_dtype, final))


def _probability_hard_term(
    s: np.ndarray,
    q: np.ndarray,
    weight: Optional[np.ndarray],
    axis: int,
    reduction: str,
    alpha: float,
    label_smoothing: float,
    z_loss: float,
    softcap: float,
    go: Any,
    return_grad: bool,
) -> Any:
    """cross_entropy against probability targets, with the gradient of alpha times it."""
    grad_output = None
    if return_grad:
        if reduction == "none":
            grad_output = alpha * (1.0 if go is None else np.asarray(go, np.float64))
        else:
            grad_output = alpha * (1.0 if go is None else go)
    ce = cross_entropy(
        s, q, weight=weight, label_smoothing=label_smoothing, z_loss=z_loss,
        softcap=softcap or None, reduction=reduction, axis=axis, return_grad=return_grad,
        grad_output=grad_output,
    )
    return ce if return_grad else LossAndGrad(ce, None)
