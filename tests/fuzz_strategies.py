"""Hypothesis strategies and helpers shared by the fuzz tests (tests/test_fuzz_*.py).

Arrays (values, dtypes, shapes, memory layouts), option values (valid and invalid), and the
gradient-mode options every loss draws (`draw_gradient_mode`, `draw_gradient_options`) with the
helpers that build a gradient's reference from them. The property they are checked against is
tests/fuzz_property.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# ---------------------------------------------------------------------------------------------
# Arrays: values, dtypes and memory layouts


def specials(big: float) -> list[float]:
    return [
        np.nan,
        np.inf,
        -np.inf,
        0.0,
        -0.0,
        1e-310,
        -1e-310,
        1e-40,
        5e-324,
        big,
        -big,
        1.0,
        -1.0,
    ]


def values(big: float = 1e30) -> st.SearchStrategy[float]:
    """Mostly ordinary logits, sometimes the values that break naive kernels."""
    return st.one_of(
        st.floats(-30, 30, allow_nan=False, width=64),
        st.floats(-30, 30, allow_nan=False, width=64),
        st.sampled_from(specials(big)),
    )


float_dtypes = st.sampled_from(["<f4", "<f8", ">f4", ">f8"])


def shapes(
    min_dims: int = 1, max_dims: int = 3, tiny: bool = False
) -> st.SearchStrategy[tuple[int, ...]]:
    """Up to 6 per axis; up to 3 (`tiny`) for the gradient draws, checked element by element."""
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=3 if tiny else 6
    )


@st.composite
def laid_out(draw: Any, arr: np.ndarray, transpose: bool = True) -> np.ndarray:
    """A view holding `arr`'s values (or a related array) in one of many memory layouts;
    `transpose=False` keeps the shape."""
    kinds = ["contiguous", "fortran", "strided", "reversed", "broadcast", "misaligned", "readonly"]
    kind = draw(st.sampled_from(kinds + (["transposed"] if transpose else [])))
    if kind == "fortran" and arr.ndim:  # (asfortranarray makes a 0-d array 1-d)
        return np.asfortranarray(arr)
    if kind == "transposed":  # values transposed too: the reference reads the view as given
        return arr.T
    if kind == "strided" and arr.ndim:
        buf = np.zeros((*arr.shape[:-1], 2 * arr.shape[-1]), arr.dtype)
        buf[..., ::2] = arr
        return buf[..., ::2]
    if kind == "reversed" and arr.ndim:
        ax = draw(st.integers(0, arr.ndim - 1))
        return np.flip(arr, ax)
    if kind == "broadcast" and arr.ndim:  # zero stride: one slice repeated along an axis
        ax = draw(st.integers(0, arr.ndim - 1))
        one = (
            np.take(arr, [0], axis=ax)
            if arr.shape[ax]
            else np.take(np.zeros_like(arr), [], axis=ax)
        )
        if one.shape[ax] == 0:
            return arr
        return np.broadcast_to(one, arr.shape)
    if kind == "misaligned" and arr.size:
        raw = np.zeros(arr.nbytes + 1, np.uint8)
        view = raw[1:].view(arr.dtype).reshape(arr.shape)
        view[...] = arr
        return view
    if kind == "readonly":
        arr = arr.copy()
        arr.setflags(write=False)
        return arr
    return arr


@st.composite
def float_arrays(
    draw: Any,
    shape: Optional[tuple[int, ...]] = None,
    dtype: Optional[str] = None,
    big: float = 1e30,
    elements: Optional[st.SearchStrategy[float]] = None,
) -> np.ndarray:
    shape = draw(shapes()) if shape is None else shape
    dtype = draw(float_dtypes) if dtype is None else dtype
    base = draw(
        hnp.arrays(np.float64, shape, elements=values(big) if elements is None else elements)
    )
    with np.errstate(all="ignore"):  # 1e-310 -> 0 and 1e30 stay, in float32
        return draw(laid_out(base.astype(dtype)))


# ---------------------------------------------------------------------------------------------
# Shapes of two operands that broadcast (or not)


@st.composite
def broadcast_shape_pair(
    draw: Any, min_dims: int = 0, tiny: bool = False
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two shapes: usually equal, often broadcastable against each other, sometimes not."""
    kind = draw(st.sampled_from(["same", "same", "broadcast", "broadcast", "any"]))
    side = 3 if tiny else 6
    if kind == "broadcast":
        shapes_ = draw(
            hnp.mutually_broadcastable_shapes(
                num_shapes=2, min_dims=min_dims, max_dims=3, min_side=0, max_side=side
            )
        ).input_shapes
        return shapes_[0], shapes_[1]
    a = draw(shapes(min_dims=min_dims, max_dims=3, tiny=tiny))
    if kind == "same":
        return a, a
    return a, draw(shapes(min_dims=min_dims, max_dims=3, tiny=tiny))


