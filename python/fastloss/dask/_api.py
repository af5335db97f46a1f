"""fastloss.dask's functions: the NumPy API's names and options on dask arrays, lazily.

Every function first calls its NumPy counterpart on small stand-ins of its operands (the same
dtypes and options, with one position axis emptied): the NumPy function's own checks give the
errors, and its result gives the dtype. Then, over the blocks:

- the class axis whole in every block: the NumPy function runs on each block with
  ``reduction="none"`` (`_positions`), the gradient in the same pass;
- the class axis in several chunks: merged row statistics (`_class_chunks`), which also give
  cross_entropy's gradient; the other losses' gradients need the class axis in one chunk;

and reductions over positions happen in float64 with PyTorch's denominators (`_denominators`).
Nothing is computed before ``.compute()``.
"""

from __future__ import annotations

from typing import Any, Optional

import dask.array as da
import numpy as np

import fastloss as fl

from .._class_losses import class_axis
from .._gradient import LossAndGrad, LossAndLse, LossLseAndGrad
from .._validation import normalize_axis
from . import _class_chunks as chunked
from ._denominators import (
    distillation_factors,
    elementwise_factor,
    index_target_denominator,
    index_target_factor,
)
from ._operands import (
    as_dask,
    check_same_chunks,
    index_letters,
    with_class_axis,
)
from ._positions import losses_per_position, reduce_positions, scaled

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "distillation_loss",
    "entropy",
    "kl_div",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "softmax",
]


# ---------------------------------------------------------------------------------------------
# operands and stand-ins


def _host_array(a: Any, name: str) -> Any:
    """A target-like operand: a dask array (of known chunk sizes) as is, anything else as a
    NumPy array (wrapped later, with the chunks it must have)."""
    if isinstance(a, da.Array):
        return as_dask(a, name)
    if callable(getattr(a, "compute", None)):
        as_dask(a, name)  # the TypeError for other dask collections
    return np.asarray(a)


def _small_vector(a: Any, name: str) -> Optional[np.ndarray]:
    """Per-class weights stay NumPy arrays: every block needs them (or its slice) whole."""
    if isinstance(a, da.Array):
        raise TypeError(
            f"{name} must be a NumPy array (per-class values, sent whole to every block), got a "
            f"dask array; pass {name}.compute()"
        )
    return None if a is None else np.asarray(a)


def _emptied(shape: tuple[int, ...], axis: Optional[int]) -> tuple[int, ...]:
    """`shape` with `axis` emptied (unchanged when axis is None)."""
    return shape if axis is None else (*shape[:axis], 0, *shape[axis + 1 :])


def _standin(a: Any, axis: Optional[int]) -> np.ndarray:
    """A zero-stride array of zeros (no memory) of `a`'s dtype and shape, `axis` emptied."""
    return np.broadcast_to(np.zeros((), a.dtype), _emptied(tuple(a.shape), axis))


