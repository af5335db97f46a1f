"""The operands of fastloss.dask's functions: NumPy arrays wrapped into dask arrays whose chunks
match the input's, and the checks that make chunking mistakes errors at call time (unknown chunk
sizes, chunks that do not line up) instead of wrong results or hangs at compute time."""

from __future__ import annotations

import math
import string
from typing import Any, Optional

import dask.array as da
import numpy as np

__all__ = [
    "as_dask",
    "check_known_chunks",
    "check_same_chunks",
    "empty_like_meta",
    "index_letters",
    "with_class_axis",
]


def check_known_chunks(x: da.Array, name: str) -> None:
    """Denominators, alignment and column offsets all need every chunk's size."""
    for axis, sizes in enumerate(x.chunks):
        if any(math.isnan(s) for s in sizes):
            raise ValueError(
                f"{name} has unknown (NaN) chunk sizes along axis {axis}; call "
                f"{name}.compute_chunk_sizes() (or give the sizes) before passing it"
            )


def as_dask(a: Any, name: str, chunks: Optional[tuple] = None) -> da.Array:
    """A dask array as is; a NumPy operand (or anything np.asarray takes) wrapped as one, with
    `chunks` when given so that it lines up with the input's blocks. Dask arrays are checked for
    known chunk sizes."""
    if isinstance(a, da.Array):
        check_known_chunks(a, name)
        return a
    if a is None or callable(getattr(a, "compute", None)):  # dask collections that aren't arrays
        raise TypeError(f"{name} must be a dask array or a NumPy array, got {type(a).__name__}")
    arr = np.asarray(a)
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got dtype object")
    return da.from_array(arr, chunks=chunks if chunks is not None else arr.shape or ())


def check_same_chunks(
    a: da.Array, name: str, a_axes: tuple[int, ...], x: da.Array, x_name: str,
    x_axes: tuple[int, ...],
) -> None:
    """`a`'s axes `a_axes` must be chunked as `x`'s axes `x_axes` (a block of one must meet the
    matching block of the other). Rechunking silently would move data between workers; the
    caller decides, and the message says how."""
    for a_axis, x_axis in zip(a_axes, x_axes):
        if a.shape[a_axis] != x.shape[x_axis]:
            raise ValueError(
                f"{name} has shape {a.shape} but {x_name} has shape {x.shape}: axis {a_axis} of "
                f"{name} ({a.shape[a_axis]}) must match axis {x_axis} of {x_name} "
                f"({x.shape[x_axis]})"
            )
        if a.chunks[a_axis] != x.chunks[x_axis]:
            raise ValueError(
                f"{name}'s chunks along axis {a_axis} {a.chunks[a_axis]} do not align with "
                f"{x_name}'s chunks along axis {x_axis} {x.chunks[x_axis]}; rechunk one of them, "
                f"e.g. {name}.rechunk({{{a_axis}: {x_name}.chunks[{x_axis}]}})"
            )


def index_letters(ndim: int) -> str:
    """Blockwise index letters for an array of `ndim` axes ("abc..."); the last three letters
    ("xyz") are kept for the extra axes of linear_cross_entropy's blocks."""
    if ndim > 23:
        raise ValueError(f"at most 23 dimensions are supported, got {ndim}")
    return string.ascii_lowercase[:ndim]


def empty_like_meta(ndim: int, dtype: Any) -> np.ndarray:
    """dask's meta: an empty NumPy array of the result's ndim and dtype."""
    return np.empty((0,) * ndim, dtype)


def with_class_axis(target: da.Array, axis: int) -> da.Array:
    """Index targets with a length-1 axis inserted where the logits' class axis is, so that
    blockwise pairs each block of logits with its rows' targets."""
    return target[(slice(None),) * axis + (None,)]
