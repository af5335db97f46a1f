"""linear_cross_entropy, vocabulary-parallel (Megatron's vocab-parallel cross-entropy in Dask):
hidden states chunked over rows, the classifier's weight over the vocabulary. Block (i, j)
computes the tile of logits ``input[i] @ linear_weight[j].T`` with BLAS and folds it into row
statistics at once (the tile kernel of the NumPy linear_cross_entropy); the statistics of a
row's tiles merge exactly in `dask.array.reduction`, and the losses and each row's logsumexp
follow. No block ever holds more than one tile of logits.

The gradient is autograd's, tile by tile: with the merged statistics known, block (i, j)
computes its tile again and turns it into ``G = d loss / d logits`` (the NumPy function's
gradient kernel, each row's reduction factor applied); the three products
``grad_input = G @ W``, ``grad_weight = G.T @ input`` and ``grad_bias = G`` summed over rows
are dask's own blocked matmul and sum, which add the tiles' shares in a tree.
"""

from __future__ import annotations

from typing import Any, Optional

import dask.array as da
import numpy as np

from .._gradient import LossAndLse
from .._linear_cross_entropy import LinearLossAndGrad, LinearLossLseAndGrad
from .._linear_cross_entropy import linear_cross_entropy as numpy_linear_cross_entropy
from ._class_chunks import compute_dtype, losses_from_statistics, lse_of_statistics
from ._denominators import elementwise_factor, index_target_factor
from ._operands import (
    as_dask,
    check_same_chunks,
    empty_like_meta,
    index_letters,
    with_class_axis,
)
from ._positions import reduce_positions, scaled
from ._statistics import (
    class_offsets,
    fold_tile,
    gradient_factors_of_rows,
    gradient_of_tile,
    kernel_operand,
    merged_statistics,
    statistics_of_rows,
)

__all__ = ["linear_cross_entropy"]


def _logits(x: np.ndarray, w: np.ndarray, bias: Optional[np.ndarray], compute: np.dtype):
    """A tile of logits, fresh (the kernels write it), in the compute dtype: BLAS's product."""
    xs = x.reshape(-1, x.shape[-1]).astype(compute, copy=False)
    logits = xs @ w.astype(compute, copy=False).T
    if bias is not None:
        logits += bias.astype(compute, copy=False)
    return logits


def _tile_statistics(
    x: np.ndarray, w: np.ndarray, columns: np.ndarray, *rest: np.ndarray, classes: int,
    label_smoothing: float, class_weight: Optional[np.ndarray], has_bias: bool, target: str,
    compute: np.dtype, softcap: float,
) -> np.ndarray:
    bias = rest[0] if has_bias else None
    operand = rest[1 if has_bias else 0] if target != "none" else None
    positions = x.shape[:-1]
    probabilities = None
    if target == "probabilities":
        probabilities = kernel_operand(operand.reshape(-1, operand.shape[-1]), compute)
    logits = _logits(x, w, None, compute)
    stats = fold_tile(
        logits, int(columns[0]), classes, label_smoothing,
        target == "index" and label_smoothing != 0.0, class_weight,
        operand if target == "index" else None, probabilities, bias, softcap,
    )
    return statistics_of_rows(stats, positions, len(positions))


def _factors(
    stats: np.ndarray, target: Optional[np.ndarray], scale: Any, z_scale: Any, *, classes: int,
    label_smoothing: float, class_weight: Optional[np.ndarray], ignore_index: int,
    compute: np.dtype, z_loss: float,
) -> np.ndarray:
    """A row block's gradient factors, the fields last as in its statistics; `z_scale` is the
    z-loss's reduction factor (as `scale` is the cross-entropy's)."""
    positions = stats.shape[:-1]
    factors = gradient_factors_of_rows(
        stats.reshape(-1, 5), target, scale, classes, label_smoothing, class_weight,
        ignore_index, compute, z_loss, z_scale,
    )
    return factors.reshape(*positions, 5)


def _tile_gradient(
    x: np.ndarray, w: np.ndarray, columns: np.ndarray, factors: np.ndarray, *rest: np.ndarray,
    classes: int, label_smoothing: float, class_weight: Optional[np.ndarray], has_bias: bool,
    probabilities: bool, compute: np.dtype, softcap: float,
) -> np.ndarray:
    """G of one tile (rows, columns), the tile's logits computed again (and capped again)."""
    bias = rest[0] if has_bias else None
    target = rest[1 if has_bias else 0]
    logits = _logits(x, w, bias, compute)
    g = gradient_of_tile(
        logits, int(columns[0]), classes, label_smoothing, class_weight,
        None if probabilities else target,
        target.reshape(-1, target.shape[-1]) if probabilities else None,
        factors.reshape(-1, 5),
        softcap,
    )
    return g.reshape(*x.shape[:-1], w.shape[0])


