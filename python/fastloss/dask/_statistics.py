"""Rows whose classes are spread over several blocks (class-axis chunks, or linear_cross_entropy's
vocabulary shards): each block folds its piece of every row into the mergeable row statistics of
`fastloss._row_statistics`, and `dask.array.reduction` merges the pieces with the same primitive
(`merge_row_statistics`) that linear_cross_entropy's vocabulary tiles use, in a tree.

A statistics array keeps the input's axes, with the class axis holding the five float64 fields
of each piece: 5 entries per class chunk before the merge, 5 after it. Keeping the fields on that
axis (rather than a new one) lets `dask.array.reduction` concatenate the pieces along it; the
reduction's ``output_size=5`` declares the merged width.
"""

from __future__ import annotations

from typing import Any, Optional

import dask.array as da
import numpy as np

from .. import _core
from .._linear_cross_entropy import gradient_factors, index_target_weights
from .._row_statistics import (
    FIELDS,
    empty_row_statistics,
    merge_row_statistics,
)
from ._operands import empty_like_meta

__all__ = [
    "class_offsets",
    "fold_tile",
    "gradient_factors_of_rows",
    "gradient_of_tile",
    "kernel_operand",
    "merged_statistics",
    "rows_of",
    "statistics_of_rows",
]

_WIDTH = len(FIELDS)


def class_offsets(chunks: tuple[int, ...]) -> da.Array:
    """The class numbers 0..C-1 chunked as the class axis: blockwise hands every tile the
    numbers of its classes, the first of which is its column offset (block_info does not reach
    blockwise functions)."""
    return da.arange(sum(chunks), chunks=(chunks,), dtype=np.int64)


def kernel_operand(a: np.ndarray, dtype: Any) -> np.ndarray:
    """`a` as the tile kernels take their operands: C-contiguous, of `dtype` and aligned. (A
    block that distributed unpickled from a worker's message may sit at any byte offset, and
    np.ascontiguousarray keeps a misaligned contiguous array as it is.)"""
    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.flags.aligned else a.copy()


def rows_of(block: np.ndarray, axis: int, dtype: Any) -> np.ndarray:
    """A block as a (rows, classes) array of `dtype` with contiguous rows, its class axis last:
    a view when the block already is one and writeable (the tile kernel takes a writeable tile
    of any row stride, but writes to it only to add a bias, which the caller's logits never
    get), else a C-contiguous copy."""
    rows = np.moveaxis(block, axis, -1)
    rows = rows.reshape(-1, rows.shape[-1])
    item = rows.itemsize
    if (rows.dtype == dtype and rows.flags.aligned and rows.flags.writeable
            and (rows.shape[1] <= 1 or rows.strides[1] == item)
            and rows.strides[0] >= 0 and rows.strides[0] % item == 0):
        return rows
    return np.array(rows, dtype=dtype, order="C")


def statistics_of_rows(stats: np.ndarray, positions: tuple[int, ...], axis: int) -> np.ndarray:
    """(rows, 5) statistics back in the block's layout: `positions` with the fields at `axis`."""
    return np.moveaxis(stats.reshape(*positions, _WIDTH), -1, axis)


def fold_tile(
    logits: np.ndarray,
    begin: int,
    classes: int,
    label_smoothing: float,
    smoothing_sum: bool,
    class_weight: Optional[np.ndarray],
    target: Optional[np.ndarray],
    probabilities: Optional[np.ndarray],
    bias: Optional[np.ndarray] = None,
    softcap: float = 0.0,
) -> np.ndarray:
    """The (rows, 5) statistics of a (rows, columns) tile of logits of classes [begin, begin +
    columns): linear_cross_entropy's tile kernel, which adds `bias` to the tile in place (and
    soft-caps it in place, softcap > 0)."""
    columns = logits.shape[1]
    dtype = logits.dtype
    w = None
    tile_weight_sum = float(columns)
    if class_weight is not None:
        w = kernel_operand(class_weight[begin : begin + columns], dtype)
        tile_weight_sum = float(class_weight[begin : begin + columns].astype(np.float64).sum())
    stats = empty_row_statistics((logits.shape[0],))
    _core.linear_cross_entropy_fold_tile(
        logits, begin, classes, label_smoothing, smoothing_sum, tile_weight_sum,
        None if bias is None else kernel_operand(bias, dtype),
        w,
        None if target is None else kernel_operand(target.reshape(-1), np.int64),
        None if probabilities is None else kernel_operand(probabilities, dtype),
        stats,
        softcap=softcap,
    )
    return stats


