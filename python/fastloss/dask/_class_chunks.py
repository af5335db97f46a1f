"""The functions over a class axis that is split into several chunks. Each one reduces a row's
pieces through the merged row statistics of `_statistics` (logsumexp, and cross_entropy's target
logit and smoothing sums), or, where a row's value is a plain sum over its classes (nll_loss's
one picked logit, entropy's sum of p * (lse - x)), sums per-chunk partial results in float64.
The results are per position (the class axis dropped), float64 until the caller rounds them."""

from __future__ import annotations

from typing import Any, Optional

import dask.array as da
import numpy as np

from .. import _elementwise_losses, _entropy, _losses, _softmax
from .._linear_cross_entropy import index_target_weights, row_losses
from .._row_statistics import row_logsumexp
from ._operands import empty_like_meta, index_letters, with_class_axis
from ._statistics import (
    class_offsets,
    fold_tile,
    gradient_factors_of_rows,
    gradient_of_tile,
    merged_statistics,
    rows_of,
    statistics_of_rows,
)

__all__ = [
    "chunked_cross_entropy",
    "chunked_cross_entropy_gradient",
    "chunked_distillation",
    "chunked_entropy",
    "chunked_logsumexp",
    "chunked_nll_loss",
    "logsumexp_of_chunks",
    "losses_from_statistics",
    "lse_of_statistics",
    "shifted_by_logsumexp",
]


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """float64 stays float64; float32, float16 and bfloat16 are computed in float32."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def _positions(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return shape[:axis] + shape[axis + 1 :]


def _tile_statistics(
    x: np.ndarray, begin: np.ndarray, *operands: Any, axis: int, classes: int, compute: np.dtype,
    label_smoothing: float, class_weight: Optional[np.ndarray], target: str,
) -> np.ndarray:
    """One block's statistics; `operands` holds its target block when `target` is "index" or
    "probabilities"."""
    index = probabilities = None
    if target == "index":
        index = operands[0]
    elif target == "probabilities":
        probabilities = rows_of(operands[0], axis, compute)
    stats = fold_tile(
        rows_of(x, axis, compute), int(begin[0]), classes, label_smoothing,
        target == "index" and label_smoothing != 0.0, class_weight, index, probabilities,
    )
    return statistics_of_rows(stats, _positions(x.shape, axis), axis)


def row_statistics(
    x: da.Array, axis: int, target: Optional[da.Array] = None, probabilities: bool = False,
    label_smoothing: float = 0.0, class_weight: Optional[np.ndarray] = None,
    result_dtype: Optional[np.dtype] = None,
) -> da.Array:
    """The merged statistics of every row of `x` over its class axis `axis` (which holds the 5
    fields). `target` holds index targets (with a length-1 class axis) or probabilities; the
    tiles are computed in the precision of `result_dtype` (x's by default: mixed operands
    promote, as in the NumPy functions)."""
    letters = index_letters(x.ndim)
    class_letter = letters[axis]
    args: list[Any] = [x, letters, class_offsets(x.chunks[axis]), class_letter]
    kind = "none"
    if target is not None:
        kind = "probabilities" if probabilities else "index"
        args += [target, letters]
    pieces = da.blockwise(
        _tile_statistics, letters, *args, adjust_chunks={class_letter: 5}, dtype=np.float64,
        meta=empty_like_meta(x.ndim, np.float64), axis=axis, classes=x.shape[axis],
        compute=compute_dtype(x.dtype if result_dtype is None else result_dtype),
        label_smoothing=label_smoothing, class_weight=class_weight, target=kind,
    )
    return merged_statistics(pieces, axis)


def _lse_of(stats: np.ndarray, axis: int) -> np.ndarray:
    return np.expand_dims(row_logsumexp(np.moveaxis(stats, axis, -1)), axis)


def chunked_logsumexp(x: da.Array, axis: int) -> da.Array:
    """logsumexp over `axis`, float64, keeping `axis` with length 1."""
    return lse_of_statistics(row_statistics(x, axis), axis)


def logsumexp_of_chunks(x: da.Array, axis: int) -> da.Array:
    """The public logsumexp over a chunked `axis` (float64, `axis` kept with length 1): each
    chunk's logsumexp in float64, then the logsumexp of those, so that a row holding +inf gives
    +inf as the NumPy function does (its row statistics give NaN: what the softmaxes, whose
    PyTorch values are NaN there, take from chunked_logsumexp)."""
    return da.reduction(
        x, _block_logsumexp, _block_logsumexp, axis=axis, keepdims=True, dtype=np.float64,
        meta=empty_like_meta(x.ndim, np.float64),
    )


def _block_logsumexp(x: np.ndarray, axis: Any, keepdims: bool, **_: Any) -> np.ndarray:
    return np.asarray(_softmax.logsumexp(x.astype(np.float64, copy=False), axis, keepdims=True))


def lse_of_statistics(stats: da.Array, axis: int) -> da.Array:
    """Each row's logsumexp (float64) from merged statistics, keeping `axis` with length 1."""
    return stats.map_blocks(
        _lse_of, axis, chunks=tuple((1,) if a == axis else c for a, c in enumerate(stats.chunks)),
        dtype=np.float64, meta=empty_like_meta(stats.ndim, np.float64),
    )