def _without(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return shape[:axis] + shape[axis + 1 :]


def _standin_grad_output(grad_output: Any, loss_shape: tuple, standin_loss_shape: tuple) -> Any:
    """grad_output for the stand-in call: numbers as they are; an array of the loss's shape as
    one of the stand-in loss's shape (an array of another shape keeps it, for the NumPy error)."""
    if grad_output is None or (not isinstance(grad_output, da.Array) and np.ndim(grad_output) == 0):
        return grad_output
    shape = tuple(np.shape(grad_output))
    dtype = grad_output.dtype if hasattr(grad_output, "dtype") else np.asarray(grad_output).dtype
    return np.broadcast_to(
        np.zeros((), dtype), standin_loss_shape if shape == loss_shape else shape
    )


def _first_position_axis(ndim: int, class_ax: int) -> Optional[int]:
    return next((a for a in range(ndim) if a != class_ax), None)


def _dtype_of(value: Any, return_grad: bool) -> np.dtype:
    return np.asarray(value[0] if return_grad else value).dtype


class _Chunks:
    """Shape and chunks of the loss, for check_same_chunks's message about grad_output."""

    def __init__(self, chunks: tuple) -> None:
        self.chunks = chunks
        self.shape = tuple(int(sum(c)) for c in chunks)


def _grad_output_operand(
    grad_output: Any, reduction: str, factor: Any, index: str, chunks: tuple
) -> tuple[Any, Optional[str]]:
    """grad_output as `losses_per_position` takes it, (value, blockwise index): for mean and
    sum the lazy scale grad_output * factor, for none the per-position array's blocks."""
    if reduction != "none":
        g = scaled(factor, grad_output)
        return (g, "") if isinstance(g, da.Array) else (g, None)
    if grad_output is None:
        return 1.0, None
    if not isinstance(grad_output, da.Array) and np.ndim(grad_output) == 0:
        return float(grad_output), None
    g = as_dask(grad_output, "grad_output", chunks=chunks)
    loss = _Chunks(chunks)
    check_same_chunks(g, "grad_output", tuple(range(g.ndim)), loss, "the loss",  # type: ignore
                      tuple(range(len(chunks))))
    return g, index


def _whole_classes(x: da.Array, ax: int, what: str) -> None:
    if x.numblocks[ax] != 1:
        raise ValueError(
            f"{what} needs the class axis {ax} of its logits in one chunk, but it has "
            f"{x.numblocks[ax]} chunks {x.chunks[ax]}; rechunk with .rechunk({{{ax}: -1}})"
        )


def _result(loss: Any, grad: Optional[da.Array]) -> Any:
    return loss if grad is None else LossAndGrad(loss, grad)


# ---------------------------------------------------------------------------------------------
# losses over a class axis: cross_entropy, nll_loss, distillation_loss


class _ClassOperands:
    """Logits (dask), their class axis, and the target wrapped and checked to meet their
    blocks: index targets chunked as the positions, probabilities as the logits."""

    def __init__(self, input: Any, target: Any, axis: Any, input_name: str = "input") -> None:
        self.x = as_dask(input, input_name)
        self.name = input_name
        self.ax = class_axis(self.x.ndim, axis)
        self.target = _host_array(target, "target")
        self.probabilities = np.dtype(self.target.dtype).kind in "fV"  # bfloat16's kind is V
        letters = index_letters(self.x.ndim)
        self.letters = letters
        self.class_letter = letters[self.ax]
        self.pos_letters = letters[: self.ax] + letters[self.ax + 1 :]
        self.positions = _without(self.x.shape, self.ax)
        self.pos_chunks = _without(self.x.chunks, self.ax)
        self.emptied = _first_position_axis(self.x.ndim, self.ax)

    def standin_input(self, a: Any = None) -> np.ndarray:
        return _standin(self.x if a is None else a, self.emptied)

    def standin_target(self) -> np.ndarray:
        """The target's stand-in, emptied along the logits' emptied axis when it spans it (a
        target of another shape keeps its own, for the NumPy function's message)."""
        t = self.target
        if self.emptied is not None and tuple(t.shape) == self.x.shape:
            return _standin(t, self.emptied)
        if self.emptied is not None and tuple(t.shape) == self.positions:
            return _standin(t, self.emptied if self.emptied < self.ax else self.emptied - 1)
        return _standin(t, None)

    def standin_loss_shape(self) -> tuple[int, ...]:
        return _without(_emptied(self.x.shape, self.emptied), self.ax)

    def aligned_target(self) -> da.Array:
        axes = tuple(range(self.x.ndim))
        if not self.probabilities:
            axes = tuple(a for a in axes if a != self.ax)
        td = as_dask(self.target, "target", chunks=tuple(self.x.chunks[a] for a in axes))
        check_same_chunks(td, "target", tuple(range(td.ndim)), self.x, self.name, axes)
        return td

    def aligned_like_input(self, a: Any, name: str) -> da.Array:
        ad = as_dask(a, name, chunks=self.x.chunks)
        check_same_chunks(ad, name, tuple(range(ad.ndim)), self.x, self.name,
                          tuple(range(self.x.ndim)))
        return ad

    def target_index(self) -> str:
        return self.letters if self.probabilities else self.pos_letters


def _whole_row_losses(
    function: Any, ops: _ClassOperands, operands: list, options: dict, dtype: np.dtype,
    reduction: str, loss_factor: Any, return_grad: bool, grad_output: Any,
    grad_factor: Any = None, lazy_options: Optional[dict] = None,
) -> Any:
    """Blocks holding whole rows: the NumPy function per block, reduced here."""
    go = None
    if return_grad:
        go = _grad_output_operand(
            grad_output, reduction, loss_factor if grad_factor is None else grad_factor,
            ops.pos_letters, ops.pos_chunks,
        )
    losses, grad = losses_per_position(
        function, operands, ops.letters, dtype, options, lazy_options=lazy_options,
        grad_output=go, grad_dtype=ops.x.dtype, class_letter=ops.class_letter,
    )
    return _result(reduce_positions(losses, reduction, loss_factor, dtype), grad)


def _mean_factor(ops: _ClassOperands, td: da.Array, w: Optional[np.ndarray], ignore: int) -> Any:
    if ops.probabilities:
        return elementwise_factor(ops.positions)
    return index_target_factor(td, ops.x.shape[ops.ax], ignore, w)


def cross_entropy(
    input: Any,
    target: Any,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    axis: Optional[int] = None,
    z_loss: float = 0.0,
    softcap: Optional[float] = None,
    return_lse: bool = False,
    return_grad: bool = False,
    grad_output: Any = None,
) -> Any:
    """`fastloss.cross_entropy` on dask arrays, lazily: a 0-d dask array (mean, sum) or the
    per-position losses (none); ``LossAndGrad(loss, grad)`` with ``return_grad=True``, the
    gradient chunked as the input. The class axis may be chunked: each chunk's row statistics
    merge exactly, and the merged statistics give every chunk its part of the gradient. NumPy
    operands are wrapped to meet the input's blocks; ``weight`` is a NumPy array.
    ``z_loss`` and ``softcap`` need the class axis in one chunk; ``return_lse`` gives the
    per-position log-sum-exp as a dask array too (`LossAndLse` / `LossLseAndGrad`)."""
    ops = _ClassOperands(input, target, axis)
    w = _small_vector(weight, "weight")
    value = fl.cross_entropy(
        ops.standin_input(), ops.standin_target(), weight=w, ignore_index=ignore_index,
        reduction=reduction, label_smoothing=label_smoothing, axis=ops.ax, z_loss=z_loss,
        softcap=softcap, return_lse=return_lse, return_grad=return_grad,
        grad_output=_standin_grad_output(grad_output, ops.positions, ops.standin_loss_shape()),
    )
    dtype = _dtype_of(value, return_grad or return_lse)
    result = _cross_entropy(ops, w, ignore_index, reduction, label_smoothing, float(z_loss),
                            softcap, return_grad, grad_output, dtype)
    if not return_lse:
        return result
    lse = _positions_logsumexp(ops, softcap, dtype)
    return LossLseAndGrad(result.loss, lse, result.grad) if return_grad else LossAndLse(result, lse)


def _positions_logsumexp(ops: _ClassOperands, softcap: Optional[float], dtype: np.dtype) -> Any:
    """return_lse's array: each position's logsumexp of its (capped) logits, in float64 and
    rounded once to the loss's dtype, as the NumPy function gives it."""
    x = ops.x.astype(np.float64)
    if softcap is not None:
        x = x.map_blocks(_capped, float(softcap), dtype=np.float64)
    return logsumexp(x, ops.ax).astype(dtype)


def _capped(x: np.ndarray, softcap: float) -> np.ndarray:
    return softcap * np.tanh(x / softcap)


def _cross_entropy(
    ops: _ClassOperands, w: Optional[np.ndarray], ignore_index: int, reduction: str,
    label_smoothing: float, z_loss: float, softcap: Optional[float], return_grad: bool,
    grad_output: Any, dtype: np.dtype,
) -> Any:
    td = ops.aligned_target()
    factor = _mean_factor(ops, td, w, ignore_index) if reduction == "mean" else 1.0
    if ops.x.numblocks[ops.ax] > 1 and (z_loss != 0.0 or softcap is not None):
        _whole_classes(ops.x, ops.ax, "cross_entropy with z_loss or softcap")
    if ops.x.numblocks[ops.ax] > 1:
        losses = chunked.chunked_cross_entropy(
            ops.x, td, ops.ax, ops.probabilities, float(label_smoothing), w, ignore_index, dtype
        )
        loss = reduce_positions(losses.astype(dtype) if reduction == "none" else losses,
                                reduction, factor, dtype)
        if not return_grad:
            return loss
        scale = _grad_output_operand(grad_output, reduction, factor, ops.pos_letters,
                                     ops.pos_chunks)
        if scale[1] is not None and scale[1] != "":  # per position: the class axis of length 1
            scale = (with_class_axis(scale[0], ops.ax), ops.letters)
        grad = chunked.chunked_cross_entropy_gradient(
            ops.x, td, ops.ax, ops.probabilities, float(label_smoothing), w, ignore_index, dtype,
            scale,
        )
        return LossAndGrad(loss, grad)
    options = dict(weight=w, ignore_index=ignore_index, label_smoothing=label_smoothing,
                   axis=ops.ax, softcap=softcap, z_loss=z_loss)
    lazy_z: dict = {}
    if z_loss != 0.0 and reduction == "mean":
        del options["z_loss"]
        lazy_z = {"z_loss": _z_loss_of_blocks(ops, td, ignore_index, z_loss, factor)}
    operands = [(ops.x, ops.letters), (td, ops.target_index())]
    return _whole_row_losses(fl.cross_entropy, ops, operands, options, dtype, reduction, factor,
                             return_grad, grad_output, lazy_options=lazy_z)


def _z_loss_of_blocks(
    ops: _ClassOperands, td: Any, ignore_index: int, z_loss: float, weight_factor: Any
) -> Any:
    """The z_loss option of every block under mean, lazily. Each block's losses are summed and
    divided by the weights' sum D (weight_factor is 1/D); the z-loss's mean divides by the
    number n of non-ignored positions instead: z D / n per block gives that (its gradient too).
    Without a positive D or any position the mean is NaN anyway."""
    count_factor = (elementwise_factor(ops.positions) if ops.probabilities
                    else index_target_factor(td, ops.x.shape[ops.ax], ignore_index, None))
    return da.map_blocks(_z_loss_per_block, z_loss, count_factor, weight_factor, dtype=np.float64)


def _z_loss_per_block(z_loss: float, count_factor: Any, weight_factor: Any) -> np.ndarray:
    """z D / n from the factors 1/n and 1/D; 0 where that is not a finite number >= 0."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        value = np.float64(z_loss) * np.float64(count_factor) / np.float64(weight_factor)
    return np.asarray(float(value) if np.isfinite(value) and value >= 0 else 0.0)


def nll_loss(
    input: Any,
    target: Any,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    axis: Optional[int] = None,
    return_grad: bool = False,
    grad_output: Any = None,
) -> Any:
    """`fastloss.nll_loss` on dask arrays, lazily (see `cross_entropy`); with a chunked class
    axis each chunk contributes the picked log-probabilities it holds."""
    ops = _ClassOperands(input, target, axis)
    w = _small_vector(weight, "weight")
    value = fl.nll_loss(
        ops.standin_input(), ops.standin_target(), weight=w, ignore_index=ignore_index,
        reduction=reduction, axis=ops.ax, return_grad=return_grad,
        grad_output=_standin_grad_output(grad_output, ops.positions, ops.standin_loss_shape()),
    )
    dtype = _dtype_of(value, return_grad)
    td = ops.aligned_target()
    factor = _mean_factor(ops, td, w, ignore_index) if reduction == "mean" else 1.0
    if ops.x.numblocks[ops.ax] > 1:
        if return_grad:
            _whole_classes(ops.x, ops.ax, "nll_loss with return_grad=True")
        losses = chunked.chunked_nll_loss(ops.x, td, ops.ax, w, ignore_index)
        return reduce_positions(losses.astype(dtype) if reduction == "none" else losses,
                                reduction, factor, dtype)
    options = dict(weight=w, ignore_index=ignore_index, axis=ops.ax)
    operands = [(ops.x, ops.letters), (td, ops.pos_letters)]
    return _whole_row_losses(fl.nll_loss, ops, operands, options, dtype, reduction, factor,
                             return_grad, grad_output)


def distillation_loss(
    student_logits: Any,
    teacher_logits: Any,
    target: Any,
    *,
    temperature: float = 2.0,
    alpha: float = 0.5,
    divergence: str = "kl",
    beta: float = 0.5,
    reduction: str = "mean",
    weight: Any = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: Optional[float] = None,
    teacher_topk: Any = None,
    topk_residual: str = "renormalize",
    axis: Optional[int] = None,
    return_grad: bool = False,
    grad_output: Any = None,
) -> Any:
    """`fastloss.distillation_loss` on dask arrays, lazily (see `cross_entropy`). With a chunked
    class axis (no return_grad), the cross-entropy comes from merged row statistics and the KL
    term from each chunk's share, once the two tempered logsumexps are merged; the other
    divergences ("reverse_kl", "jsd"), ``z_loss``, ``softcap`` and a top-k teacher
    (``teacher_topk=(indices, logprobs)``, chunked as the positions with the k entries in one
    chunk) need the class axis in one chunk."""
    ops = _ClassOperands(student_logits, target, axis, "student_logits")
    topk = None
    if teacher_topk is not None:
        if not isinstance(teacher_topk, (tuple, list)) or len(teacher_topk) != 2:
            raise TypeError("teacher_topk must be a pair (indices, logprobs)")
        topk = tuple(_host_array(a, n) for a, n in zip(teacher_topk, _TOPK_NAMES))
    teacher = None if teacher_logits is None else _host_array(teacher_logits, "teacher_logits")
    w = _small_vector(weight, "weight")
    value = fl.distillation_loss(
        ops.standin_input(), None if teacher is None else ops.standin_input(teacher),
        ops.standin_target(), temperature=temperature, alpha=alpha, divergence=divergence,
        beta=beta, reduction=reduction, weight=w,
        ignore_index=ignore_index, label_smoothing=label_smoothing, z_loss=z_loss,
        softcap=softcap, axis=ops.ax, return_grad=return_grad,
        teacher_topk=None if topk is None else tuple(ops.standin_input(a) for a in topk),
        topk_residual=topk_residual,
        grad_output=_standin_grad_output(grad_output, ops.positions, ops.standin_loss_shape()),
    )
    dtype = _dtype_of(value, return_grad)
    z = float(z_loss)
    td = ops.aligned_target()
    if topk is not None:
        _whole_classes(ops.x, ops.ax, "distillation_loss with teacher_topk")
    else:
        teacher = ops.aligned_like_input(teacher, "teacher_logits")
    a = float(alpha)
    denominator: Any = 1.0
    if reduction == "mean":
        denominator = float(np.prod(ops.positions)) if ops.probabilities else \
            index_target_denominator(td, ops.x.shape[ops.ax], ignore_index, w)
    if ops.x.numblocks[ops.ax] > 1:
        if return_grad:
            _whole_classes(ops.x, ops.ax, "distillation_loss with return_grad=True")
        if divergence != "kl":
            _whole_classes(ops.x, ops.ax, f"distillation_loss with divergence={divergence!r}")
        if z != 0.0:
            _whole_classes(ops.x, ops.ax, "distillation_loss with z_loss")
        if softcap is not None:
            _whole_classes(ops.x, ops.ax, "distillation_loss with softcap")
        ce, kl = chunked.chunked_distillation(
            ops.x, teacher, td, ops.ax, ops.probabilities, float(temperature),
            float(label_smoothing), w, ignore_index, dtype,
        )
        losses = da.map_blocks(
            _distillation_terms, ce, kl, denominator, a, float(temperature),
            ops.x.shape[0] if ops.x.ndim else 1, reduction, dtype=np.float64,
        )
        reduced = reduction if reduction == "none" else "sum"
        return reduce_positions(losses.astype(dtype) if reduced == "none" else losses,
                                reduced, 1.0, dtype)
    lazy: dict = {}
    loss_factor: Any = 1.0
    grad_factor: Any = 1.0
    options = dict(temperature=temperature, weight=w, ignore_index=ignore_index,
                   label_smoothing=label_smoothing, axis=ops.ax, alpha=a, divergence=divergence,
                   beta=beta, z_loss=z, softcap=softcap)
    if reduction == "mean":
        alpha_eff, loss_factor, grad_factor = distillation_factors(
            denominator, a, ops.x.shape[0]
        )
        if isinstance(alpha_eff, da.Array):
            del options["alpha"]
            lazy["alpha"] = alpha_eff
        else:
            options["alpha"] = alpha_eff
        if z != 0.0:  # the hard term is reduced as cross_entropy's, and so is its z-loss
            del options["z_loss"]
            lazy["z_loss"] = _z_loss_of_blocks(ops, td, ignore_index, z,
                                               _mean_factor(ops, td, w, ignore_index))
    if topk is None:
        function: Any = fl.distillation_loss
        operands = [(ops.x, ops.letters), (teacher, ops.letters), (td, ops.target_index())]
    else:
        function = _topk_distillation_block
        options["topk_residual"] = topk_residual
        operands = [(ops.x, ops.letters), *_topk_operands(ops, topk), (td, ops.target_index())]
    return _whole_row_losses(
        function, ops, operands, options, dtype, reduction, loss_factor,
        return_grad, grad_output, grad_factor=grad_factor, lazy_options=lazy,
    )


_TOPK_NAMES = ("teacher_topk indices", "teacher_topk logprobs")


def _topk_operands(ops: _ClassOperands, topk: tuple) -> list:
    """The top-k teacher's indices and log-probabilities as blockwise operands: chunked as the
    student's positions, their k entries in one chunk (the index letter "y", which the blocks
    contract: dask hands each task the whole k axis)."""
    operands = []
    for a, name in zip(topk, _TOPK_NAMES):
        if a.ndim != ops.x.ndim:
            raise ValueError(f"{name} must have {ops.x.ndim} dimensions, got {a.ndim}")
        chunks = tuple((a.shape[d],) if d == ops.ax else c for d, c in enumerate(ops.x.chunks))
        ad = as_dask(a, name, chunks=chunks)
        axes = tuple(d for d in range(ops.x.ndim) if d != ops.ax)
        check_same_chunks(ad, name, axes, ops.x, ops.name, axes)
        if ad.numblocks[ops.ax] != 1:
            ad = ad.rechunk({ops.ax: -1})  # a few entries per position: cheap to gather
        operands.append((ad, ops.letters.replace(ops.class_letter, "y")))
    return operands


def _topk_distillation_block(
    student_logits: np.ndarray, indices: np.ndarray, logprobs: np.ndarray, target: np.ndarray,
    **options: Any,
) -> Any:
    """One block of distillation_loss with a top-k teacher."""
    return fl.distillation_loss(
        student_logits, None, target, teacher_topk=(indices, logprobs), **options
    )


def _distillation_terms(
    ce: np.ndarray, kl: np.ndarray, denominator: Any, alpha: float, temperature: float,
    batch: int, reduction: str,
) -> np.ndarray:
    """Each position's share of the loss from its CE and KL terms: alpha CE + (1 - alpha) T^2
    KL, each divided by its own denominator for the mean (CE's D, KL's batch size)."""
    kl_weight = (1.0 - alpha) * temperature * temperature
    with np.errstate(divide="ignore", invalid="ignore"):
        if reduction == "mean":
            kl_weight = kl_weight / np.float64(batch)
            ce_weight = alpha / np.float64(denominator)
        else:
            ce_weight = alpha
        value = kl_weight * kl
        return value if alpha == 0.0 else value + ce_weight * ce


# ---------------------------------------------------------------------------------------------
# elementwise losses: kl_div, binary_cross_entropy, binary_cross_entropy_with_logits


def _elementwise(
    function: Any, named: list[tuple[str, Any]], reduction: str, count_factor: Any,
    return_grad: bool, grad_output: Any, options: dict,
) -> Any:
    """An elementwise loss over operands that broadcast together (the first is the input): any
    chunking, as long as the operands' chunks meet. `count_factor(shape, input)` gives the
    mean's factor."""
    arrays = [(name, _host_array(a, name)) for name, a in named if a is not None]
    try:
        shape = np.broadcast_shapes(*(tuple(a.shape) for _, a in arrays))
    except ValueError:  # the NumPy function's message, from zero-stride views of the shapes
        views = [np.broadcast_to(np.zeros((), a.dtype), a.shape) for _, a in arrays]
        function(*views[:2], **{n: v for (n, _), v in zip(arrays[2:], views[2:])},
                 reduction=reduction, **options)
        raise
    ndim = len(shape)
    # stand-ins: the output's first axis longer than 1 emptied in every operand spanning it
    emptied = next((k for k in range(ndim) if shape[k] != 1), None)
    standins = []
    for _, a in arrays:
        k = None if emptied is None else emptied - (ndim - a.ndim)
        standins.append(_standin(a, k if k is not None and k >= 0 and a.shape[k] != 1 else None))
    value = function(
        *standins[:2], **{name: s for (name, _), s in zip(arrays[2:], standins[2:])},
        reduction=reduction, return_grad=return_grad,
        grad_output=_standin_grad_output(grad_output, shape, _emptied(shape, emptied)),
        **options,
    )
    dtype = _dtype_of(value, return_grad)
    # the output's chunks: each axis as the first dask operand spanning it has it
    chunks = []
    for k in range(ndim):
        found = None
        for _, a in arrays:
            lead = ndim - a.ndim
            if isinstance(a, da.Array) and k >= lead and a.shape[k - lead] == shape[k]:
                found = a.chunks[k - lead]
                break
        chunks.append(found if found is not None else (shape[k],))
    letters = index_letters(ndim)
    reference = _Chunks(tuple(chunks))
    operands = []
    x_name, x = arrays[0]
    for name, a in arrays:
        lead = ndim - a.ndim
        if return_grad and name == x_name and tuple(a.shape) != shape:
            a = da.broadcast_to(as_dask(a, name), shape, chunks=tuple(chunks))
            lead = 0
        own = tuple(chunks[lead + k] if a.shape[k] == shape[lead + k] else (a.shape[k],)
                    for k in range(a.ndim))
        ad = as_dask(a, name, chunks=own)
        spanning = tuple(k for k in range(ad.ndim) if ad.shape[k] == shape[lead + k])
        check_same_chunks(ad, name, spanning, reference, "the broadcast loss",  # type: ignore
                          tuple(lead + k for k in spanning))
        operands.append((ad, letters[lead:]))
    factor = count_factor(shape, x) if reduction in ("mean", "batchmean") else 1.0
    go = None
    if return_grad:
        go = _grad_output_operand(grad_output, reduction, factor, letters, tuple(chunks))
    if reduction == "batchmean" and x.ndim == 0:
        reduction = "sum"  # as the NumPy function: a 0-d input's batchmean is its sum
    reduced = "sum" if reduction == "batchmean" else reduction
    losses, grad = losses_per_position(
        function, operands, letters, dtype, options, grad_output=go, grad_dtype=x.dtype,
        keywords=tuple(name for name, _ in arrays[2:]),
    )
    if grad is not None and tuple(x.shape) != shape:
        grad = _summed_to(grad, tuple(x.shape), x.dtype)
    return _result(reduce_positions(losses, reduced, factor, dtype), grad)