def broadcasts(*shapes_: tuple[int, ...]) -> bool:
    try:
        np.broadcast_shapes(*shapes_)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# Options, valid and invalid


def axis_option(ndim: int) -> st.SearchStrategy[Any]:
    """A valid axis most of the time; sometimes one out of range or of the wrong type."""
    valid = st.integers(-ndim, ndim - 1) if ndim else st.just(0)
    return st.one_of(valid, valid, valid, st.sampled_from([ndim, -ndim - 1, 1.0, "0"]))


def is_valid_axis(axis: Any, ndim: int) -> bool:
    return type(axis) is int and -max(ndim, 1) <= axis < max(ndim, 1)


def mostly(valid: list[Any], invalid: list[Any]) -> st.SearchStrategy[Any]:
    """One of `valid` about seven times in eight, else one of `invalid`. A call that draws
    several options is valid only if each is, so options drawn from mixed lists made most calls
    errors and left few to check against the reference. (Small k is valid: hypothesis draws 0
    for whatever a test draws past its data budget, after a large array.)"""
    return st.integers(0, 255).flatmap(lambda k: st.sampled_from(invalid if k >= 224 else valid))


reductions = mostly(["mean", "sum", "none", "mean"], ["avg", None])


# ---------------------------------------------------------------------------------------------
# Magnitudes and dtypes


def finite_scale(*arrays: Any) -> float:
    s = 1.0
    for a in arrays:
        if isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.size:
            f = np.abs(a[np.isfinite(a)].astype(np.float64))
            if f.size:
                s = max(s, float(f.max()))
    return s


def native(dtype: Any) -> np.dtype:
    return np.dtype(dtype).newbyteorder("=")


def result_dtype(*arrays: Any) -> np.dtype:
    """The elementwise losses' result dtype: NumPy's promotion of the operands' (native)
    dtypes."""
    return np.result_type(*[native(a.dtype) for a in arrays])


# ---------------------------------------------------------------------------------------------
# Gradient mode (return_grad=True), shared by every loss


def draw_gradient_mode(data: st.DataObject) -> int:
    """0: no gradient options; 1: grad_output/grad_out without return_grad (invalid);
    2: return_grad=True (its draws keep arrays tiny)."""
    return data.draw(st.sampled_from([0, 0, 0, 0, 1, 2, 2, 2]), label="gradient mode")


@dataclass
class GradOptions:
    valid: bool
    go: Any  # float64 grad_output as the loss's shape ("none") or a float (reductions)
    overwritten: tuple  # indices of args that grad_out is
    may_raise: bool = False  # a misaligned grad_out: the kernels refuse it (ValueError)