def _shift(x: np.ndarray, lse: np.ndarray, exponentiate: bool, dtype: np.dtype) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        shifted = x.astype(np.float64) - lse
        return (np.exp(shifted) if exponentiate else shifted).astype(dtype)


def shifted_by_logsumexp(x: da.Array, axis: int, exponentiate: bool, dtype: np.dtype) -> da.Array:
    """log_softmax (x - lse), or softmax (exp(x - lse)) with `exponentiate`, in float64 and
    rounded once to `dtype`."""
    lse = chunked_logsumexp(x, axis)
    return da.map_blocks(
        _shift, x, lse, exponentiate, dtype, dtype=dtype, meta=empty_like_meta(x.ndim, dtype)
    )


def _final_cross_entropy(
    stats: np.ndarray, *target: np.ndarray, axis: int, classes: int, label_smoothing: float,
    class_weight: Optional[np.ndarray], ignore_index: int,
) -> np.ndarray:
    rows = np.moveaxis(stats, axis, -1)
    positions = rows.shape[:-1]
    rows = rows.reshape(-1, 5)
    w64 = None if class_weight is None else class_weight.astype(np.float64)
    weight_total = float(classes) if w64 is None else float(w64.sum())
    if target:  # index targets
        valid, target_weight = index_target_weights(
            target[0].reshape(-1), classes, ignore_index, w64
        )
        losses = row_losses(rows, valid, target_weight, False, label_smoothing, classes,
                            weight_total)
    else:
        losses = row_losses(rows, np.ones(len(rows), bool), None, True, label_smoothing, classes,
                            weight_total)
    return losses.reshape(positions)


def losses_from_statistics(
    stats: da.Array, target: Optional[da.Array], axis: int, classes: int,
    label_smoothing: float, class_weight: Optional[np.ndarray], ignore_index: int,
) -> da.Array:
    """Per-position cross-entropy (float64) from merged statistics (the fields on `axis`):
    linear_cross_entropy's row losses. `target` holds the index targets with a length-1 `axis`,
    or is None for probability targets (whose sums the statistics already hold)."""
    args: list[Any] = [stats] if target is None else [stats, target]
    return da.map_blocks(
        _final_cross_entropy, *args, drop_axis=axis, dtype=np.float64,
        meta=empty_like_meta(stats.ndim - 1, np.float64), axis=axis, classes=classes,
        label_smoothing=label_smoothing, class_weight=class_weight, ignore_index=ignore_index,
    )


def chunked_cross_entropy(
    x: da.Array, target: da.Array, axis: int, probabilities: bool, label_smoothing: float,
    class_weight: Optional[np.ndarray], ignore_index: int, result_dtype: np.dtype,
) -> da.Array:
    """Per-position cross-entropy (float64) of class-chunked logits: statistics per chunk,
    merged, then the row losses."""
    expanded = target if probabilities else with_class_axis(target, axis)
    stats = row_statistics(x, axis, expanded, probabilities, label_smoothing, class_weight,
                           result_dtype)
    return losses_from_statistics(
        stats, None if probabilities else expanded, axis, x.shape[axis], label_smoothing,
        class_weight, ignore_index,
    )