def _summed_to(grad: da.Array, shape: tuple[int, ...], dtype: np.dtype) -> da.Array:
    """The gradient of an input that broadcasting stretched: summed in float64 over the axes it
    was stretched along (as PyTorch's sum_to_size)."""
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + k for k, n in enumerate(shape) if n == 1 and grad.shape[lead + k] != 1
    )
    return grad.sum(axis=axes, dtype=np.float64).reshape(shape).astype(dtype)


def _element_count(shape: tuple[int, ...], x: Any) -> float:
    return elementwise_factor(shape)


def _batch_count(shape: tuple[int, ...], x: Any) -> float:
    return elementwise_factor(x.shape[0] if x.ndim else 1)


def kl_div(
    input: Any,
    target: Any,
    *,
    reduction: str = "mean",
    log_target: bool = False,
    return_grad: bool = False,
    grad_output: Any = None,
) -> Any:
    """`fastloss.kl_div` on dask arrays, lazily; any chunking (operands chunked alike)."""
    count = _batch_count if reduction == "batchmean" else _element_count
    return _elementwise(fl.kl_div, [("input", input), ("target", target)], reduction, count,
                        return_grad, grad_output, dict(log_target=log_target))


def binary_cross_entropy(
    input: Any,
    target: Any,
    *,
    weight: Any = None,
    reduction: str = "mean",
    return_grad: bool = False,
    grad_output: Any = None,
) -> Any:
    """`fastloss.binary_cross_entropy` on dask arrays, lazily; any chunking."""
    return _elementwise(
        fl.binary_cross_entropy, [("input", input), ("target", target), ("weight", weight)],
        reduction, _element_count, return_grad, grad_output, {},
    )


