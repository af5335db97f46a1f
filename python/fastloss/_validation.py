"""Argument normalisation shared by every public function.

Semantics and error messages live here; the bindings re-check only what memory safety needs.
A copy of an input is made only where a kernel cannot read its layout (non-native byte order,
misaligned data, half precision), and always here, deliberately.
"""

from __future__ import annotations

import operator
from typing import Any, Optional

import numpy as np

try:  # NumPy >= 2.0
    from numpy.exceptions import AxisError
    from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy import AxisError  # type: ignore[attr-defined,no-redef]
    from numpy.core.multiarray import normalize_axis_index  # type: ignore[no-redef]
    from numpy.core.numeric import normalize_axis_tuple  # type: ignore[no-redef]

__all__ = [
    "AxisError",
    "as_float_array",
    "as_index_array",
    "broadcast_shapes",
    "broadcast_view",
    "check_out",
    "check_reduction",
    "normalize_axes",
    "normalize_axis",
    "promote_dtypes",
    "real_number",
    "refuse_masked",
    "resolve_dtype",
]

_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _is_bfloat16(dtype: np.dtype) -> bool:
    return dtype.kind == "V" and dtype.name == "bfloat16"


def _is_supported_float(dtype: np.dtype) -> bool:
    return dtype in _NATIVE_FLOATS or dtype == np.float16 or _is_bfloat16(dtype)


def refuse_masked(x: np.ndarray, name: str) -> None:
    """A TypeError for a masked array, whose mask would otherwise be silently ignored."""
    if type(x) is not np.ndarray and isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a masked array, and fastloss does not apply masks: leave masked "
            "positions out with ignore_index= (class targets) or weight= (a zero weight), or "
            f"pass {name}.filled(value) to choose what masked entries hold"
        )


def _to_ndarray(x: Any, name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        refuse_masked(x, name)
        return x
    if hasattr(x, "__dlpack__"):  # torch, JAX, CuPy...: zero-copy on CPU where possible
        _check_dlpack_producer(x, name)
        try:
            return np.from_dlpack(x)
        except (BufferError, TypeError, RuntimeError, ValueError):
            if str(getattr(x, "dtype", "")) == "torch.bfloat16":
                return _torch_bfloat16(x)
    return np.asarray(x)


_DLPACK_CPU = 1  # DLDeviceType kDLCPU


def _check_dlpack_producer(x: Any, name: str) -> None:
    """A clear error for the DLPack producers fastloss cannot read: a torch tensor that records
    gradients (its own error would only say to call .detach()) and memory off the CPU."""
    if getattr(x, "requires_grad", False) is True and type(x).__module__.startswith("torch"):
        raise TypeError(
            f"{name} is a torch.Tensor that requires grad, and the NumPy API does not record "
            "gradients: use fastloss.torch (import fastloss.torch as flt; the same functions "
            f"with autograd and torch.compile support), or pass {name}.detach()"
        )
    try:
        device = x.__dlpack_device__()
    except Exception:  # no device to ask about: np.from_dlpack or np.asarray decides below
        return
    if device[0] != _DLPACK_CPU:
        raise ValueError(
            f"{name} is on a non-CPU device (DLPack device {tuple(device)}), and fastloss "
            f"computes on the CPU: copy it to host memory first"
        )


def _torch_bfloat16(x: Any) -> np.ndarray:
    """A CPU torch.bfloat16 tensor as an ml_dtypes.bfloat16 array sharing its memory (DLPack has
    no bfloat16 NumPy can take): its bits viewed as int16, then as bfloat16."""
    import torch

    try:
        import ml_dtypes
    except ImportError:
        raise TypeError("bfloat16 tensors need ml_dtypes (pip install ml_dtypes)") from None
    return x.detach().view(torch.int16).numpy().view(ml_dtypes.bfloat16)


def as_float_array(x: Any, name: str) -> np.ndarray:
    """`x` as an ndarray of a supported floating dtype, in a layout the kernels can read."""
    arr = x if type(x) is np.ndarray else _to_ndarray(x, name)
    dtype = arr.dtype
    if dtype in _NATIVE_FLOATS and arr.flags.aligned:  # the common case, kept cheap
        return arr
    if not _is_supported_float(dtype.newbyteorder("=")):
        raise TypeError(
            f"{name} must be a floating-point array (float32, float64, float16 or bfloat16), "
            f"got dtype {dtype}"
        )
    if not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))
    if not arr.flags.aligned:
        arr = arr.copy()
    return arr