def linear_cross_entropy(
    input: Any,
    linear_weight: Any,
    target: Any,
    *,
    linear_bias: Any = None,
    weight: Any = None,
    ignore_index: Optional[int] = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: Optional[float] = None,
    return_lse: bool = False,
    return_grad: bool = False,
    grad_output: Any = None,
) -> Any:
    """`fastloss.linear_cross_entropy` on dask arrays, vocabulary-parallel and lazy.

    `input` (..., d) is chunked over its positions, `linear_weight` (V, d) over the vocabulary
    (`linear_bias` and probability targets' class axis as it); the feature axis d may be
    chunked too (blocks concatenate it). Returns what the NumPy function returns, as dask
    arrays: the loss, `LossAndLse`, `LinearLossAndGrad` or `LinearLossLseAndGrad` (the
    gradients chunked as their arrays). Options as in the NumPy function (``weight`` a NumPy
    array); the z-loss's mean divides by the number of non-ignored rows, as there, and
    ``softcap`` caps each tile as the kernels fold it (the tiles' statistics are the capped
    logits')."""
    x = as_dask(input, "input")
    w_lin = as_dask(linear_weight, "linear_weight")
    t_host = as_dask(target, "target") if isinstance(target, da.Array) else np.asarray(target)
    if isinstance(weight, da.Array):
        raise TypeError("weight must be a NumPy array (per-class values), got a dask array")
    cw = None if weight is None else np.asarray(weight)
    ignore = -100 if ignore_index is None else ignore_index
    probabilities = np.dtype(t_host.dtype).kind in "fV"
    # The NumPy function's checks, on stand-ins: an emptied position axis (zero-stride weights:
    # no memory, and no row computes with them).
    emptied = 0 if x.ndim >= 2 else None

    def standin(a: Any, axis: Optional[int]) -> np.ndarray:
        shape = tuple(a.shape)
        shape = shape if axis is None else (*shape[:axis], 0, *shape[axis + 1 :])
        return np.broadcast_to(np.zeros((), a.dtype), shape)

    bias_host = linear_bias
    if isinstance(linear_bias, da.Array):
        bias_host = as_dask(linear_bias, "linear_bias")
    elif linear_bias is not None:
        bias_host = np.asarray(linear_bias)
    value = numpy_linear_cross_entropy(
        standin(x, emptied), standin(w_lin, None), standin(t_host, emptied),
        linear_bias=None if bias_host is None else standin(bias_host, None), weight=cw,
        ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing,
        z_loss=z_loss, softcap=softcap, return_lse=return_lse,
    )
    dtype = np.asarray(value[0] if return_lse else value).dtype
    z = float(z_loss)
    cap = 0.0 if softcap is None else float(softcap)
    compute = compute_dtype(x.dtype)
    classes = w_lin.shape[0]
    eps = float(label_smoothing)
    letters = index_letters(x.ndim - 1)  # positions
    v, d = "y", "z"
    pos_axes = tuple(range(x.ndim - 1))
    vocab_chunks = w_lin.chunks[0]
    check_same_chunks(w_lin, "linear_weight", (1,), x, "input", (x.ndim - 1,))
    args: list[Any] = [x, letters + d, w_lin, v + d, class_offsets(vocab_chunks), v]
    bias = None
    if bias_host is not None:
        bias = as_dask(bias_host, "linear_bias", chunks=(vocab_chunks,))
        check_same_chunks(bias, "linear_bias", (0,), w_lin, "linear_weight", (0,))
        args += [bias, v]
    t_chunks = tuple(x.chunks[a] for a in pos_axes) + ((vocab_chunks,) if probabilities else ())
    td = as_dask(t_host, "target", chunks=t_chunks)
    if probabilities:
        check_same_chunks(td, "target", pos_axes, x, "input", pos_axes)
        check_same_chunks(td, "target", (td.ndim - 1,), w_lin, "linear_weight", (0,))
    else:
        check_same_chunks(td, "target", pos_axes, x, "input", pos_axes)
    t_index = letters + v if probabilities else letters
    args += [td, t_index]
    pieces = da.blockwise(
        _tile_statistics, letters + v, *args, adjust_chunks={v: 5}, concatenate=True,
        dtype=np.float64, meta=empty_like_meta(len(letters) + 1, np.float64), classes=classes,
        label_smoothing=eps, class_weight=cw, has_bias=bias is not None,
        target="probabilities" if probabilities else "index", compute=compute, softcap=cap,
    )
    axis = len(letters)
    stats = merged_statistics(pieces, axis)
    expanded = None if probabilities else with_class_axis(td, axis)
    losses = losses_from_statistics(stats, expanded, axis, classes, eps, cw, ignore)
    factor: Any = 1.0
    z_factor: Any = 1.0
    if reduction == "mean":
        factor = (elementwise_factor(td.shape[:-1]) if probabilities
                  else index_target_factor(td, classes, ignore, cw))
        z_factor = (factor if probabilities
                    else index_target_factor(td, classes, ignore, None))
    lse64 = lse_of_statistics(stats, axis).squeeze(axis=axis)
    loss = reduce_positions(
        losses.astype(dtype) if reduction == "none" else losses, reduction, factor, dtype
    )
    if z != 0.0:  # z lse^2 per non-ignored row, with its own mean (see cross_entropy)
        z_terms = da.map_blocks(_z_terms, lse64, None if probabilities else td, z, ignore,
                                dtype=np.float64)
        if reduction == "none":
            loss = (losses + z_terms).astype(dtype)
        else:  # both terms in float64, then rounded once as reduce_positions rounds
            f64 = np.dtype(np.float64)
            terms = da.stack([reduce_positions(losses, reduction, factor, f64),
                              reduce_positions(z_terms, reduction, z_factor, f64)])
            loss = reduce_positions(terms, "sum", 1.0, dtype)
    lse = lse64.astype(dtype) if return_lse else None
    if not return_grad:
        return LossAndLse(loss, lse) if return_lse else loss
    # the gradient: each row's factors, then G tile by tile and dask's blocked products
    if reduction == "none":
        go = 1.0 if grad_output is None else grad_output
        scale = go if np.ndim(go) == 0 and not isinstance(go, da.Array) else as_dask(
            go, "grad_output", chunks=tuple(x.chunks[a] for a in pos_axes))
        z_scale = scale
    else:
        scale = scaled(factor, grad_output)
        z_scale = scaled(z_factor, grad_output)
    scale_index = letters if isinstance(scale, da.Array) and scale.ndim else ""
    target_args: list[Any] = [None, None] if probabilities else [td, letters]
    factors = da.blockwise(
        _factors, letters + v, stats, letters + v, *target_args, scale,
        scale_index if isinstance(scale, da.Array) else None, z_scale,
        scale_index if isinstance(z_scale, da.Array) else None, concatenate=True,
        dtype=compute, meta=empty_like_meta(axis + 1, compute), classes=classes,
        label_smoothing=eps, class_weight=cw, ignore_index=ignore, compute=compute, z_loss=z,
    )
    g_args: list[Any] = [x, letters + d, w_lin, v + d, class_offsets(vocab_chunks), v,
                         factors, letters + "x"]
    if bias is not None:
        g_args += [bias, v]
    g_args += [td, t_index]
    g = da.blockwise(
        _tile_gradient, letters + v, *g_args, concatenate=True, dtype=compute,
        meta=empty_like_meta(axis + 1, compute), classes=classes, label_smoothing=eps,
        class_weight=cw, has_bias=bias is not None, probabilities=probabilities,
        compute=compute, softcap=cap,
    )
    grad_input = da.tensordot(g, w_lin.astype(compute), axes=((axis,), (0,))).astype(x.dtype)
    grad_input = grad_input.rechunk(x.chunks)
    grad_weight = da.tensordot(
        g, x.astype(compute), axes=(tuple(range(axis)), tuple(range(axis)))
    ).astype(w_lin.dtype).rechunk(w_lin.chunks)
    grad_bias = None
    if bias is not None:
        grad_bias = g.sum(axis=tuple(range(axis)), dtype=compute).astype(bias.dtype)
    if return_lse:
        return LinearLossLseAndGrad(loss, lse, grad_input, grad_weight, grad_bias)
    return LinearLossAndGrad(loss, grad_input, grad_weight, grad_bias)


def _z_terms(lse: np.ndarray, target: Optional[np.ndarray], z: float, ignore: int) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        terms = z * lse * lse
    return terms if target is None else np.where(target != ignore, terms, 0.0)

