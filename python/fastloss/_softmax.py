"""softmax, log_softmax and logsumexp: PyTorch's values with NumPy's axis conventions."""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from . import _core
from ._aliasing import separate_from
from ._validation import (
    as_float_array,
    check_out,
    normalize_axes,
    normalize_axis,
    resolve_dtype,
)

__all__ = ["log_softmax", "log_softmax_backward", "logsumexp", "softmax", "softmax_backward"]


def _softmax_like(x: Any, axis: int, dtype: Any, out: Optional[np.ndarray], log: bool) -> np.ndarray:
    arr = as_float_array(x, "x")
    if dtype is not None:
        arr = arr.astype(resolve_dtype(dtype), copy=False)
    result_dtype = arr.dtype
    if arr.ndim == 0:  # torch accepts dim 0 or -1 for a 0-d tensor
        normalize_axis(axis, 1)
        res = _softmax_like(arr.reshape(1), 0, None, None, log).reshape(())
        if out is None:
            return res
        check_out(out, (), result_dtype)[...] = res
        return out
    ax = normalize_axis(axis, arr.ndim)
    if out is not None:
        check_out(out, arr.shape, result_dtype)
    if arr.size == 0:
        return out if out is not None else np.empty_like(arr)

    kernel = _core.log_softmax if log else _core.softmax
    if out is None:
        out = np.empty_like(arr)
    else:
        arr = separate_from(out, arr, may_alias=True)
    kernel(arr, out, ax)
    return out


def softmax(x: Any, axis: int = -1, *, dtype: Any = None, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Softmax along `axis`: exp(x - max) / sum(exp(x - max)).

    Matches ``torch.softmax(x, dim=axis, dtype=dtype)``: a row containing +inf or NaN, or made of
    -inf only, is NaN. `dtype` casts the input before computing (as torch's ``dtype=``); float16 and
    bfloat16 are computed in float32 and rounded once. `out` receives the result (it may be `x`).
    """
    result = _core.softmax_common_case(x, axis, dtype, out)  # see _core's common_case.hpp
    return _softmax_like(x, axis, dtype, out, log=False) if result is None else result


def log_softmax(
    x: Any, axis: int = -1, *, dtype: Any = None, out: Optional[np.ndarray] = None
) -> np.ndarray:
    """Log-softmax along `axis`, computed as (x - max) - log(sum(exp(x - max))).

    Matches ``torch.log_softmax(x, dim=axis, dtype=dtype)``, edge cases included (see softmax).
    """
    result = _core.log_softmax_common_case(x, axis, dtype, out)
    return _softmax_like(x, axis, dtype, out, log=True) if result is None else result


def logsumexp(
    x: Any, axis: Union[int, tuple, None] = -1, *, keepdims: bool = False
) -> Union[np.ndarray, np.floating]:
    """log(sum(exp(x))) over `axis` (an int, a tuple of ints, or None for all axes).

    Matches ``torch.logsumexp``: -inf for an all -inf slice or an empty axis, +inf when a slice
    holds +inf (NaN if it also holds NaN). Returns a NumPy scalar when the result is 0-d.
    """
    result = _core.logsumexp_common_case(x, axis, keepdims)
    if result is not None:
        return result
    arr = as_float_array(x, "x")
    result_dtype = arr.dtype
    if type(axis) is int and arr.ndim:
        ax = normalize_axis(axis, arr.ndim)
        if arr.shape[ax]:
            res = np.empty(arr.shape[:ax] + arr.shape[ax + 1 :], result_dtype)
            _core.logsumexp(arr, res, ax)
            if keepdims:
                res = np.expand_dims(res, ax)
            return res[()] if res.ndim == 0 else res
    if arr.ndim == 0:  # like torch: a 0-d input reduces over "axis 0" of itself
        if axis is not None:
            normalize_axes(axis, 1)
        value = logsumexp(arr.reshape(1), 0)
        return np.asarray(value) if keepdims else value
    axes = (normalize_axis(axis, arr.ndim),) if type(axis) is int else normalize_axes(axis, arr.ndim)
    keep_shape = tuple(1 if d in axes else n for d, n in enumerate(arr.shape))

    if len(axes) == 1:
        work, ax = arr, axes[0]
    else:  # move the reduced axes last and merge them (a copy only if the layout demands it)
        rest = [d for d in range(arr.ndim) if d not in axes]
        moved = np.transpose(arr, rest + list(axes))
        # the merged length spelled out: reshape cannot infer -1 when another axis has length 0
        merged = int(np.prod([arr.shape[d] for d in axes], dtype=np.int64))
        work = moved.reshape(moved.shape[: len(rest)] + (merged,))
        ax = work.ndim - 1

    reduced_shape = tuple(1 if d == ax else n for d, n in enumerate(work.shape))
    if work.shape[ax] == 0:
        res = np.full(reduced_shape, -np.inf, dtype=result_dtype)
    else:
        res = np.empty(reduced_shape, dtype=result_dtype)
        if work.size:
            _core.logsumexp(work, res, ax)
    if keepdims:
        return res.reshape(keep_shape)
    res = res.reshape(tuple(n for d, n in enumerate(arr.shape) if d not in axes))
    return res[()] if res.ndim == 0 else res


def _backward(grad_output: Any, output: Any, axis: int, out: Optional[np.ndarray], log: bool) -> np.ndarray:
    g = as_float_array(grad_output, "grad_output")
    y = as_float_array(output, "output")
    if g.shape != y.shape:
        raise ValueError(
            f"grad_output has shape {g.shape} but output has shape {y.shape}; they must be equal"
        )
    result_dtype = np.result_type(g.dtype, y.dtype)
    g = g.astype(result_dtype, copy=False)
    y = y.astype(result_dtype, copy=False)
    if g.ndim == 0:
        g, y = g.reshape(1), y.reshape(1)
        normalize_axis(axis, 1)
        res = _backward(g, y, 0, None, log).reshape(())
        if out is None:
            return res
        check_out(out, (), result_dtype)[...] = res
        return out
    ax = normalize_axis(axis, g.ndim)
    if out is not None:
        check_out(out, g.shape, result_dtype)
        g = separate_from(out, g, may_alias=True)
        y = separate_from(out, y)  # y is read again after out is written
        target = out
    else:
        target = np.empty_like(g)
    if g.size:
        (_core.log_softmax_backward if log else _core.softmax_backward)(g, y, target, ax)
    return target


def softmax_backward(
    grad_output: Any, output: Any, axis: int = -1, *, out: Optional[np.ndarray] = None
) -> np.ndarray:
    """Gradient of softmax: ``output * (grad_output - sum(grad_output * output, axis))``.

    `output` is what `softmax` returned; `grad_output` the gradient with respect to it. As
    ``torch._softmax_backward_data``. `out` may be `grad_output` itself.
    """
    result = _core.softmax_backward_common_case(grad_output, output, axis, out)
    return _backward(grad_output, output, axis, out, log=False) if result is None else result


def log_softmax_backward(
    grad_output: Any, output: Any, axis: int = -1, *, out: Optional[np.ndarray] = None
) -> np.ndarray:
    """Gradient of log_softmax: ``grad_output - exp(output) * sum(grad_output, axis)``.

    `output` is what `log_softmax` returned. As ``torch._log_softmax_backward_data``. `out` may be
    `grad_output` itself.
    """
    result = _core.log_softmax_backward_common_case(grad_output, output, axis, out)
    return _backward(grad_output, output, axis, out, log=True) if result is None else result