def binary_cross_entropy_with_logits(
    input: Any,
    target: Any,
    *,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: str = "mean",
    return_grad: bool = False,
    grad_output: Any = None,
) -> Any:
    """`fastloss.binary_cross_entropy_with_logits` on dask arrays, lazily; any chunking."""
    return _elementwise(
        fl.binary_cross_entropy_with_logits,
        [("input", input), ("target", target), ("weight", weight), ("pos_weight", pos_weight)],
        reduction, _element_count, return_grad, grad_output, {},
    )


# ---------------------------------------------------------------------------------------------
# functions of rows: entropy, logsumexp, log_softmax, softmax


def _row_function_input(x: Any, axis: Any, name: str) -> tuple[da.Array, int]:
    xd = as_dask(x, name)
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(
            f"fastloss.dask takes one integer axis, got axis={axis!r}; reduce over several "
            "axes by moving them into one first"
        )
    return xd, normalize_axis(int(axis), max(xd.ndim, 1))


def entropy(logits: Any = None, axis: int = -1, *, probs: Any = None) -> da.Array:
    """`fastloss.entropy` on dask arrays, lazily; a chunked class axis sums each chunk's share
    (of p * (lse - x), with lse from the merged row statistics) in float64."""
    if (logits is None) == (probs is None):
        return fl.entropy(logits, axis, probs=probs)  # the NumPy function's TypeError
    name = "logits" if probs is None else "probs"
    x, ax = _row_function_input(logits if probs is None else probs, axis, name)
    emptied = _first_position_axis(x.ndim, ax)
    standin = _standin(x, emptied)
    value = fl.entropy(standin, ax) if probs is None else fl.entropy(probs=standin, axis=ax)
    dtype = np.asarray(value).dtype
    if x.numblocks[ax] > 1:
        return chunked.chunked_entropy(x, ax, probs is not None).astype(dtype)
    if probs is None:
        return x.map_blocks(fl.entropy, ax, drop_axis=ax, dtype=dtype,
                            meta=np.empty((0,) * (x.ndim - 1), dtype))
    return x.map_blocks(_entropy_of_probabilities, ax, drop_axis=ax, dtype=dtype,
                        meta=np.empty((0,) * (x.ndim - 1), dtype))