def _factors_block(
    stats: np.ndarray, *rest: Any, axis: int, classes: int, label_smoothing: float,
    class_weight: Optional[np.ndarray], ignore_index: int, compute: np.dtype, index: bool,
) -> np.ndarray:
    """A block of rows' gradient factors, the five fields on `axis` as in their statistics;
    `rest` is (index targets with a length-1 axis, if `index`) then the reduction's scale."""
    target = np.squeeze(rest[0], axis) if index else None
    scale = rest[-1]
    rows = np.moveaxis(stats, axis, -1)
    positions = rows.shape[:-1]
    factors = gradient_factors_of_rows(
        rows.reshape(-1, 5), target, scale, classes, label_smoothing, class_weight,
        ignore_index, compute,
    )
    return np.moveaxis(factors.reshape(*positions, 5), -1, axis)


def _gradient_block(
    x: np.ndarray, columns: np.ndarray, factors: np.ndarray, *target: np.ndarray, axis: int,
    classes: int, label_smoothing: float, class_weight: Optional[np.ndarray], index: bool,
    compute: np.dtype, grad_dtype: np.dtype,
) -> np.ndarray:
    """One block's gradient: its logits copied (the kernel overwrites them) and turned into
    d loss / d logits with their rows' factors."""
    moved = np.moveaxis(x, axis, -1)
    logits = np.array(moved.reshape(-1, moved.shape[-1]), dtype=compute, order="C")
    probabilities = None if index else rows_of(target[0], axis, compute)
    g = gradient_of_tile(
        logits, int(columns[0]), classes, label_smoothing, class_weight,
        target[0] if index else None, probabilities,
        np.moveaxis(factors, axis, -1).reshape(-1, 5),
    )
    with np.errstate(over="ignore"):  # beyond float16's range is inf
        return np.moveaxis(g.reshape(moved.shape), -1, axis).astype(grad_dtype, copy=False)


def chunked_cross_entropy_gradient(
    x: da.Array, target: da.Array, axis: int, probabilities: bool, label_smoothing: float,
    class_weight: Optional[np.ndarray], ignore_index: int, result_dtype: np.dtype,
    scale: tuple[Any, Optional[str]],
) -> da.Array:
    """The gradient of cross_entropy with respect to class-chunked logits, chunked as them: each
    row's merged statistics (the loss's own) give its gradient factors, with which every block
    turns a copy of its logits into its part of the gradient (Megatron's vocab-parallel
    backward). `scale` is the reduction's factor as (value, blockwise index or None)."""
    letters = index_letters(x.ndim)
    fields = letters[:axis] + "z" + letters[axis + 1 :]
    expanded = target if probabilities else with_class_axis(target, axis)
    stats = row_statistics(x, axis, expanded, probabilities, label_smoothing, class_weight,
                           result_dtype)
    compute = compute_dtype(result_dtype)
    options = dict(axis=axis, classes=x.shape[axis], label_smoothing=label_smoothing,
                   class_weight=class_weight, index=not probabilities, compute=compute)
    target_args: list[Any] = [] if probabilities else [expanded, letters]
    factors = da.blockwise(
        _factors_block, letters, stats, letters, *target_args, *scale, dtype=compute,
        meta=empty_like_meta(x.ndim, compute), ignore_index=ignore_index, **options,
    )
    return da.blockwise(
        _gradient_block, letters, x, letters, class_offsets(x.chunks[axis]), letters[axis],
        factors, fields, expanded, letters, concatenate=True, dtype=x.dtype,
        meta=empty_like_meta(x.ndim, x.dtype), grad_dtype=x.dtype, **options,
    )


def _picked(
    x: np.ndarray, target: np.ndarray, begin: np.ndarray, *, axis: int, classes: int,
    class_weight: Optional[np.ndarray], ignore_index: int,
) -> np.ndarray:
    """nll_loss of this chunk's classes: targets elsewhere become the ignored class -1 (every
    target is checked against the whole class range first, for PyTorch's IndexError)."""
    t = np.squeeze(target, axis)
    w64 = None if class_weight is None else class_weight.astype(np.float64)
    valid, _ = index_target_weights(t, classes, ignore_index, w64)
    first, columns = int(begin[0]), x.shape[axis]
    local = t - first
    local = np.where(valid & (local >= 0) & (local < columns), local, -1)
    w = None if class_weight is None else class_weight[first : first + columns]
    part = _losses.nll_loss(
        x.astype(np.float64), local, weight=w, ignore_index=-1, reduction="none", axis=axis
    )
    return np.expand_dims(part, axis)


