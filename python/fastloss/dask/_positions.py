"""Losses over blocks that hold whole rows: each block runs the NumPy function itself with
``reduction="none"`` (the per-position losses, and the gradient in the same pass), and the
reduction over blocks happens here, in float64, with PyTorch's denominators.

[Note: lazy gradient scale] A mean's gradient is ``grad_output / D`` times each position's
gradient, and D (the summed weights of the non-ignored targets, say) is a global quantity. D comes
from the targets alone, so it is a cheap lazy scalar; each block receives ``grad_output / D`` as
the NumPy function's per-position ``grad_output`` and writes its scaled gradient in its one pass
over the logits. Forward and gradient share that pass: one task per block returns both, and the
loss and the gradient are views of it (computed once when asked for together).
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Optional

import dask.array as da
import numpy as np

from ._operands import empty_like_meta

__all__ = ["losses_per_position", "reduce_positions", "scaled"]


def _run_block(
    function: Callable[..., Any],
    operand_names: tuple[Optional[str], ...],
    lazy_names: tuple[str, ...],
    return_grad: bool,
    options: dict,
    *blocks: Any,
) -> Any:
    """One block: the NumPy function on its operand blocks (positional where their name is None,
    else by keyword), with the lazy options (0-d blocks) and, for the gradient, the
    per-position grad_output block last."""
    operand_count = len(operand_names)
    positional = [b for b, n in zip(blocks, operand_names) if n is None]
    named = {n: b for b, n in zip(blocks, operand_names) if n is not None}
    lazy = {name: float(v) for name, v in zip(lazy_names, blocks[operand_count:])}
    rest = blocks[operand_count + len(lazy_names) :]
    if not return_grad:
        return function(*positional, reduction="none", **named, **options, **lazy)
    loss, grad = function(
        *positional, reduction="none", return_grad=True, grad_output=rest[0], **named,
        **options, **lazy,
    )
    return loss, grad


def losses_per_position(
    function: Callable[..., Any],
    operands: list[tuple[da.Array, str]],
    index: str,
    result_dtype: np.dtype,
    options: dict,
    lazy_options: Optional[dict] = None,
    grad_output: Optional[tuple[Any, Optional[str]]] = None,
    grad_dtype: Any = None,
    class_letter: Optional[str] = None,
    keywords: tuple[Optional[str], ...] = (),
) -> tuple[da.Array, Optional[da.Array]]:
    """(per-position losses, gradient or None) of `function` over blockwise `operands` (array,
    index) pairs, block by block over `index` (the first operand's). `class_letter` names the
    class axis (whole in every block) that the loss drops; with `grad_output` = (value,
    blockwise index or None), the gradient of the first operand comes too, with its chunks.
    `keywords` names the last operands, passed by keyword. An operand axis whose letter is not
    in `index` (a top-k teacher's k entries) comes to each task whole. No block is copied on the
    way: a
    blockwise contraction over the class axis would concatenate (copy) every block of logits,
    so the class axis stays in the blockwise index and leaves the loss afterwards."""
    lazy_options = lazy_options or {}
    return_grad = grad_output is not None
    args: list[Any] = []
    for array, operand_index in operands:
        args += [array, operand_index]
    for value in lazy_options.values():
        args += [value, ""]
    if return_grad:
        args += list(grad_output)
    names = (None,) * (len(operands) - len(keywords)) + tuple(keywords)
    drop = None if class_letter is None else index.index(class_letter)
    block = _BlockCall(function, names, tuple(lazy_options), return_grad, options, drop)
    ndim = len(index)
    if not return_grad:
        loss = da.blockwise(
            block, index, *args, dtype=result_dtype, meta=empty_like_meta(ndim, result_dtype),
            adjust_chunks=None if class_letter is None else {class_letter: 1}, concatenate=True,
        )
        return (loss if drop is None else loss.squeeze(axis=drop)), None
    pairs = da.blockwise(
        block, index, *args, dtype=object, meta=empty_like_meta(ndim, object), concatenate=True
    )
    loss = pairs.map_blocks(
        operator.itemgetter(0), dtype=result_dtype, meta=empty_like_meta(ndim, result_dtype),
        chunks=tuple((1,) if a == drop else c for a, c in enumerate(pairs.chunks)),
    )
    grad = pairs.map_blocks(
        operator.itemgetter(1), dtype=grad_dtype, meta=empty_like_meta(ndim, grad_dtype)
    )
    return (loss if drop is None else loss.squeeze(axis=drop)), grad


class _BlockCall:
    """`_run_block` with its settings bound: a named, picklable callable for the task graph
    (its name, not functools.partial's, shows up in dask's dashboards and keys)."""

    def __init__(self, function, operand_names, lazy_names, return_grad, options, drop) -> None:
        self.function, self.operand_names, self.drop = function, operand_names, drop
        self.lazy_names, self.return_grad, self.options = lazy_names, return_grad, options
        self.__name__ = getattr(function, "__name__", "loss")

    def __call__(self, *blocks: Any) -> Any:
        result = _run_block(
            self.function, self.operand_names, self.lazy_names, self.return_grad, self.options,
            *blocks,
        )
        if self.drop is None:
            return result
        # the loss keeps the class axis (length 1) until the whole array drops it
        if self.return_grad:
            return np.expand_dims(result[0], self.drop), result[1]
        return np.expand_dims(result, self.drop)


def _finish(total: np.ndarray, factor: Any, dtype: np.dtype) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float16's range is inf
        value = np.float64(total) * np.float64(factor)
        if dtype.kind != "f":  # bfloat16 rounds through float32, as the NumPy functions do
            return np.asarray(np.float32(value)).astype(dtype)
        return np.asarray(value, dtype=dtype)


def reduce_positions(
    losses: da.Array, reduction: str, factor: Any, dtype: np.dtype
) -> da.Array:
    """The reduced loss (a 0-d dask array of `dtype`): the float64 sum of the per-position
    losses times `factor` (1/D for a mean, 1 for a sum: a number or a lazy 0-d array);
    `losses` itself for ``"none"``."""
    if reduction == "none":
        return losses
    total = losses.sum(dtype=np.float64)
    return da.map_blocks(_finish, total, factor, dtype, dtype=dtype, meta=empty_like_meta(0, dtype))


def scaled(factor: Any, grad_output: Any) -> Any:
    """grad_output * factor, lazily when factor is lazy (see [Note: lazy gradient scale])."""
    g = 1.0 if grad_output is None else float(grad_output)
    if isinstance(factor, da.Array):
        return factor.map_blocks(_times, g, dtype=np.float64)
    return g * factor


def _times(factor: np.ndarray, g: float) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(np.float64(factor) * g)