def real_number(value: Any, name: str) -> float:
    """A real-number option (temperature, margin...) as a float; TypeError naming it otherwise."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None


def resolve_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"{name} must be a floating dtype, got {dtype!r}") from e
    if not _is_supported_float(dt):
        raise TypeError(f"{name} must be float32, float64, float16 or bfloat16, got {dt}")
    return dt


def promote_dtypes(**operands: Optional[np.ndarray]) -> np.dtype:
    """The result dtype of a call: NumPy's promotion of its floating operands' dtypes (None ones
    are skipped). A combination NumPy refuses (float16 with bfloat16) is a TypeError naming them.
    Kernels store every dtype as it is and compute half precision in float32."""
    common = None  # the common call, every operand float32 (or every one float64), is cheap
    for a in operands.values():
        if a is not None:
            if common is None:
                common = a.dtype
            elif a.dtype != common:
                common = None
                break
    if common is not None and common in _NATIVE_FLOATS:  # (np.dtype("f8") == None is True)
        return common
    named = {name: a.dtype.newbyteorder("=") for name, a in operands.items() if a is not None}
    dtypes = list(named.values())
    if all(d == dtypes[0] for d in dtypes):
        return dtypes[0]
    try:
        return np.result_type(*dtypes)
    except TypeError:
        listing = ", ".join(f"{name} ({d})" for name, d in named.items())
        raise TypeError(
            f"{listing} have no common dtype: NumPy does not promote these dtypes; "
            "cast one of them first"
        ) from None


def normalize_axis(axis: Any, ndim: int, name: str = "axis") -> int:
    if type(axis) is int and -ndim <= axis < ndim:  # the common call, cheap
        return axis + ndim if axis < 0 else axis
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(axis).__name__}") from None
    if not -ndim <= axis < ndim:  # (also an axis beyond C's long, which NumPy's check overflows on)
        raise AxisError(axis, ndim)
    return int(normalize_axis_index(axis, ndim))


def normalize_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """An int, a tuple of ints or None (all axes), as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    for a in axes:
        try:
            a = operator.index(a)
        except TypeError:
            raise TypeError(
                f"axis must be an integer, a tuple of integers or None, got {axis!r}"
            ) from None
        if not -ndim <= a < ndim:
            raise AxisError(a, ndim)
    return tuple(sorted(normalize_axis_tuple(axes, ndim)))


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy's broadcasting rule, for any number of dimensions (np.broadcast_shapes stops at 32
    with a RuntimeError); ValueError where the shapes do not broadcast."""
    first = shapes[0]
    if all(s == first for s in shapes):
        return first
    ndim = max(len(s) for s in shapes)
    result = []
    for axis in range(-ndim, 0):
        sizes = {s[axis] for s in shapes if len(s) >= -axis} - {1}
        if len(sizes) > 1:
            raise ValueError(f"shapes {' and '.join(map(str, shapes))} do not broadcast")
        result.append(sizes.pop() if sizes else 1)
    return tuple(result)


def broadcast_view(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`a` as a view of `shape` (zero strides along broadcast axes; `a` itself when it has that
    shape already). ValueError where it does not broadcast."""
    return a if a.shape == shape else np.broadcast_to(a, shape)


def is_aligned(a: Any) -> bool:
    """Whether a buffer the kernels will write is element-aligned (they store whole elements);
    anything that is not an array yet counts as aligned (it is checked, or copied, later)."""
    return getattr(getattr(a, "flags", None), "aligned", True)


def check_out(out: Any, shape: tuple[int, ...], dtype: np.dtype, name: str = "out") -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    refuse_masked(out, name)
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, expected {shape}")
    if out.dtype != dtype:
        raise ValueError(f"{name} has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    if not out.flags.aligned or not out.dtype.isnative:
        raise ValueError(f"{name} must be aligned and in native byte order")
    return out


_INT64_MAX = np.iinfo(np.int64).max


def as_index_array(target: Any, name: str = "target") -> np.ndarray:
    """Class indices as native int64 (any integer dtype is accepted; floats never are)."""
    arr = target if type(target) is np.ndarray else _to_ndarray(target, name)
    dtype = arr.dtype
    if dtype == np.int64:
        return arr if arr.flags.aligned else arr.copy()
    if dtype.kind not in "iu":
        probabilities = (
            " (floating targets are only accepted as probabilities, with the input's shape)"
            if name == "target"
            else ""
        )
        raise TypeError(
            f"{name} must be an integer array of class indices, got dtype {dtype}{probabilities}"
        )
    if dtype.kind == "u" and dtype.itemsize == 8 and arr.size and arr.max() > _INT64_MAX:
        first = arr.ravel()[np.argmax(arr.ravel() > _INT64_MAX)]
        # (PyTorch's message for targets)
        raise IndexError(
            f"Target {first} is out of bounds." if name == "target"
            else f"{name}: {first} is out of bounds"
        )
    return arr.astype(np.int64)


_REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction: Any, allowed: tuple[str, ...] = _REDUCTIONS) -> str:
    if not isinstance(reduction, str) or reduction not in allowed:
        expected = ", ".join(repr(r) for r in allowed)
        raise ValueError(f"{reduction!r} is not a valid value for reduction; expected one of {expected}")
    return reduction
