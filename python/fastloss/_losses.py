"""cross_entropy and nll_loss: torch.nn.functional's semantics, fused kernels."""

from __future__ import annotations

import operator
from typing import Any, Optional, Union

import numpy as np

from . import _core
from ._validation import (
    _is_supported_float,
    _to_ndarray,
    as_float_array,
    as_index_array,
    check_reduction,
    compute_dtype,
    normalize_axis,
)

__all__ = ["cross_entropy", "nll_loss"]

LossValue = Union[np.ndarray, np.floating]


def _class_axis(ndim: int, axis: Any) -> int:
    """PyTorch's rule when axis is None: the class axis is 1 for ndim >= 2, else 0."""
    if ndim == 0:
        raise ValueError("input must have at least one dimension (the classes), got a 0-d array")
    if axis is None:
        return 1 if ndim >= 2 else 0
    return normalize_axis(axis, ndim)


def _position_shape(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return shape[:axis] + shape[axis + 1 :]


def _weight_array(weight: Any, classes: int, dtype: np.dtype) -> Optional[np.ndarray]:
    if weight is None:
        return None
    w = weight if type(weight) is np.ndarray else _to_ndarray(weight)
    if not _is_supported_float(w.dtype.newbyteorder("=")):
        raise TypeError(f"weight must be a floating-point array, got dtype {w.dtype}")
    if w.shape != (classes,):
        raise ValueError(
            f"weight must have shape ({classes},), one value per class, got shape {w.shape}"
        )
    return np.ascontiguousarray(w, dtype=dtype)


def _ignore_index(ignore_index: Any) -> int:
    try:
        return operator.index(ignore_index)
    except TypeError:
        raise TypeError(
            f"ignore_index must be an integer, got {type(ignore_index).__name__}"
        ) from None


def _index_target(target: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    t = as_index_array(target, "target")
    expected = _position_shape(x.shape, axis)
    if t.shape != expected:
        raise ValueError(
            f"target has shape {t.shape}, expected {expected}: the input's shape {x.shape} "
            f"without the class axis {axis}"
        )
    return t


def _finish(value: float, out: Optional[np.ndarray], reduction: str, result_dtype: np.dtype) -> LossValue:
    if reduction == "none":
        assert out is not None
        return out if out.dtype == result_dtype else out.astype(result_dtype)
    if result_dtype.kind == "f":
        return result_dtype.type(value)
    return np.asarray(value, dtype=np.float32).astype(result_dtype)[()]  # bfloat16


def cross_entropy(
    input: Any,
    target: Any,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    axis: Optional[int] = None,
) -> LossValue:
    """Cross-entropy between logits and targets, as ``torch.nn.functional.cross_entropy``.

    `target` holds class indices (any integer dtype; shape = input's shape without the class
    axis) or class probabilities (floating, the input's shape). The class axis is 1 for inputs
    with two or more dimensions and 0 otherwise, as in PyTorch; ``axis=-1`` takes (B, T, V)
    language-model logits with (B, T) targets as they are.

    - ``weight`` (C,): per-class weights; ``mean`` then divides by the summed weights of the
      non-ignored targets (probability targets: by the number of positions).
    - ``ignore_index``: positions with this target contribute nothing (index targets only).
    - ``label_smoothing`` in [0, 1]: PyTorch's formula, the smoothing term weighted per class.
    - ``reduction``: "mean" (NaN when every target is ignored), "sum" or "none".

    Returns a NumPy scalar of the input's dtype, or an array for ``reduction="none"``.
    Raises IndexError for a target outside [0, C) that is not ignore_index.
    """
    if (
        weight is None
        and (axis is None or axis == -1)
        and type(ignore_index) is int
        and type(label_smoothing) is float
    ):
        # The common small call, decided and run in C++ (None: not that case, or an error whose
        # message the general path below gives).
        value = _core.cross_entropy_common_case(input, target, ignore_index, reduction, label_smoothing)
        if value is not None:
            return value
    x = as_float_array(input, "input")
    reduction = check_reduction(reduction)
    ax = _class_axis(x.ndim, axis)
    result_dtype = x.dtype
    work_dtype = compute_dtype(result_dtype)
    if work_dtype != result_dtype:  # half precision: computed in float32
        x = x.astype(work_dtype)
    ls = float(label_smoothing)
    if not 0.0 <= ls <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0, got {label_smoothing!r}")
    ignore = _ignore_index(ignore_index)

    t = target if type(target) is np.ndarray else _to_ndarray(target)
    if t.dtype.kind in "fV" or t.dtype == np.float16:  # probabilities
        if t.shape != x.shape:
            raise (TypeError if t.shape == _position_shape(x.shape, ax) else ValueError)(
                f"target of dtype {t.dtype} and shape {t.shape}: class indices must be integers, "
                f"and probabilities must have the input's shape {x.shape}"
            )
        if ignore >= 0:
            raise ValueError(
                f"ignore_index is not supported for probability targets (got ignore_index={ignore})"
            )
        t = as_float_array(t, "target").astype(work_dtype, copy=False)
    else:
        t = _index_target(t, x, ax)

    w = _weight_array(weight, x.shape[ax], work_dtype)
    out = np.empty(_position_shape(x.shape, ax), work_dtype) if reduction == "none" else None
    value = _core.cross_entropy(x, t, w, ignore, ls, reduction, ax, out)
    return _finish(value, out, reduction, result_dtype)


def nll_loss(
    input: Any,
    target: Any,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    axis: Optional[int] = None,
) -> LossValue:
    """Negative log-likelihood of log-probabilities, as ``torch.nn.functional.nll_loss``.

    loss = -weight[y] * input[y] per position (0 where the target is ignore_index); ``mean``
    divides by the summed weights of the non-ignored targets. Shapes and the class axis as in
    `cross_entropy`; targets are class indices of any integer dtype.
    """
    if weight is None and (axis is None or axis == -1) and type(ignore_index) is int:
        value = _core.nll_loss_common_case(input, target, ignore_index, reduction)  # see cross_entropy
        if value is not None:
            return value
    x = as_float_array(input, "input")
    reduction = check_reduction(reduction)
    ax = _class_axis(x.ndim, axis)
    result_dtype = x.dtype
    work_dtype = compute_dtype(result_dtype)
    if work_dtype != result_dtype:
        x = x.astype(work_dtype)
    t = _index_target(target, x, ax)
    w = _weight_array(weight, x.shape[ax], work_dtype)
    out = np.empty(_position_shape(x.shape, ax), work_dtype) if reduction == "none" else None
    value = _core.nll_loss(x, t, w, _ignore_index(ignore_index), reduction, ax, out)
    return _finish(value, out, reduction, result_dtype)

