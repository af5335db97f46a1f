"""The arguments of the losses over a class axis (cross_entropy, nll_loss, distillation_loss) and
their call into the kernels, written once for the three.

PyTorch's rules: the class axis is 1 for inputs with two or more dimensions, else 0; targets are
class indices (any integer dtype here, int64 for the kernels; shaped as the input without the
class axis) or class probabilities (floating, the input's shape); ``ignore_index`` is any 64-bit
integer; class weights are (C,).
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable, Optional, Union

import numpy as np

from ._aliasing import separate_from
from ._gradient import (
    LossAndGrad,
    LossValue,
    check_gradient_options,
    gradient_in_dtype,
    gradient_operands,
    loss_value,
    promoted_grad_out,
)
from ._validation import (
    _is_supported_float,
    _to_ndarray,
    as_float_array,
    as_index_array,
    normalize_axis,
    real_number,
)

__all__ = [
    "check_label_smoothing",
    "check_softcap",
    "check_z_loss",
    "class_axis",
    "class_target",
    "class_weight",
    "ignore_index_value",
    "in_result_dtype",
    "index_target",
    "position_shape",
    "probabilities_or_none",
    "run_class_loss",
]


def class_axis(ndim: int, axis: Any) -> int:
    """PyTorch's rule when axis is None: the class axis is 1 for ndim >= 2, else 0."""
    if ndim == 0:
        raise ValueError("input must have at least one dimension (the classes), got a 0-d array")
    if axis is None:
        return 1 if ndim >= 2 else 0
    return normalize_axis(axis, ndim)


def position_shape(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    """The shape of a per-position array: `shape` without the class axis."""
    return shape[:axis] + shape[axis + 1 :]


def check_label_smoothing(label_smoothing: float, given: Any) -> float:
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0, got {given!r}")
    return label_smoothing


def class_weight(weight: Any, classes: int) -> Optional[np.ndarray]:
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


def check_z_loss(z_loss: Any) -> float:
    """The z-loss coefficient (PaLM's auxiliary z_loss * lse**2): a finite number >= 0."""
    z = real_number(z_loss, "z_loss")
    if not (z >= 0.0 and math.isfinite(z)):
        raise ValueError(f"z_loss must be a finite number >= 0, got {z_loss!r}")
    return z


def check_softcap(softcap: Any) -> float:
    """The logit soft-capping value: None (0.0 for the kernels: no capping) or a finite number
    > 0."""
    if softcap is None:
        return 0.0
    cap = real_number(softcap, "softcap")
    if not (cap > 0.0 and math.isfinite(cap)):
        raise ValueError(f"softcap must be None or a finite number > 0, got {softcap!r}")
    return cap


_INT64 = np.iinfo(np.int64)


def ignore_index_value(ignore_index: Any) -> int:
    if type(ignore_index) is int and _INT64.min <= ignore_index <= _INT64.max:
        return ignore_index
    try:
        index = operator.index(ignore_index)
    except TypeError:
        raise TypeError(
            f"ignore_index must be an integer, got {type(ignore_index).__name__}"
        ) from None
    if not _INT64.min <= index <= _INT64.max:
        raise ValueError(f"ignore_index must be a 64-bit integer, got {index}")
    return index


def index_target(target: Any, x: np.ndarray, axis: int) -> np.ndarray:
    """Class indices as native int64 of the input's shape without the class axis."""
    t = as_index_array(target, "target")
    expected = position_shape(x.shape, axis)
    if t.shape != expected:
        raise ValueError(
            f"target has shape {t.shape}, expected {expected}: the input's shape {x.shape} "
            f"without the class axis {axis}"
        )
    return t


def class_target(target: Any, x: np.ndarray, axis: int, ignore_index: int, name: str) -> np.ndarray:
    """Class indices (int64, the input's shape without the class axis) or class probabilities (the
    input's shape and computation dtype), with PyTorch's rules for telling them apart. `name`
    says whose shape the probabilities must have ("the input's")."""
    t = target if type(target) is np.ndarray else _to_ndarray(target, "target")
    if t.dtype.kind in "fV" or t.dtype == np.float16:  # probabilities
        if t.shape != x.shape:
            raise (TypeError if t.shape == position_shape(x.shape, axis) else ValueError)(
                f"target of dtype {t.dtype} and shape {t.shape}: class indices must be integers, "
                f"and probabilities must have {name} shape {x.shape}"
            )
        if ignore_index >= 0:
            raise ValueError(
                "ignore_index is not supported for probability targets "
                f"(got ignore_index={ignore_index})"
            )
        return as_float_array(t, "target")
    return index_target(t, x, axis)


def probabilities_or_none(target: np.ndarray) -> Optional[np.ndarray]:
    """A probability target (its dtype joins the promotion), or None for class indices."""
    return None if target.dtype == np.int64 else target


def in_result_dtype(
    dtype: np.dtype, x: np.ndarray, target: np.ndarray, weight: Optional[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Input, target and weight in the result dtype (a copy only of an operand that differs:
    mixed dtypes promote as NumPy does). Index targets stay int64."""
    if x.dtype != dtype:
        x = x.astype(dtype)
    if target.dtype != np.int64 and target.dtype != dtype:
        target = target.astype(dtype)
    if x.size == 0:  # no position has a class to weigh: (0, 2**40) must not copy 2**40 weights
        weight = None
    if weight is not None:
        weight = np.ascontiguousarray(weight, dtype=dtype)
        if not weight.flags.aligned:  # ascontiguousarray keeps a misaligned contiguous array
            weight = weight.copy()
    return x, target, weight


def run_class_loss(
    kernel: Callable[..., Any],
    x: np.ndarray,
    operands: tuple,
    options: tuple,
    reduction: str,
    axis: int,
    input_dtype: np.dtype,
    return_grad: bool,
    grad_output: Any,
    grad_out: Any,
    keywords: Optional[dict] = None,
) -> Union[LossValue, LossAndGrad]:
    """Calls a class-axis loss kernel, ``kernel(x, *operands, *options, reduction, axis, out[,
    grad, grad_output], **keywords)``, with or without the gradient. `x` is the input in the
    result dtype (`input_dtype` is the input's own, the gradient's); `operands` are the other
    arrays (or None), which a caller's grad_out must not overlap."""
    result_dtype = x.dtype
    check_gradient_options(return_grad, grad_output, grad_out)
    positions = position_shape(x.shape, axis)
    out = np.empty(positions, result_dtype) if reduction == "none" else None
    keywords = keywords or {}
    if not return_grad:
        value = kernel(x, *operands, *options, reduction, axis, out, **keywords)
        return loss_value(value, out, reduction, result_dtype)
    grad_out, final = promoted_grad_out(grad_out, x.shape, input_dtype, result_dtype)
    x, grad, go = gradient_operands(x, positions, reduction, grad_output, grad_out)
    operands = tuple(separate_from(grad_out, operand) for operand in operands)
    value = kernel(x, *operands, *options, reduction, axis, out, grad, go, **keywords)
    loss = loss_value(value, out, reduction, result_dtype)
    return LossAndGrad(loss, gradient_in_dtype(grad, input_dtype, final))