def _entropy_of_probabilities(p: np.ndarray, axis: int) -> np.ndarray:
    return np.asarray(fl.entropy(probs=p, axis=axis))


def _logsumexp_block(x: np.ndarray, axis: int, keepdims: bool) -> np.ndarray:
    return np.asarray(fl.logsumexp(x, axis, keepdims=keepdims))


def logsumexp(x: Any, axis: Any = -1, *, keepdims: bool = False) -> da.Array:
    """`fastloss.logsumexp` over an axis of a dask array, lazily; a chunked axis merges each
    chunk's (max, sum of exponentials) exactly. `axis` may be a tuple of axes, or None for all
    of them, as in the NumPy function (see `_logsumexp_over_axes`)."""
    if axis is None or isinstance(axis, tuple):
        return _logsumexp_over_axes(x, axis, keepdims)
    xd, ax = _row_function_input(x, axis, "x")
    emptied = _first_position_axis(xd.ndim, ax)
    dtype = np.asarray(fl.logsumexp(_standin(xd, emptied), ax, keepdims=keepdims)).dtype
    if xd.numblocks[ax] > 1:
        lse = chunked.logsumexp_of_chunks(xd, ax).astype(dtype)
        return lse if keepdims else lse.squeeze(axis=ax)
    if keepdims:
        return xd.map_blocks(_logsumexp_block, ax, True, chunks=tuple(
            (1,) if a == ax else c for a, c in enumerate(xd.chunks)), dtype=dtype,
            meta=np.empty((0,) * xd.ndim, dtype))
    return xd.map_blocks(_logsumexp_block, ax, False, drop_axis=ax, dtype=dtype,
                         meta=np.empty((0,) * (xd.ndim - 1), dtype))


