"""cosine_embedding_loss: torch.nn.functional.cosine_embedding_loss, one fused pass per row."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._distillation import _common_dtype, _real
from ._losses import LossValue, _finish
from ._validation import _to_ndarray, as_float_array, check_reduction, compute_dtype

__all__ = ["cosine_embedding_loss"]


def _contiguous_rows(x: np.ndarray) -> np.ndarray:
    """The kernel reads rows of contiguous values (any row stride, 0 included)."""
    if x.shape[1] > 1 and x.strides[1] != x.itemsize:
        return np.ascontiguousarray(x)
    return x


def cosine_embedding_loss(
    x1: Any, x2: Any, target: Any, *, margin: float = 0.0, reduction: str = "mean"
) -> LossValue:
    """Cosine embedding loss, as ``torch.nn.functional.cosine_embedding_loss``.

    ``x1`` and ``x2`` are (N, D) with ``target`` (N,), or (D,) with a 0-d target; the two
    inputs broadcast against each other. Per row, PyTorch's own cosine (not
    ``F.cosine_similarity``'s): ``cos = sum(x1 * x2) / sqrt((sum(x1**2) + 1e-12) *
    (sum(x2**2) + 1e-12))`` (PyTorch's EPSILON is the float32 constant 1e-12, also for
    float64 inputs), and the loss is ``1 - cos`` where ``target == 1``,
    ``max(0, cos - margin)`` where ``target == -1`` and 0 for any other target value (no
    error, as in PyTorch). A zero vector has cos = 0. ``reduction``: "mean" over rows (NaN
    for N = 0), "sum" or "none".
    """
    a = as_float_array(x1, "x1")
    b = as_float_array(x2, "x2")
    reduction = check_reduction(reduction)
    m = _real(margin, "margin")
    y = target if type(target) is np.ndarray else _to_ndarray(target)
    if y.dtype.kind not in "iuf" and y.dtype != np.float16 and y.dtype.name != "bfloat16":
        raise TypeError(f"target must be a numeric array of 1 and -1, got dtype {y.dtype}")
    if a.ndim != b.ndim or a.ndim not in (1, 2):
        raise ValueError(
            f"x1 and x2 must both be (N, D) or both (D,) arrays, got shapes {a.shape} and {b.shape}"
        )
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"x1 of shape {a.shape} and x2 of shape {b.shape} cannot be broadcast together"
        ) from None
    expected_target = shape[:-1]
    if y.shape != expected_target:
        raise ValueError(
            f"target has shape {y.shape}, expected {expected_target} for inputs of shape {shape}"
        )
    result_dtype = _common_dtype(a.dtype, b.dtype)
    work_dtype = compute_dtype(result_dtype)
    rows_shape = (int(np.prod(shape[:-1], dtype=np.int64)), shape[-1])
    a = np.broadcast_to(a.astype(work_dtype, copy=False), shape).reshape(rows_shape)
    b = np.broadcast_to(b.astype(work_dtype, copy=False), shape).reshape(rows_shape)
    a, b = _contiguous_rows(a), _contiguous_rows(b)
    y64 = np.asarray(y, dtype=np.float64).reshape(-1)
    rows = a.shape[0]
    out = np.empty(rows, work_dtype) if reduction == "none" else None
    value = _core.cosine_embedding_loss(a, b, y64, m, reduction, out)
    if out is not None:
        out = out.reshape(expected_target)
    return _finish(value, out, reduction, result_dtype)