def draw_gradient_options(
    data: st.DataObject,
    mode: int,
    kwargs: dict,
    args: tuple,
    loss_shape: tuple[int, ...],
    reduction: Any,
    grad_dtype: Any,
    work_dtype: Any,
) -> GradOptions:
    """Adds return_grad / grad_output / grad_out to `kwargs`: valid and invalid values, and
    grad_out as a new array, as args[0] itself (where that is allowed) or as another argument."""
    grad_dtype = np.dtype(grad_dtype)
    if mode == 0:
        return GradOptions(True, None, ())
    if mode == 1:  # gradient options without return_grad: ValueError
        if data.draw(st.booleans(), label="stray grad_output"):
            kwargs["grad_output"] = 1.0
        else:
            kwargs["grad_out"] = np.empty(np.shape(args[0]), grad_dtype)
        if data.draw(st.booleans(), label="return_grad=False"):
            kwargs["return_grad"] = False
        return GradOptions(False, None, ())
    kwargs["return_grad"] = True
    valid = True
    none = reduction == "none"
    go: Any = None
    kind = data.draw(st.sampled_from(["default", "array", "scalar", "wrong"]), label="grad_output")
    if kind == "default":
        go = np.ones(loss_shape) if none else 1.0
    elif kind == "array" and none:
        g = data.draw(
            hnp.arrays(np.float64, loss_shape, elements=st.sampled_from([0.0, 1.0, -2.5, 0.3])),
            label="grad_output array",
        )
        kwargs["grad_output"] = g
        go = g.astype(work_dtype).astype(np.float64)
    elif kind == "wrong":
        kwargs["grad_output"] = np.ones((*loss_shape, 2) if none else (2,))
        valid = False
    else:  # a number (for "none", a broadcast one), or a 0-d array
        v = data.draw(st.sampled_from([2.0, -0.5, 0.0]), label="grad_output number")
        kwargs["grad_output"] = v if data.draw(st.booleans(), label="0-d?") else np.array(v)
        go = np.full(loss_shape, v) if none else v
    where = data.draw(
        st.sampled_from(["none", "none", "new", "input", "input", "other", "wrong"]),
        label="grad_out",
    )
    overwritten: tuple = ()
    x = args[0]
    if where == "new":
        kwargs["grad_out"] = np.empty(np.shape(x), grad_dtype)
    elif where == "wrong":
        kwargs["grad_out"] = data.draw(
            st.sampled_from(
                [
                    np.empty((*np.shape(x), 1), grad_dtype),
                    np.empty(np.shape(x), np.float32 if grad_dtype == np.float64 else np.float64),
                    [0.0],
                ]
            ),
            label="wrong grad_out",
        )
        valid = False
    elif where in ("input", "other"):
        index = 0 if where == "input" else data.draw(st.integers(0, len(args) - 1), label="arg")
        a = args[index]
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            kwargs["grad_out"] = a
            overwritten = (index,)
            # grad_out must be a writeable array of args[0]'s shape and the gradient's dtype
            valid = valid and (
                a.flags.writeable and a.dtype == grad_dtype and a.shape == np.shape(x)
            )
            # The kernels write aligned memory only; where the gradient goes through a
            # temporary first (a broadcast input, mixed dtypes), a misaligned one is accepted.
            return GradOptions(valid, go, overwritten, not a.flags.aligned)
    return GradOptions(valid, go, overwritten)


def sum_to(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`a` summed over the axes that broadcasting `shape` to a.shape added or stretched."""
    lead = a.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + k for k, n in enumerate(shape) if n == 1 and a.shape[lead + k] != 1
    )
    return a.sum(axis=axes).reshape(shape) if axes else a


def go_factor(opts: GradOptions, reduction: str, count: float) -> Any:
    """What multiplies the pointwise gradient: grad_output, divided by the mean's count."""
    if reduction == "none":
        return opts.go
    if reduction in ("mean", "batchmean"):
        return opts.go / count if count else 0.0
    return opts.go


def fd_scalar(loss: Any, opts: GradOptions, reduction: str) -> float:
    """sum(grad_output * loss): what the gradient is the gradient of."""
    if reduction == "none":
        return float(np.sum(np.asarray(loss) * opts.go))
    return float(loss) * float(opts.go)


def smooth(*arrays: Any, limit: float = 30.0) -> bool:
    """Inputs where central differences of the float64 reference are meaningful."""
    return all(
        not isinstance(a, np.ndarray)
        or a.dtype.kind != "f"
        or bool(np.all(np.isfinite(a) & (np.abs(a) <= limit)))
        for a in arrays
    )
