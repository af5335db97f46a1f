"""PyTorch's denominators of ``reduction="mean"`` over a whole dask array (see the background
note on denominators): the summed class weights of the non-ignored index targets for the class
losses, the number of positions for probability targets, the number of elements (or the batch
size, kl_div's "batchmean") for the elementwise losses. Each is returned as the factor 1/D that
multiplies the float64 sum; a D that depends on the targets is a lazy 0-d dask array."""

from __future__ import annotations

import math
from typing import Any, Optional

import dask.array as da
import numpy as np

from .._linear_cross_entropy import index_target_weights

__all__ = ["distillation_factors", "elementwise_factor", "index_target_factor"]


def _reciprocal(d: Any) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.float64(1.0) / np.float64(d))


def elementwise_factor(shape_or_count: Any) -> float:
    """1 / (number of elements); inf for none (a mean over nothing is then 0 * inf = NaN)."""
    count = shape_or_count if isinstance(shape_or_count, int) else math.prod(shape_or_count)
    return float(_reciprocal(count))


def _target_weights(
    target: np.ndarray, classes: int, ignore_index: int, class_weight: Optional[np.ndarray]
) -> np.ndarray:
    return index_target_weights(target, classes, ignore_index, class_weight)[1]


def index_target_factor(
    target: da.Array, classes: int, ignore_index: int, class_weight: Optional[np.ndarray]
) -> da.Array:
    """1 / (summed weights of the non-ignored index targets), lazily. Computing it checks every
    target against [0, classes) (PyTorch's IndexError)."""
    denominator = index_target_denominator(target, classes, ignore_index, class_weight)
    return denominator.map_blocks(_reciprocal, dtype=np.float64)


def index_target_denominator(
    target: da.Array, classes: int, ignore_index: int, class_weight: Optional[np.ndarray]
) -> da.Array:
    w64 = None if class_weight is None else class_weight.astype(np.float64)
    weights = target.map_blocks(
        _target_weights, classes, ignore_index, w64, dtype=np.float64,
        meta=np.empty((0,) * target.ndim, np.float64),
    )
    return weights.sum(dtype=np.float64)


def _distillation_terms(denominator: Any, alpha: float, batch: int) -> np.ndarray:
    """(alpha', loss factor, gradient factor): see `distillation_factors`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ce = np.float64(alpha) / np.float64(denominator)
        kl = np.float64(1.0 - alpha) / np.float64(batch)
        if alpha == 0.0:
            return np.array([0.0, kl, kl])
        if not np.isfinite(ce):  # every target ignored: CE's 0/0, the KL gradient alone
            return np.array([0.0, np.nan, kl])
        g = ce + kl
        return np.array([ce / g, g, g])


def distillation_factors(denominator: Any, alpha: float, batch: int) -> tuple[Any, Any, Any]:
    """distillation_loss's mean is ``alpha * CE_sum / D + (1 - alpha) T^2 KL_sum / B``: two
    denominators that no single per-position factor gives. Per position it is
    ``g * (alpha' CE_i + (1 - alpha') T^2 KL_i)`` with ``g = alpha/D + (1-alpha)/B`` and
    ``alpha' = (alpha/D) / g``: the blocks run the NumPy function with alpha', its
    ``reduction="none"`` losses summed times g give the loss, and its gradient with
    grad_output g is the mean's gradient, in the one pass. Returns (alpha', loss factor,
    gradient factor), lazily when D is."""
    if not isinstance(denominator, da.Array):
        terms = _distillation_terms(denominator, alpha, batch)
        return float(terms[0]), float(terms[1]), float(terms[2])
    terms = denominator.map_blocks(
        _distillation_terms, alpha, batch, new_axis=0, chunks=((3,),), dtype=np.float64
    )
    return terms[0], terms[1], terms[2]
