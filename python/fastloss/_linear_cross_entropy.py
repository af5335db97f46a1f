"""linear_cross_entropy: the cross-entropy of a classifier head, ``input @ linear_weight.T +
linear_bias``, without ever holding its N x V logits.

[Note: linear cross-entropy tiles] Rows are taken a strip at a time. A strip's logits are written
by NumPy's BLAS (``np.matmul(..., out=)``) into one reused buffer, then a fused kernel adds the
bias and folds them into mergeable row statistics (`_row_statistics`); a strip too wide for the
budget is cut into vocabulary tiles whose statistics merge exactly. The losses follow from the
statistics in float64. For the gradient, the kernel turns the strip in place into
``G = d loss / d logits`` (softmax minus target, times the reduction's factor) while it is still
in cache, and three more BLAS calls accumulate::

    grad_input[strip]  = G @ linear_weight          grad_weight += G.T @ input[strip]
    grad_bias         += G summed over the strip's rows

The gradient's strips span the vocabulary while the budget holds at least 256 rows of them: the
statistics of a whole strip are final, so the gradient never recomputes a logit. Each strip's two
products with linear_weight pack all of it again, and grad_weight's V x d sum is read and written
once per strip; a cost of 1/R that thin strips make large. At (2048, 2048, 128256) the 64 MB budget
holds 114 rows: such strips took 1.68-1.72x the three bare GEMMs, where strips of 1024 rows in
vocabulary tiles, which pay a fourth GEMM to compute the tiles again, took 1.33x (and 2048 rows
1.42x). At (4096, 1024, 32000) strips of 458 rows spanning the vocabulary took 1.29x, 4096 x 4000
tiles 1.45x (bench/linear_strips.py, an AVX-512 machine, BENCHMARKS.md).

The forward alone takes square-ish tiles of rows and classes instead (`_forward_tile`): BLAS
packs the untiled operand anew for every product, and a 4096 x 4000 tile made the forward of
4096 x 1024 x 32000 1.05-1.15x the bare GEMM where 524-row strips spanning the vocabulary made it
1.19-1.27x (BENCHMARKS.md).
An earlier sitting on an AVX2 machine had measured 130-row strips ahead of 1024-row tiles at
128256 classes; the threshold follows the AVX-512 GEMM, twice as fast, beside which the strips'
memory traffic weighs twice as much.

float16 and bfloat16 operands are widened to float32 a strip of input and a tile of weights at a
time (never the whole array); grad_weight and grad_bias are accumulated in float32 (float64 for
float64 operands) and rounded once at the end.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Union

import numpy as np

from . import _core
from ._aliasing import separate_from
from ._class_losses import (
    check_label_smoothing,
    check_softcap,
    check_z_loss,
    class_target,
    class_weight,
    ignore_index_value,
)
from ._gradient import LossAndLse, LossValue, check_grad_out, check_gradient_options, loss_value
from ._row_statistics import (
    MAX,
    SUM_EXP,
    TARGET_LOGIT,
    TARGET_MASS,
    WEIGHTED_LOGIT_SUM,
    empty_row_statistics,
)
from ._validation import _to_ndarray, as_float_array, check_reduction

__all__ = [
    "DEFAULT_BUDGET_BYTES",
    "LinearLossAndGrad",
    "LinearLossLseAndGrad",
    "gradient_factors",
    "index_target_weights",
    "linear_cross_entropy",
    "row_losses",
    "tile_shape",
]

# Memory that linear_cross_entropy may use beyond its inputs and the gradients asked for.
DEFAULT_BUDGET_BYTES = 64 << 20
# The widest tile of weights that a product of the gradient or a half-precision widening holds.
_WEIGHT_TILE_BYTES = 8 << 20
# The gradient's strips span the vocabulary while the budget holds this many rows of logits (or
# all the rows); below it, strips of _TILED_GRADIENT_ROWS rows in vocabulary tiles instead (see
# [Note: linear cross-entropy tiles]).
_MIN_SPANNING_STRIP_ROWS = 256
_TILED_GRADIENT_ROWS = 1024


class LinearLossAndGrad(NamedTuple):
    """What `linear_cross_entropy` returns with ``return_grad=True``: the loss and its gradients
    with respect to the input, the linear weight and the linear bias (None without a bias)."""

    loss: LossValue
    grad_input: np.ndarray
    grad_weight: np.ndarray
    grad_bias: Optional[np.ndarray]


class LinearLossLseAndGrad(NamedTuple):
    """`linear_cross_entropy` with ``return_lse=True`` and ``return_grad=True``: the loss, each
    position's log-sum-exp of its logits, and the gradients of `LinearLossAndGrad`."""

    loss: LossValue
    lse: np.ndarray
    grad_input: np.ndarray
    grad_weight: np.ndarray
    grad_bias: Optional[np.ndarray]