def chunked_nll_loss(
    x: da.Array, target: da.Array, axis: int, class_weight: Optional[np.ndarray],
    ignore_index: int,
) -> da.Array:
    """Per-position nll_loss (float64): each chunk contributes its picked logit, or 0."""
    letters = index_letters(x.ndim)
    parts = da.blockwise(
        _picked, letters, x, letters, with_class_axis(target, axis), letters,
        class_offsets(x.chunks[axis]), letters[axis], adjust_chunks={letters[axis]: 1},
        dtype=np.float64, meta=empty_like_meta(x.ndim, np.float64), axis=axis,
        classes=x.shape[axis], class_weight=class_weight, ignore_index=ignore_index,
    )
    return parts.sum(axis=axis, dtype=np.float64)


def _entropy_part(x: np.ndarray, lse: Optional[np.ndarray], axis: int) -> np.ndarray:
    """One chunk's share of a row's entropy: sum of p (lse - x) over its classes (logits), or
    of -p log p (probabilities, lse None); a class of probability 0 adds 0."""
    if lse is None:
        return np.expand_dims(_entropy.entropy(probs=x.astype(np.float64), axis=axis), axis)
    with np.errstate(invalid="ignore", over="ignore"):
        gap = lse - x.astype(np.float64)
        p = np.exp(-gap)
        terms = np.where(p == 0.0, 0.0, p * gap)
    return terms.sum(axis=axis, keepdims=True)


def chunked_entropy(x: da.Array, axis: int, probabilities: bool) -> da.Array:
    """Per-position entropy (float64) of class-chunked logits (or probabilities)."""
    chunks = tuple((1,) * x.numblocks[a] if a == axis else c for a, c in enumerate(x.chunks))
    lse = None if probabilities else chunked_logsumexp(x, axis)
    parts = da.map_blocks(
        _entropy_part, x, lse, axis, chunks=chunks, dtype=np.float64,
        meta=empty_like_meta(x.ndim, np.float64),
    )
    return parts.sum(axis=axis, dtype=np.float64)


def _kl_part(
    s: np.ndarray, t: np.ndarray, lse_s: np.ndarray, lse_t: np.ndarray, temperature: float,
    axis: int,
) -> np.ndarray:
    """One chunk's share of a row's KL(softmax(t/T) || softmax(s/T)), in float64: kl_div of the
    chunk's log_softmax(s/T) against its softmax(t/T), so that its rules for zero
    probabilities and -inf logits are the NumPy function's."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        log_q = s.astype(np.float64) / temperature - lse_s
        p = np.exp(t.astype(np.float64) / temperature - lse_t)
        terms = _elementwise_losses.kl_div(log_q, p, reduction="none")
    return terms.sum(axis=axis, keepdims=True)


def _tempered_lse(x: da.Array, axis: int, temperature: float, dtype: np.dtype) -> da.Array:
    compute = compute_dtype(dtype)
    return chunked_logsumexp(x.astype(compute) / compute.type(temperature), axis)


def chunked_distillation(
    s: da.Array, t: da.Array, target: da.Array, axis: int, probabilities: bool,
    temperature: float, label_smoothing: float, class_weight: Optional[np.ndarray],
    ignore_index: int, result_dtype: np.dtype,
) -> tuple[da.Array, da.Array]:
    """(cross-entropy, KL) per position, float64, of class-chunked student logits `s` and
    teacher logits `t`: the cross-entropy from merged statistics, and the KL term as the sum
    of each chunk's share once both tempered logsumexps are known (a second pass over the
    chunks; a row's KL needs both of its normalisers)."""
    ce = chunked_cross_entropy(s, target, axis, probabilities, label_smoothing, class_weight,
                               ignore_index, result_dtype)
    lse_s = _tempered_lse(s, axis, temperature, result_dtype)
    lse_t = _tempered_lse(t, axis, temperature, result_dtype)
    chunks = tuple((1,) * s.numblocks[a] if a == axis else c for a, c in enumerate(s.chunks))
    parts = da.map_blocks(
        _kl_part, s, t, lse_s, lse_t, temperature, axis, chunks=chunks, dtype=np.float64,
        meta=empty_like_meta(s.ndim, np.float64),
    )
    return ce, parts.sum(axis=axis, dtype=np.float64)