def _logsumexp_over_axes(x: Any, axis: Optional[tuple], keepdims: bool) -> da.Array:
    """logsumexp over several axes, one at a time, innermost first: logsumexp(x, (a, b)) is
    logsumexp(logsumexp(x, b), a) (the -inf, +inf and NaN cases included), and the partial
    results stay in float64, so the result is rounded once to the NumPy function's dtype."""
    xd = as_dask(x, "x")
    standin = np.broadcast_to(np.zeros((), xd.dtype), (1,) * xd.ndim)  # the NumPy checks
    dtype = np.asarray(fl.logsumexp(standin, axis, keepdims=keepdims)).dtype
    axes = range(xd.ndim) if axis is None else (normalize_axis(a, xd.ndim) for a in axis)
    axes = tuple(sorted(axes, reverse=True))
    result = xd.astype(np.float64)
    for ax in axes:
        result = logsumexp(result, ax, keepdims=True)
    result = result.astype(dtype)
    return result if keepdims or not axes else result.squeeze(axis=axes)


def _softmax_family(function: Any, x: Any, axis: int, dtype: Any, exponentiate: bool) -> Any:
    xd, ax = _row_function_input(x, axis, "x")
    out_dtype = function(_standin(xd, _first_position_axis(xd.ndim, ax)), ax, dtype=dtype).dtype
    if xd.numblocks[ax] > 1:
        source = xd if dtype is None else xd.astype(out_dtype)
        return chunked.shifted_by_logsumexp(source, ax, exponentiate, out_dtype)
    return xd.map_blocks(_softmax_block, function, ax, dtype, dtype=out_dtype,
                         meta=np.empty((0,) * xd.ndim, out_dtype))


def _softmax_block(x: np.ndarray, function: Any, axis: int, dtype: Any) -> np.ndarray:
    return function(x, axis, dtype=dtype)


def softmax(x: Any, axis: int = -1, *, dtype: Any = None) -> da.Array:
    """`fastloss.softmax` on dask arrays, lazily; a chunked axis takes exp(x - lse), lse from
    the merged row statistics, in float64, rounded once."""
    return _softmax_family(fl.softmax, x, axis, dtype, True)


def log_softmax(x: Any, axis: int = -1, *, dtype: Any = None) -> da.Array:
    """`fastloss.log_softmax` on dask arrays, lazily (see `softmax`)."""
    return _softmax_family(fl.log_softmax, x, axis, dtype, False)