def tile_shape(
    rows: int,
    features: int,
    classes: int,
    compute_itemsize: int,
    widened: bool,
    probability_copy: bool,
    gradient: bool = True,
    chunk_size: Any = None,
    budget: Optional[int] = None,
) -> tuple[int, int, int]:
    """(strip rows, vocabulary tile columns, weight tile rows). With the gradient, a strip of
    logits spans the whole vocabulary when the budget holds at least one such row (see [Note:
    linear cross-entropy tiles]); otherwise it is one row, in vocabulary tiles. Without it, tiles
    are square-ish (`_forward_tile`). A weight tile (of the gradient's
    products and of half-precision widening) takes at most an eighth of the budget.
    ``chunk_size`` (an int of rows, or a (rows, classes) pair) overrides the strip and tile.
    `budget` defaults to DEFAULT_BUDGET_BYTES, read at each call."""
    if budget is None:
        budget = DEFAULT_BUDGET_BYTES
    weight_row = max(1, features * compute_itemsize)
    weight_tile = max(1, min(classes, _WEIGHT_TILE_BYTES // weight_row, budget // 8 // weight_row))
    if chunk_size is not None:
        pair = (chunk_size, classes) if np.ndim(chunk_size) == 0 else tuple(chunk_size)
        if len(pair) != 2 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in pair
        ):
            raise ValueError(
                "chunk_size must be a positive int (rows) or a pair of them (rows, classes), "
                f"got {chunk_size!r}"
            )
        return min(int(pair[0]), max(rows, 1)), min(int(pair[1]), classes), weight_tile
    cell = compute_itemsize * (2 if probability_copy else 1)  # a logit (and its probability)
    # Widened: the strip's input (and with the gradient, its products' sum and one product).
    input_row = features * compute_itemsize * (3 if gradient else 1) if widened else 0
    per_row = classes * cell + input_row
    # Weight tiles: the gradient's product of G.T @ input, the widened weights.
    room = budget - (int(gradient) + int(widened)) * weight_tile * weight_row
    if not gradient:
        return (*_forward_tile(rows, classes, cell, input_row, room), weight_tile)
    rows = max(rows, 1)
    spanning = room // per_row
    if spanning >= 1 and spanning >= min(rows, _MIN_SPANNING_STRIP_ROWS):
        return int(min(spanning, rows)), classes, weight_tile
    # Thin strips: vocabulary tiles of more rows instead, whose logits the gradient computes again;
    # per row, grad_input's part and sum (and the widened input) besides the tile's logits.
    tiled_row = features * compute_itemsize * (3 if widened else 2)
    strip = min(rows, _TILED_GRADIENT_ROWS, room // (2 * tiled_row))
    if strip >= 1:
        strip = _evened(rows, strip)
        columns = (room // strip - tiled_row) // cell
        if columns >= 1:
            columns = min(columns, classes)
            return strip, _evened(classes, columns), weight_tile
    columns = max(1, room // cell)
    return 1, int(min(columns, classes)), weight_tile


def _evened(total: int, most: int) -> int:
    """The size of ceil(total / most) equal parts of `total` (at most `most`): no last part is a
    sliver."""
    parts = -(-total // most)
    return -(-total // parts)


def _forward_tile(rows: int, classes: int, cell: int, input_row: int, room: int) -> tuple[int, int]:
    """(rows, classes) of the forward's tiles of logits: as square as `room` allows.

    BLAS packs the operand that a product does not tile anew for every product: a strip of R rows
    spanning the vocabulary reads all of linear_weight again, a tile of C classes all the strip's
    input. Their cost is proportional to 1/R + 1/C, least for a square tile of the budget (see
    [Note: linear cross-entropy tiles]). The forward only merges the tiles' statistics, so it
    computes no logit twice. Strips and tiles are evened out, so that no last one is a sliver."""
    rows, room = max(rows, 1), max(room, 0)
    strip = min(rows, math.isqrt(room // cell))
    if input_row:  # the strip's widened input takes at most half of the room
        strip = min(strip, room // (2 * input_row))
    strip = max(1, strip)
    strip = _evened(rows, strip)
    tile = max(1, min(classes, (room // strip - input_row) // cell))
    tile = _evened(classes, tile)
    return strip, tile


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
    chunk_size: Any = None,
    return_grad: bool = False,
    grad_output: Any = None,
    grad_input_out: Optional[np.ndarray] = None,
    grad_weight_out: Optional[np.ndarray] = None,
    grad_bias_out: Optional[np.ndarray] = None,
) -> Union[LossValue, LinearLossAndGrad, LossAndLse, LinearLossLseAndGrad]:
    """``cross_entropy(input @ linear_weight.T + linear_bias, target, ...)`` without the logits,
    as ``torch.nn.functional.linear_cross_entropy``.

    - `input` is ``(..., d)``; `linear_weight` is ``(V, d)`` as ``nn.Linear.weight`` (a transposed
      view of a ``(d, V)`` array is used without a copy); `linear_bias` is ``(V,)`` or None.
    - `target` holds class indices (any integer dtype, shape ``input.shape[:-1]``) or class
      probabilities (floating, shape ``input.shape[:-1] + (V,)``).
    - ``weight``, ``ignore_index`` (None means -100), ``reduction``, ``label_smoothing``,
      ``z_loss``, ``softcap`` and ``return_lse`` as in `cross_entropy`: with ``softcap``, the
      loss is that of the capped logits ``softcap * tanh(logits / softcap)``, each tile capped in
      place as BLAS writes it, and the gradients go through the tanh.
    - ``chunk_size``: rows per strip of logits (or a (rows, classes) pair); by default chosen so
      that the scratch memory stays under 64 MB whatever N and V.

    float32 and float64 are computed in their own precision; float16 and bfloat16 in float32,
    widened a tile at a time. Returns the loss (a NumPy scalar of the input's dtype, or an array
    for ``reduction="none"``). With ``return_grad=True``, returns ``LinearLossAndGrad(loss,
    grad_input, grad_weight, grad_bias)``, of ``sum(grad_output * loss)`` for
    ``reduction="none"``; ``grad_input_out``, ``grad_weight_out`` and ``grad_bias_out`` receive
    them instead of new arrays. With ``return_lse=True``: ``LossAndLse(loss, lse)``, or
    ``LinearLossLseAndGrad(loss, lse, grad_input, grad_weight, grad_bias)``; ``lse`` (of the
    input's shape without its features, in its dtype) comes from the merged statistics.
    """
    x = as_float_array(input, "input")
    if x.ndim == 0:
        raise ValueError("input must have at least one dimension (the features), got a 0-d array")
    features = x.shape[-1]
    w_lin = as_float_array(linear_weight, "linear_weight")
    if w_lin.ndim != 2 or w_lin.shape[1] != features:
        raise ValueError(
            f"linear_weight must have shape (V, {features}), the input's {features} features per "
            f"class, got shape {w_lin.shape}"
        )
    if w_lin.dtype != x.dtype:
        raise TypeError(
            f"linear_weight must have the input's dtype {x.dtype}, got dtype {w_lin.dtype}"
        )
    classes = w_lin.shape[0]
    if classes == 0:
        raise ValueError("linear_weight must have at least one class (row), got shape (0, d)")
    bias = None
    if linear_bias is not None:
        bias = as_float_array(linear_bias, "linear_bias")
        if bias.shape != (classes,):
            raise ValueError(
                f"linear_bias must have shape ({classes},), one value per class, got shape "
                f"{bias.shape}"
            )
        if bias.dtype != x.dtype:
            raise TypeError(
                f"linear_bias must have the input's dtype {x.dtype}, got dtype {bias.dtype}"
            )
    reduction = check_reduction(reduction)
    eps = check_label_smoothing(float(label_smoothing), label_smoothing)
    ignore = -100 if ignore_index is None else ignore_index_value(ignore_index)
    z = check_z_loss(z_loss)
    cap = check_softcap(softcap)
    if return_lse not in (True, False):
        raise TypeError(f"return_lse must be True or False, got {return_lse!r}")
    check_gradient_options(
        return_grad,
        grad_output,
        next((b for b in (grad_input_out, grad_weight_out, grad_bias_out) if b is not None), None),
    )
    positions = x.shape[:-1]
    # The logits' shape, as a zero-stride stand-in for the checks of cross_entropy's targets.
    logits_shape = np.broadcast_to(np.empty((), x.dtype), (*positions, classes))
    t = class_target(target, logits_shape, x.ndim - 1, ignore, "the logits'")
    probabilities = t.dtype != np.int64
    class_w = class_weight(weight, classes)

    compute = np.dtype(np.float64) if x.dtype == np.float64 else np.dtype(np.float32)
    rows = int(np.prod(positions, dtype=np.int64))
    x2 = x.reshape(rows, features)
    w_compute = None if class_w is None else np.ascontiguousarray(class_w, dtype=compute)
    b_compute = None if bias is None else np.ascontiguousarray(bias, dtype=compute)
    t2 = t.reshape(rows, classes) if probabilities else t.reshape(rows)

    # Per-row terms that need no logit: the index target's weight and the reduction's divisor.
    w64 = None if class_w is None else class_w.astype(np.float64)
    if probabilities:
        valid = np.ones(rows, bool)
        target_weight = None
        divisor = float(rows)
    else:
        valid, target_weight = index_target_weights(t2, classes, ignore, w64)
        divisor = float(target_weight.sum())
    weight_total = float(classes) if w64 is None else float(w64.sum())

    row_scale = z_scale = None
    if return_grad:
        row_scale = _row_scales(grad_output, reduction, positions, rows, divisor, valid)
        if z != 0.0:  # the z-loss's mean divides by the count of non-ignored rows (see cross_entropy)
            z_scale = _row_scales(grad_output, reduction, positions, rows, float(valid.sum()), valid)

    grad_buffers = None
    if return_grad:
        grad_buffers = _gradient_buffers(
            x, w_lin, bias, grad_input_out, grad_weight_out, grad_bias_out
        )
        for out in grad_buffers:
            x2 = separate_from(out, x2, may_alias=out is grad_buffers[0])
            w_lin = separate_from(out, w_lin)
            b_compute = separate_from(out, b_compute)
            w_compute = separate_from(out, w_compute)
            t2 = separate_from(out, t2)

    strip, tile, weight_tile = tile_shape(
        rows,
        features,
        classes,
        compute.itemsize,
        widened=compute != x.dtype,
        probability_copy=probabilities and t2.dtype != compute,
        gradient=return_grad,
        chunk_size=chunk_size,
    )
    run = _Strips(
        x2,
        w_lin,
        b_compute,
        w_compute,
        t2,
        probabilities,
        classes,
        eps,
        cap,
        compute,
        (strip, tile, weight_tile),
    )
    losses = np.empty(rows, np.float64)
    lse = np.empty(rows, np.float64) if (return_lse or z != 0.0) else None
    grads = None
    if return_grad:
        grads = _Gradients(grad_buffers, x.shape, w_lin, bias is not None, compute, run)
    for begin in range(0, rows, strip):
        end = min(rows, begin + strip)
        stats = run.statistics(begin, end)
        losses[begin:end] = row_losses(
            stats,
            valid[begin:end],
            None if target_weight is None else target_weight[begin:end],
            probabilities,
            eps,
            classes,
            weight_total,
        )
        if lse is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                lse[begin:end] = _log_sum_exp(stats)
        if grads is not None:
            factors = gradient_factors(
                stats,
                row_scale[begin:end],
                None if target_weight is None else target_weight[begin:end],
                probabilities,
                eps,
                classes,
                weight_total,
                compute,
                None if z_scale is None else 2.0 * z * z_scale[begin:end],
            )
            grads.add_strip(begin, end, factors)

    dtype = x.dtype
    z_terms = None
    if z != 0.0:  # z lse^2 per non-ignored row, reduced as cross_entropy's z_loss
        with np.errstate(invalid="ignore", over="ignore"):
            z_terms = np.where(valid, z * lse**2, 0.0)
    if reduction == "none":
        per_row = losses if z_terms is None else losses + z_terms
        loss: LossValue = loss_value(None, per_row.reshape(positions).astype(dtype), "none", dtype)
    else:
        total = float(losses.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            value = total if reduction == "sum" else float(np.float64(total) / divisor)
            if z_terms is not None:
                z_total = np.float64(z_terms.sum())
                value += float(z_total if reduction == "sum" else z_total / valid.sum())
        loss = loss_value(value, None, reduction, dtype)
    if not return_lse:
        return loss if grads is None else LinearLossAndGrad(loss, *grads.results())
    with np.errstate(over="ignore"):
        lse_out = lse.reshape(positions).astype(dtype)
    if grads is None:
        return LossAndLse(loss, lse_out)
    return LinearLossLseAndGrad(loss, lse_out, *grads.results())


def _log_sum_exp(stats: np.ndarray) -> np.ndarray:
    """Each row's log-sum-exp from its merged statistics: -inf for an all -inf row (as
    cross_entropy's lse: M = -inf, whatever S is)."""
    m = stats[:, MAX]
    return np.where(m == -np.inf, m, m + np.log(stats[:, SUM_EXP]))


def index_target_weights(
    target: np.ndarray, classes: int, ignore_index: int, class_weight: Optional[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(valid, target_weight) of index targets: whether each is not ignore_index, and its class
    weight (float64; 1 without class weights, 0 where ignored), whose sum is the mean's divisor.
    Raises PyTorch's IndexError for a target outside [0, classes) that is not ignored."""
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= classes))
    if bad.any():
        raise IndexError(f"Target {target[np.argmax(bad)]} is out of bounds.")
    safe = np.where(valid, target, 0)
    return valid, np.where(valid, 1.0 if class_weight is None else class_weight[safe], 0.0)


def _row_scales(
    grad_output: Any,
    reduction: str,
    positions: tuple[int, ...],
    rows: int,
    divisor: float,
    valid: np.ndarray,
) -> np.ndarray:
    """Each row's factor of the reduction (float64): grad_output / D for a mean, grad_output for a
    sum, grad_output's row for none; 0 for an ignored row."""
    if reduction == "none":
        if grad_output is None:
            return np.where(valid, 1.0, 0.0)
        go = _to_ndarray(grad_output, "grad_output")
        if go.dtype.kind not in "iufV":
            raise TypeError(f"grad_output must be numeric, got dtype {go.dtype}")
        try:
            go = np.broadcast_to(np.asarray(go, np.float64), positions).reshape(rows)
        except ValueError:
            raise ValueError(
                f"grad_output must have the loss's shape {positions}, got {np.shape(grad_output)}"
            ) from None
    else:
        if np.ndim(grad_output) != 0:
            raise ValueError(
                f"grad_output must be a number for reduction={reduction!r}, "
                f"got shape {np.shape(grad_output)}"
            )
        g = 1.0 if grad_output is None else float(grad_output)
        with np.errstate(divide="ignore", invalid="ignore"):
            go = np.full(rows, np.float64(g) / divisor if reduction == "mean" else g)
    return np.where(valid, go, 0.0)


def row_losses(
    stats: np.ndarray,
    valid: np.ndarray,
    target_weight: Optional[np.ndarray],
    probabilities: bool,
    eps: float,
    classes: int,
    weight_total: float,
) -> np.ndarray:
    """Each row's loss (float64) from its merged statistics:
    index targets  (1-eps) w_y (lse - x_y) + (eps/C) (W lse - sum_c w_c x_c)
    probabilities  (sum_c w_c q'_c) lse - sum_c w_c q'_c x_c
    with lse = M + log S, every difference taken against M first (M - x_y), so that a large common
    offset of the logits cancels exactly."""
    m, s = stats[:, MAX], stats[:, SUM_EXP]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_s = np.log(s)
        if probabilities:
            mass = stats[:, TARGET_MASS]
            return (mass * m - stats[:, WEIGHTED_LOGIT_SUM]) + mass * log_s
        assert target_weight is not None
        loss = target_weight * ((m - stats[:, TARGET_LOGIT]) + log_s)
        if eps != 0.0:  # (without smoothing a -inf non-target logit must not reach the loss)
            smooth = (weight_total * m - stats[:, WEIGHTED_LOGIT_SUM]) + weight_total * log_s
            loss = (1.0 - eps) * loss + eps / classes * smooth
    return np.where(valid, loss, 0.0)


def gradient_factors(
    stats: np.ndarray,
    scale: np.ndarray,
    target_weight: Optional[np.ndarray],
    probabilities: bool,
    eps: float,
    classes: int,
    weight_total: float,
    compute: np.dtype,
    z_loss_scale: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Each row's (lse, a, b_uniform, b_target, correction) for the gradient kernel
    (G_c = a p_c - w_c (b_uniform + b_target q_c) - [c = y] correction; see
    cpp/src/kernels/linear_cross_entropy.cpp). `z_loss_scale`: each row's 2 z times the z-loss's
    reduction factor; the z-loss z lse^2 adds (2 z lse) p_c, so a takes that share."""
    factors = np.zeros((len(scale), 5), np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        factors[:, 0] = stats[:, MAX] + np.log(stats[:, SUM_EXP])
    factors[:, 2] = scale * (eps / classes)
    if probabilities:
        factors[:, 1] = scale * stats[:, TARGET_MASS]
        factors[:, 3] = scale * (1.0 - eps)
    else:
        assert target_weight is not None
        factors[:, 1] = scale * ((1.0 - eps) * target_weight + eps * weight_total / classes)
        factors[:, 4] = scale * (1.0 - eps) * target_weight
    if z_loss_scale is not None:
        with np.errstate(invalid="ignore"):
            factors[:, 1] += np.where(z_loss_scale != 0.0, z_loss_scale * factors[:, 0], 0.0)
    return factors.astype(compute)


class _Strips:
    """The strips of logits of one call: written by BLAS, folded by the tile kernels."""

    def __init__(
        self,
        x2: np.ndarray,
        w_lin: np.ndarray,
        bias: Optional[np.ndarray],
        class_weight: Optional[np.ndarray],
        target: np.ndarray,
        probabilities: bool,
        classes: int,
        eps: float,
        softcap: float,
        compute: np.dtype,
        shape: tuple[int, int, int],
    ) -> None:
        self.x2, self.w_lin, self.bias, self.class_weight = x2, w_lin, bias, class_weight
        self.target, self.probabilities = target, probabilities
        self.classes, self.eps, self.softcap, self.compute = classes, eps, softcap, compute
        strip, tile, self.weight_tile = shape
        self.strip, self.tile = strip, tile
        self.widened = compute != x2.dtype
        features = x2.shape[1]
        self.logits = np.empty((strip, classes if tile == classes else tile), compute)
        self.x_compute = np.empty((strip, features), compute) if self.widened else None
        self.w_compute = np.empty((self.weight_tile, features), compute) if self.widened else None
        self.q_compute = None
        if probabilities and target.dtype != compute:
            self.q_compute = np.empty(self.logits.shape, compute)
        self.smoothing_sum = not probabilities and eps != 0.0
        w = None if class_weight is None else class_weight.astype(np.float64)
        self.tile_weight_sums = {}
        for begin in range(0, classes, tile):
            end = min(classes, begin + tile)
            self.tile_weight_sums[begin] = (
                float(end - begin) if w is None else float(w[begin:end].sum())
            )

    def input_rows(self, begin: int, end: int) -> np.ndarray:
        """The strip's input rows in the compute dtype (widened into scratch for half inputs)."""
        rows = self.x2[begin:end]
        if not self.widened:
            return rows
        out = self.x_compute[: end - begin]
        np.copyto(out, rows, casting="unsafe")
        return out

    def weight_tiles(self, begin: int, end: int):
        """(first class, last class + 1, weights of those classes in the compute dtype) for the
        classes [begin, end), a tile of weights at a time when they must be widened."""
        if not self.widened:
            yield begin, end, self.w_lin[begin:end]
            return
        for b in range(begin, end, self.weight_tile):
            e = min(end, b + self.weight_tile)
            out = self.w_compute[: e - b]
            np.copyto(out, self.w_lin[b:e], casting="unsafe")
            yield b, e, out

    def logits_of(self, rows: int, begin: int, end: int) -> np.ndarray:
        """The buffer of the logits of classes [begin, end) of a strip of `rows` rows."""
        if self.tile == self.classes:
            return self.logits[:rows, begin:end]
        return self.logits[:rows, : end - begin]

    def probabilities_of(self, rows_begin: int, rows_end: int, begin: int, end: int):
        if not self.probabilities:
            return None
        q = self.target[rows_begin:rows_end, begin:end]
        if self.q_compute is None and q.flags.c_contiguous:
            return q
        out = self.q_compute if self.q_compute is not None else np.empty(q.shape, self.compute)
        out = out[: rows_end - rows_begin, : end - begin]
        np.copyto(out, q, casting="unsafe")
        return out if out.flags.c_contiguous else np.ascontiguousarray(out)

    def statistics(self, row_begin: int, row_end: int) -> np.ndarray:
        """The merged statistics of rows [row_begin, row_end) over every class. When the strip
        spans the vocabulary, its logits stay in self.logits for the gradient."""
        rows = row_end - row_begin
        stats = empty_row_statistics((rows,))
        xs = self.input_rows(row_begin, row_end)
        index = None if self.probabilities else np.ascontiguousarray(self.target[row_begin:row_end])
        for begin in range(0, self.classes, self.tile):
            end = min(self.classes, begin + self.tile)
            logits = self.logits_of(rows, begin, end)
            for b, e, w in self.weight_tiles(begin, end):
                np.matmul(xs, w.T, out=logits[:, b - begin : e - begin])
            _core.linear_cross_entropy_fold_tile(
                logits,
                begin,
                self.classes,
                self.eps,
                self.smoothing_sum,
                self.tile_weight_sums[begin],
                None if self.bias is None else self.bias[begin:end],
                None if self.class_weight is None else self.class_weight[begin:end],
                index,
                self.probabilities_of(row_begin, row_end, begin, end),
                stats,
                softcap=self.softcap,
            )
        return stats


def _gradient_buffers(
    x: np.ndarray,
    w_lin: np.ndarray,
    bias: Optional[np.ndarray],
    grad_input_out: Optional[np.ndarray],
    grad_weight_out: Optional[np.ndarray],
    grad_bias_out: Optional[np.ndarray],
) -> tuple[Optional[np.ndarray], ...]:
    """The caller's gradient buffers, checked (None where none was given). grad_input_out may be
    the input itself: each strip's input rows are read before their gradient is written."""
    if grad_bias_out is not None and bias is None:
        raise ValueError("grad_bias_out is only used with a linear_bias")
    return (
        None
        if grad_input_out is None
        else check_grad_out(grad_input_out, x.shape, x.dtype, "grad_input_out", "input"),
        None
        if grad_weight_out is None
        else check_grad_out(
            grad_weight_out, w_lin.shape, w_lin.dtype, "grad_weight_out", "linear_weight"
        ),
        None
        if grad_bias_out is None
        else check_grad_out(grad_bias_out, bias.shape, bias.dtype, "grad_bias_out", "linear_bias"),
    )


class _Gradients:
    """The gradients' accumulators and the BLAS products that fill them, strip by strip."""

    def __init__(
        self,
        buffers: tuple[Optional[np.ndarray], ...],
        input_shape: tuple[int, ...],
        w_lin: np.ndarray,
        has_bias: bool,
        compute: np.dtype,
        strips: _Strips,
    ) -> None:
        self.strips, self.w_lin, self.has_bias = strips, w_lin, has_bias
        self.grad_input_out, self.grad_weight, self.grad_bias = buffers
        classes, features = w_lin.shape
        gi = self.grad_input_out
        if gi is None or not gi.flags.c_contiguous:
            gi = np.empty(input_shape, w_lin.dtype)
        self.grad_input = gi
        self.grad_input2 = gi.reshape(-1, features)
        # grad_weight and grad_bias accumulate across strips in the compute dtype and are
        # rounded once: in the caller's buffer itself when it is of that dtype and contiguous.
        # The first strip's products are written into it, not added to zeros: that saves a pass
        # over V x d (see results() for a call without rows).
        gw = self.grad_weight
        if gw is not None and gw.dtype == compute and gw.flags.c_contiguous:
            self.weight_sum = gw
        else:
            self.weight_sum = np.empty((classes, features), compute)
        self.weight_sum_written = False
        self.bias_sum = np.zeros(classes, compute) if has_bias else None
        self.bias_part = np.empty(classes, compute) if has_bias else None
        self.product = np.empty((strips.weight_tile, features), compute)
        self.input_part = None
        if strips.widened or strips.tile != classes:  # grad_input summed over tiles
            self.input_part = np.empty((strips.strip, features), compute)
            self.input_sum = np.empty((strips.strip, features), compute)

    def add_strip(self, begin: int, end: int, factors: np.ndarray) -> None:
        """Adds the gradients of rows [begin, end), whose statistics gave `factors`. A strip that
        spans the vocabulary still holds its logits; vocabulary tiles are computed again."""
        s = self.strips
        rows = end - begin
        factors = np.ascontiguousarray(factors)
        index = None if s.probabilities else np.ascontiguousarray(s.target[begin:end])
        smoothing_weight = s.probabilities or s.eps != 0.0  # (see index_gradient in C++)
        xs = s.input_rows(begin, end)
        spans = s.tile == s.classes
        total = None
        if self.input_part is not None:
            total = self.input_sum[:rows]
            total.fill(0)
        for tile_begin in range(0, s.classes, s.tile):
            tile_end = min(s.classes, tile_begin + s.tile)
            g = s.logits_of(rows, tile_begin, tile_end)
            if not spans:
                for b, e, w in s.weight_tiles(tile_begin, tile_end):
                    np.matmul(xs, w.T, out=g[:, b - tile_begin : e - tile_begin])
                if s.bias is not None:
                    g += s.bias[tile_begin:tile_end]
            _core.linear_cross_entropy_tile_gradient(
                g,
                tile_begin,
                s.classes,
                s.eps,
                None
                if s.class_weight is None or not smoothing_weight
                else s.class_weight[tile_begin:tile_end],
                index,
                s.probabilities_of(begin, end, tile_begin, tile_end),
                factors,
                softcap=s.softcap,
                capped=spans,  # a strip that spans the vocabulary was capped by its statistics
            )
            for b in range(tile_begin, tile_end, s.weight_tile):
                e = min(tile_end, b + s.weight_tile)
                g_columns = g[:, b - tile_begin : e - tile_begin]
                if not self.weight_sum_written:
                    np.matmul(g_columns.T, xs, out=self.weight_sum[b:e])
                    continue
                part = self.product[: e - b]
                np.matmul(g_columns.T, xs, out=part)
                self.weight_sum[b:e] += part
            if self.bias_sum is not None:
                column_sums = self.bias_part[: tile_end - tile_begin]
                np.sum(g, axis=0, out=column_sums)
                self.bias_sum[tile_begin:tile_end] += column_sums
            if total is None:
                np.matmul(g, self.w_lin, out=self.grad_input2[begin:end])
                continue
            for b, e, w in s.weight_tiles(tile_begin, tile_end):
                part = self.input_part[:rows]
                np.matmul(g[:, b - tile_begin : e - tile_begin], w, out=part)
                total += part
        if total is not None:
            np.copyto(self.grad_input2[begin:end], total, casting="unsafe")
        self.weight_sum_written = True

    def results(self) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        if not self.weight_sum_written:  # no rows: no strip wrote it
            self.weight_sum.fill(0)
        grad_weight = self._rounded(self.weight_sum, self.grad_weight, self.w_lin.dtype)
        grad_bias = None
        if self.has_bias:
            grad_bias = self._rounded(self.bias_sum, self.grad_bias, self.w_lin.dtype)
        grad_input = self.grad_input
        if self.grad_input_out is not None and grad_input is not self.grad_input_out:
            np.copyto(self.grad_input_out, grad_input)
            grad_input = self.grad_input_out
        return grad_input, grad_weight, grad_bias

    @staticmethod
    def _rounded(total: np.ndarray, out: Optional[np.ndarray], dtype: np.dtype) -> np.ndarray:
        if out is total:
            return out
        with np.errstate(over="ignore"):  # beyond float16's range is inf
            if out is not None:
                np.copyto(out, total, casting="unsafe")
                return out
            return total if total.dtype == dtype else total.astype(dtype)