def _keep(stats: np.ndarray, axis: Any = None, keepdims: bool = True, **kwargs: Any) -> np.ndarray:
    return stats


def _merge(stats: np.ndarray, axis: Any = None, keepdims: bool = True, **kwargs: Any) -> np.ndarray:
    """Merges the pieces side by side along the (one) reduced axis into one piece per row."""
    (ax,) = axis
    moved = np.moveaxis(stats, ax, -1)
    pieces = moved.reshape(*moved.shape[:-1], -1, _WIDTH)
    merged = empty_row_statistics(pieces.shape[:-2])
    for k in range(pieces.shape[-2]):
        merge_row_statistics(merged, kernel_operand(pieces[..., k, :], np.float64))
    return np.moveaxis(merged, -1, ax)


def merged_statistics(pieces: da.Array, axis: int, split_every: Optional[int] = None) -> da.Array:
    """The pieces' statistics merged along `axis` (5 fields per chunk in, 5 out), by
    `dask.array.reduction` with the online-softmax merge as its combine and aggregate steps."""
    return da.reduction(
        pieces, chunk=_keep, combine=_merge, aggregate=_merge, axis=axis, keepdims=True,
        output_size=_WIDTH, concatenate=True, dtype=np.float64, split_every=split_every,
        meta=empty_like_meta(pieces.ndim, np.float64),
    )


def gradient_factors_of_rows(
    stats: np.ndarray, target: Optional[np.ndarray], scale: Any, classes: int,
    label_smoothing: float, class_weight: Optional[np.ndarray], ignore_index: int,
    compute: np.dtype, z_loss: float = 0.0, z_scale: Any = None,
) -> np.ndarray:
    """Each row's gradient factors (lse, a, b_uniform, b_target, correction) for
    `gradient_of_tile`, from its merged (rows, 5) statistics, its index target (None for
    probability targets) and its reduction factor `scale` (a number or one per row; 0 for an
    ignored row): linear_cross_entropy's own. With `z_loss`, `z_scale` is the z-loss's
    reduction factor (its mean divides by the count of non-ignored rows)."""
    rows = len(stats)
    w64 = None if class_weight is None else class_weight.astype(np.float64)
    weight_total = float(classes) if w64 is None else float(w64.sum())
    s = np.broadcast_to(np.asarray(scale, np.float64).reshape(-1), (rows,))
    zs = None
    if z_loss != 0.0:
        zs = 2.0 * z_loss * np.broadcast_to(np.asarray(z_scale, np.float64).reshape(-1), (rows,))
    target_weight = None
    if target is not None:
        valid, target_weight = index_target_weights(target.reshape(-1), classes, ignore_index,
                                                    w64)
        s = np.where(valid, s, 0.0)
        zs = None if zs is None else np.where(valid, zs, 0.0)
    return gradient_factors(stats, s, target_weight, target is None, label_smoothing, classes,
                            weight_total, compute, zs)


def gradient_of_tile(
    logits: np.ndarray, begin: int, classes: int, label_smoothing: float,
    class_weight: Optional[np.ndarray], target: Optional[np.ndarray],
    probabilities: Optional[np.ndarray], factors: np.ndarray, softcap: float = 0.0,
) -> np.ndarray:
    """Overwrites a fresh (rows, columns) tile of logits of classes [begin, begin + columns)
    with the loss's gradient with respect to them (linear_cross_entropy's tile kernel; through
    the tanh for softcap > 0) and returns it."""
    dtype = logits.dtype
    w = None
    if class_weight is not None and (probabilities is not None or label_smoothing != 0.0):
        w = kernel_operand(class_weight[begin : begin + logits.shape[1]], dtype)
    _core.linear_cross_entropy_tile_gradient(
        logits, begin, classes, label_smoothing, w,
        None if target is None else kernel_operand(target.reshape(-1), np.int64),
        None if probabilities is None else kernel_operand(probabilities, dtype),
        kernel_operand(factors, dtype),
        softcap=softcap,
    )
    return logits
