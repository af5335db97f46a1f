"""kl_div, binary_cross_entropy and binary_cross_entropy_with_logits: torch.nn.functional's
semantics, one fused pass over broadcast operands.

Broadcasting happens here, as zero-stride views (``np.broadcast_to``): nothing of the input's size
is copied unless the dtype must change (half precision is computed in float32).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from . import _core
from ._losses import LossValue, _finish
from ._validation import as_float_array, check_reduction, compute_dtype

__all__ = ["binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div"]

_KL_REDUCTIONS = ("none", "batchmean", "sum", "mean")

# PyTorch's text, verbatim (torch.nn.functional.kl_div).
_KL_MEAN_WARNING = (
    "reduction: 'mean' divides the total loss by both the batch size and the support size."
    "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
    "'mean' will be changed to behave the same as 'batchmean' in the next major release."
)


def _result_dtype(*arrays: np.ndarray) -> np.dtype:
    """The dtype of the result: the operands' dtype when they agree, else NumPy's promotion of
    their computation dtypes (float16/bfloat16 count as float32)."""
    first = arrays[0].dtype
    if all(a.dtype == first for a in arrays):
        return first
    result = compute_dtype(first)
    for a in arrays[1:]:
        result = np.promote_types(result, compute_dtype(a.dtype))
    return result


def _broadcast_operand(
    a: Any, name: str, shape: tuple[int, ...], dtype: np.dtype, hint: str = ""
) -> np.ndarray | None:
    """An optional operand (weight, pos_weight) as a zero-stride view of `shape`, in `dtype`."""
    if a is None:
        return None
    arr = as_float_array(a, name).astype(dtype, copy=False)
    try:
        return np.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(
            f"{name} of shape {arr.shape} cannot be broadcast to the input shape {shape}"
            f" (NumPy broadcasting, aligned on the last axis){hint}"
        ) from None


def _reduce(
    value: float,
    out: np.ndarray | None,
    reduction: str,
    count: int,
    result_dtype: np.dtype,
) -> LossValue:
    """The sum `value` (or the per-element `out`) as the requested reduction; mean over `count`."""
    if reduction == "mean" or reduction == "batchmean":
        value = value / count if count else float("nan")
    return _finish(value, out, "none" if reduction == "none" else "sum", result_dtype)


def kl_div(
    input: Any,
    target: Any,
    *,
    reduction: str = "mean",
    log_target: bool = False,
) -> LossValue:
    """Kullback-Leibler divergence, as ``torch.nn.functional.kl_div``.

    `input` holds log-probabilities log q; `target` holds probabilities p (log-probabilities with
    ``log_target=True``). Pointwise loss: ``p * (log p - input)``, 0 where p = 0 (unless input is
    -inf or NaN, which gives NaN, as PyTorch), NaN where p < 0; with ``log_target``:
    ``exp(target) * (target - input)``. input and target broadcast against each other.

    - ``reduction="batchmean"``: the sum divided by ``input.shape[0]`` (the KL divergence per
      sample; for 1-D input that is the number of elements; NaN for an empty batch).
    - ``"sum"``, ``"none"`` (an array of the broadcast shape).
    - ``"mean"`` (the default, as in PyTorch): the sum divided by the number of elements; warns,
      with PyTorch's message, that this is not the KL divergence.

    Returns a NumPy scalar of the computation dtype, or an array for ``reduction="none"``.
    """
    reduction = check_reduction(reduction, _KL_REDUCTIONS)
    if reduction == "mean":
        warnings.warn(_KL_MEAN_WARNING, UserWarning, stacklevel=2)
    x = as_float_array(input, "input")
    t = as_float_array(target, "target")
    result_dtype = _result_dtype(x, t)
    work = compute_dtype(result_dtype)
    try:
        shape = np.broadcast_shapes(x.shape, t.shape)
    except ValueError:
        raise ValueError(
            f"input of shape {x.shape} and target of shape {t.shape} cannot be broadcast together"
        ) from None
    batch = x.shape[0] if x.ndim else None  # batchmean divides by input's first dimension
    x = np.broadcast_to(x.astype(work, copy=False), shape)
    t = np.broadcast_to(t.astype(work, copy=False), shape)
    out = np.empty(shape, work) if reduction == "none" else None
    value = _core.kl_div(x, t, bool(log_target), out)
    if reduction == "batchmean" and batch is None:  # 0-d input: PyTorch returns the sum
        reduction = "sum"
    count = batch if reduction == "batchmean" else int(np.prod(shape, dtype=np.int64))
    return _reduce(value, out, reduction, count, result_dtype)


def _same_shape_target(target: Any, x: np.ndarray, function: str) -> np.ndarray:
    t = as_float_array(target, "target")
    if t.shape != x.shape:
        raise ValueError(
            f"{function}: target has shape {t.shape}, which is different from the input shape "
            f"{x.shape}; they must be the same"
        )
    return t


def binary_cross_entropy(
    input: Any,
    target: Any,
    *,
    weight: Any = None,
    reduction: str = "mean",
) -> LossValue:
    """Binary cross-entropy of probabilities, as ``torch.nn.functional.binary_cross_entropy``.

    Pointwise: ``-weight * (y * max(log p, -100) + (1 - y) * max(log(1 - p), -100))``.
    `target` must have the input's shape; `weight` broadcasts to it (NumPy rules, aligned on the
    last axis: (C,) weighs classes, (N, 1) samples). ``"mean"`` divides the weighted sum by the
    number of elements (not by the summed weights), as PyTorch does.

    Raises ValueError when an input or target value lies outside [0, 1] (NaN included).
    """
    reduction = check_reduction(reduction)
    x = as_float_array(input, "input")
    t = _same_shape_target(target, x, "binary_cross_entropy")
    w = None if weight is None else as_float_array(weight, "weight")
    result_dtype = _result_dtype(x, t) if w is None else _result_dtype(x, t, w)
    work = compute_dtype(result_dtype)
    x = x.astype(work, copy=False)
    t = t.astype(work, copy=False)
    w = _broadcast_operand(w, "weight", x.shape, work)
    out = np.empty(x.shape, work) if reduction == "none" else None
    value = _core.binary_cross_entropy(x, t, w, out)
    return _reduce(value, out, reduction, x.size, result_dtype)


def binary_cross_entropy_with_logits(
    input: Any,
    target: Any,
    *,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: str = "mean",
) -> LossValue:
    """Binary cross-entropy of logits, as ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Pointwise, in the stable form: ``weight * ((1 - y) x + (1 + (pos_weight - 1) y) softplus(-x))``
    (= ``-weight * (pos_weight y log sigmoid(x) + (1 - y) log sigmoid(-x))``), finite for any
    finite x. `target` must have the input's shape and is not range-checked. `weight` and
    `pos_weight` broadcast to the input's shape aligned on the last axis, exactly as PyTorch's: a
    (C,) pos_weight acts on the last axis, so (N, C, H, W) input needs a (C, 1, 1) pos_weight.
    ``"mean"`` divides by the number of elements.
    """
    reduction = check_reduction(reduction)
    x = as_float_array(input, "input")
    t = _same_shape_target(target, x, "binary_cross_entropy_with_logits")
    extra = [
        as_float_array(a, n)
        for a, n in ((weight, "weight"), (pos_weight, "pos_weight"))
        if a is not None
    ]
    result_dtype = _result_dtype(x, t, *extra)
    work = compute_dtype(result_dtype)
    x = x.astype(work, copy=False)
    t = t.astype(work, copy=False)
    w = _broadcast_operand(weight, "weight", x.shape, work)
    pw = _broadcast_operand(
        pos_weight,
        "pos_weight",
        x.shape,
        work,
        hint="; a per-class pos_weight for (N, C, d1, ...) input needs shape (C, 1, ...)",
    )
    out = np.empty(x.shape, work) if reduction == "none" else None
    value = _core.binary_cross_entropy_with_logits(x, t, w, pw, out)
    return _reduce(value, out, reduction, x.size, result_dtype)
