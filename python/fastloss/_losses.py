"""cross_entropy and nll_loss: torch.nn.functional's semantics, fused kernels."""

from __future__ import annotations

import operator
from typing import Any, NamedTuple, Optional, Union

import numpy as np

from . import _core
from ._aliasing import separate_from
from ._validation import (
    _is_supported_float,
    _to_ndarray,
    as_float_array,
    as_index_array,
    check_reduction,
    is_aligned,
    normalize_axis,
    promote_dtypes,
    refuse_masked,
)

__all__ = ["LossAndGrad", "cross_entropy", "nll_loss"]

LossValue = Union[np.ndarray, np.floating]


class LossAndGrad(NamedTuple):
    """What a loss returns with ``return_grad=True``: the loss, and its gradient with respect to
    the first array argument (of ``sum(grad_output * loss)`` for ``reduction="none"``)."""

    loss: LossValue
    grad: np.ndarray


def _gradient_arguments(
    x: np.ndarray,
    positions: tuple[int, ...],
    reduction: str,
    grad_output: Any,
    grad_out: Any,
) -> tuple[np.ndarray, np.ndarray, Any]:
    """(input, gradient buffer, grad_output as the kernels take it), each separate from the
    gradient buffer but for the input, which may be that buffer itself (see _aliasing)."""
    dtype = x.dtype
    if grad_out is None:
        grad = np.empty_like(x)
    else:
        grad = _check_grad_out(grad_out, x.shape, dtype)
        x = separate_from(grad, x, may_alias=True)
    if grad_output is None:
        return x, grad, None
    if reduction == "none":
        go = _to_ndarray(grad_output, "grad_output")
        if go.dtype.kind not in "iu" and not _is_supported_float(go.dtype.newbyteorder("=")):
            raise TypeError(f"grad_output must be numeric, got dtype {go.dtype}")
        if go.shape != positions:
            try:  # a broadcastable grad_output (a scalar, say) is a zero-stride view, not a copy
                go = np.broadcast_to(go, positions)
            except ValueError:
                raise ValueError(
                    f"grad_output must have the loss's shape {positions}, got {go.shape}"
                ) from None
        go = np.asarray(go, dtype=dtype)
        return x, grad, separate_from(grad_out, go if go.flags.aligned else go.copy())
    if np.ndim(grad_output) != 0:
        raise ValueError(
            f"grad_output must be a number for reduction={reduction!r}, got shape {np.shape(grad_output)}"
        )
    return x, grad, float(grad_output)


def _check_grad_out(grad_out: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """grad_out, checked to be a writeable array of the input's shape and dtype."""
    if not isinstance(grad_out, np.ndarray):
        raise TypeError(f"grad_out must be a numpy.ndarray, got {type(grad_out).__name__}")
    refuse_masked(grad_out, "grad_out")
    if grad_out.shape != shape or grad_out.dtype != dtype:
        raise ValueError(
            f"grad_out must have the input's shape {shape} and dtype {dtype}, "
            f"got shape {grad_out.shape} and dtype {grad_out.dtype}"
        )
    if not grad_out.flags.writeable:
        raise ValueError("grad_out must be writeable")
    return grad_out


def _check_gradient_options(return_grad: bool, grad_output: Any, grad_out: Any) -> None:
    if not return_grad and (grad_output is not None or grad_out is not None):
        raise ValueError("grad_output and grad_out are only used with return_grad=True")


def _class_axis(ndim: int, axis: Any) -> int:
    """PyTorch's rule when axis is None: the class axis is 1 for ndim >= 2, else 0."""
    if ndim == 0:
        raise ValueError("input must have at least one dimension (the classes), got a 0-d array")
    if axis is None:
        return 1 if ndim >= 2 else 0
    return normalize_axis(axis, ndim)


def _position_shape(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return shape[:axis] + shape[axis + 1 :]


def _weight_array(weight: Any, classes: int) -> Optional[np.ndarray]:
    """The class weights, checked (their dtype joins the result dtype's promotion)."""
    if weight is None:
        return None
    w = weight if type(weight) is np.ndarray else _to_ndarray(weight, "weight")
    if not _is_supported_float(w.dtype.newbyteorder("=")):
        raise TypeError(f"weight must be a floating-point array, got dtype {w.dtype}")
    if w.shape != (classes,):
        raise ValueError(
            f"weight must have shape ({classes},), one value per class, got shape {w.shape}"
        )
    return w


def in_result_dtype(
    dtype: np.dtype, x: np.ndarray, target: np.ndarray, weight: Optional[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Input, target and weight in the result dtype (a copy only of an operand that differs:
    mixed dtypes promote as NumPy does). Index targets stay int64."""
    if x.dtype != dtype:
        x = x.astype(dtype)
    if target.dtype != np.int64 and target.dtype != dtype:
        target = target.astype(dtype)
    if x.size == 0:  # no position has a class to weigh: a (0, 2**40) batch must not copy 2**40 weights
        weight = None
    if weight is not None:
        weight = np.ascontiguousarray(weight, dtype=dtype)
        if not weight.flags.aligned:  # ascontiguousarray keeps a misaligned contiguous array
            weight = weight.copy()
    return x, target, weight


def _float_or_none(target: np.ndarray) -> Optional[np.ndarray]:
    return None if target.dtype == np.int64 else target


_INT64 = np.iinfo(np.int64)


def _ignore_index(ignore_index: Any) -> int:
    try:
        index = operator.index(ignore_index)
    except TypeError:
        raise TypeError(
            f"ignore_index must be an integer, got {type(ignore_index).__name__}"
        ) from None
    if not _INT64.min <= index <= _INT64.max:
        raise ValueError(f"ignore_index must be a 64-bit integer, got {index}")
    return index


def _index_target(target: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    t = as_index_array(target, "target")
    expected = _position_shape(x.shape, axis)
    if t.shape != expected:
        raise ValueError(
            f"target has shape {t.shape}, expected {expected}: the input's shape {x.shape} "
            f"without the class axis {axis}"
        )
    return t


def class_target(target: Any, x: np.ndarray, axis: int, ignore_index: int, name: str) -> np.ndarray:
    """Class indices (int64, the input's shape without the class axis) or class probabilities (the
    input's shape and computation dtype), with PyTorch's rules for telling them apart."""
    t = target if type(target) is np.ndarray else _to_ndarray(target, "target")
    if t.dtype.kind in "fV" or t.dtype == np.float16:  # probabilities
        if t.shape != x.shape:
            raise (TypeError if t.shape == _position_shape(x.shape, axis) else ValueError)(
                f"target of dtype {t.dtype} and shape {t.shape}: class indices must be integers, "
                f"and probabilities must have {name} shape {x.shape}"
            )
        if ignore_index >= 0:
            raise ValueError(
                "ignore_index is not supported for probability targets "
                f"(got ignore_index={ignore_index})"
            )
        return as_float_array(t, "target")
    return _index_target(t, x, axis)


def _finish(value: float, out: Optional[np.ndarray], reduction: str, result_dtype: np.dtype) -> LossValue:
    if reduction == "none":
        assert out is not None
        return out if out.dtype == result_dtype else out.astype(result_dtype)
    with np.errstate(over="ignore"):  # beyond float16's range is inf, as in PyTorch
        if result_dtype.kind == "f":
            return result_dtype.type(value)
        return np.asarray(value, dtype=np.float32).astype(result_dtype)[()]  # bfloat16


def promoted_grad_out(
    grad_out: Any, shape: tuple[int, ...], input_dtype: np.dtype, result_dtype: np.dtype
) -> tuple[Any, Optional[np.ndarray]]:
    """Gradients are returned in the input's dtype. When mixed dtypes promoted the input to
    `result_dtype`, or grad_out is misaligned (kernels store whole elements), the kernel writes
    the gradient into a new array and the caller's grad_out (checked against the input's dtype)
    receives it afterwards: returns (grad_out for the kernel, that final array or None)."""
    if grad_out is None or (input_dtype == result_dtype and is_aligned(grad_out)):
        return grad_out, None
    return None, _check_grad_out(grad_out, shape, input_dtype)


def gradient_in_dtype(grad: np.ndarray, dtype: np.dtype, final: Optional[np.ndarray]) -> np.ndarray:
    """The gradient as returned: in `dtype` (the input's), written to `final` if given."""
    with np.errstate(over="ignore"):  # beyond float16's range is inf
        if final is not None:
            np.copyto(final, grad, casting="unsafe")
            return final
        return grad if grad.dtype == dtype else grad.astype(dtype)


def _run(
    kernel: Any,
    x: np.ndarray,
    target: np.ndarray,
    weight: Optional[np.ndarray],
    options: tuple,
    reduction: str,
    axis: int,
    input_dtype: np.dtype,
    return_grad: bool,
    grad_output: Any,
    grad_out: Any,
) -> Union[LossValue, LossAndGrad]:
    """Calls a classification-loss kernel with its output buffers, with or without gradient.
    x is in the result dtype; `input_dtype` is the input's own (the gradient's)."""
    result_dtype = x.dtype
    positions = _position_shape(x.shape, axis)
    out = np.empty(positions, x.dtype) if reduction == "none" else None
    _check_gradient_options(return_grad, grad_output, grad_out)
    if not return_grad:
        value = kernel(x, target, weight, *options, reduction, axis, out)
        return _finish(value, out, reduction, result_dtype)
    grad_out, final = promoted_grad_out(grad_out, x.shape, input_dtype, result_dtype)
    x, grad, go = _gradient_arguments(x, positions, reduction, grad_output, grad_out)
    target, weight = separate_from(grad_out, target), separate_from(grad_out, weight)
    value = kernel(x, target, weight, *options, reduction, axis, out, grad, go)
    loss = _finish(value, out, reduction, result_dtype)
    return LossAndGrad(loss, gradient_in_dtype(grad, input_dtype, final))


def cross_entropy(
    input: Any,
    target: Any,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    axis: Optional[int] = None,
    return_grad: bool = False,
    grad_output: Any = None,
    grad_out: Optional[np.ndarray] = None,
) -> Union[LossValue, LossAndGrad]:
    """Cross-entropy between logits and targets, as ``torch.nn.functional.cross_entropy``.

    `target` holds class indices (any integer dtype; shape = input's shape without the class
    axis) or class probabilities (floating, the input's shape). The class axis is 1 for inputs
    with two or more dimensions and 0 otherwise, as in PyTorch; ``axis=-1`` takes (B, T, V)
    language-model logits with (B, T) targets as they are.

    - ``weight`` (C,): per-class weights; ``mean`` then divides by the summed weights of the
      non-ignored targets (probability targets: by the number of positions).
    - ``ignore_index``: positions with this target contribute nothing (index targets only).
    - ``label_smoothing`` in [0, 1]: PyTorch's formula, the smoothing term weighted per class.
    - ``reduction``: "mean" (NaN when every target is ignored), "sum" or "none".

    Returns a NumPy scalar of the input's dtype, or an array for ``reduction="none"``.
    With ``return_grad=True``, returns ``LossAndGrad(loss, grad)``, the gradient with respect to
    `input` computed in the same pass (for ``reduction="none"``, of ``sum(grad_output * loss)``;
    for mean and sum, a number `grad_output` scales it). ``grad_out`` receives the gradient
    instead of a new array; it may be `input` itself.
    Raises IndexError for a target outside [0, C) that is not ignore_index.
    """
    if (
        grad_output is None
        and weight is None
        and (axis is None or axis == -1)
        and type(ignore_index) is int
        and type(label_smoothing) is float
        and type(reduction) is str
        and type(return_grad) is bool
        and (return_grad or grad_out is None)
    ):
        # The common small call, decided and run in C++ (None: not that case, or an error whose
        # message the general path below gives).
        value = _core.cross_entropy_common_case(
            input, target, ignore_index, reduction, label_smoothing, return_grad, grad_out
        )
        if value is not None:
            return LossAndGrad(*value) if return_grad else value
    x = as_float_array(input, "input")
    reduction = check_reduction(reduction)
    ax = _class_axis(x.ndim, axis)
    ls = float(label_smoothing)
    if not 0.0 <= ls <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0, got {label_smoothing!r}")
    ignore = _ignore_index(ignore_index)

    t = class_target(target, x, ax, ignore, "the input's")
    w = _weight_array(weight, x.shape[ax])
    input_dtype = x.dtype
    result_dtype = promote_dtypes(input=x, target=_float_or_none(t), weight=w)
    x, t, w = in_result_dtype(result_dtype, x, t, w)
    return _run(
        _core.cross_entropy, x, t, w, (ignore, ls), reduction, ax, input_dtype,
        return_grad, grad_output, grad_out,
    )


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
    grad_out: Optional[np.ndarray] = None,
) -> Union[LossValue, LossAndGrad]:
    """Negative log-likelihood of log-probabilities, as ``torch.nn.functional.nll_loss``.

    loss = -weight[y] * input[y] per position (0 where the target is ignore_index); ``mean``
    divides by the summed weights of the non-ignored targets. Shapes and the class axis as in
    `cross_entropy`; targets are class indices of any integer dtype. ``return_grad``,
    ``grad_output`` and ``grad_out`` as in `cross_entropy`.
    """
    if (
        grad_output is None
        and weight is None
        and (axis is None or axis == -1)
        and type(ignore_index) is int
        and type(reduction) is str
        and type(return_grad) is bool
        and (return_grad or grad_out is None)
    ):
        # see cross_entropy
        value = _core.nll_loss_common_case(input, target, ignore_index, reduction, return_grad, grad_out)
        if value is not None:
            return LossAndGrad(*value) if return_grad else value
    x = as_float_array(input, "input")
    reduction = check_reduction(reduction)
    ax = _class_axis(x.ndim, axis)
    t = _index_target(target, x, ax)
    w = _weight_array(weight, x.shape[ax])
    input_dtype = x.dtype
    result_dtype = promote_dtypes(input=x, weight=w)
    x, t, w = in_result_dtype(result_dtype, x, t, w)
    return _run(
        _core.nll_loss, x, t, w, (_ignore_index(ignore_index),), reduction, ax, input_dtype,
        return_grad, grad_output, grad_out,
    )

