"""Fuzzing the public API with hypothesis: no input may crash, corrupt or silently mislead.

For every call drawn here -- random shapes (0-sized axes included), float32/float64 in either byte
order, strided / transposed / negative-stride / zero-stride / misaligned / read-only views, values
including NaN, +-inf, subnormals and +-1e30, and random (often invalid) option values -- fastloss
must either
  * return a result equal to the float64 reference of tests/reference.py (NaN where it is NaN), or
  * raise ValueError, TypeError or IndexError (numpy's AxisError is both a ValueError and an
    IndexError),
and it must never modify its inputs. Calls that are valid must succeed; calls that are invalid
(out-of-range target, bad axis, bad option) must raise.

Each function under test is one entry of FUZZ_TABLE: a `draw_<name>` function that draws the
arguments and says whether the call is valid. Adding a function is one more draw_ function and
one table row. FASTLOSS_FUZZ_EXAMPLES sets the number of examples per function (default 200).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastloss as fl
import reference as ref

EXAMPLES = int(os.environ.get("FASTLOSS_FUZZ_EXAMPLES", "200"))
ALLOWED_ERRORS = (ValueError, TypeError, IndexError)

# ---------------------------------------------------------------------------------------------
# Arrays: values, dtypes and memory layouts


def _specials(big: float) -> list[float]:
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
        st.sampled_from(_specials(big)),
    )


float_dtypes = st.sampled_from(["<f4", "<f8", ">f4", ">f8"])


def shapes(min_dims: int = 1, max_dims: int = 3) -> st.SearchStrategy[tuple[int, ...]]:
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=6)


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
        buf = np.zeros(arr.shape[:-1] + (2 * arr.shape[-1],), arr.dtype)
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
# Options, valid and invalid


def axis_option(ndim: int) -> st.SearchStrategy[Any]:
    """A valid axis most of the time; sometimes one out of range or of the wrong type."""
    valid = st.integers(-ndim, ndim - 1) if ndim else st.just(0)
    return st.one_of(valid, valid, valid, st.sampled_from([ndim, -ndim - 1, 1.0, "0"]))


def is_valid_axis(axis: Any, ndim: int) -> bool:
    return type(axis) is int and -max(ndim, 1) <= axis < max(ndim, 1)


reductions = st.sampled_from(["mean", "sum", "none", "mean", "avg", None])


@dataclass
class Call:
    """One drawn call: fl_func(*args, **kwargs), and what it must do."""

    func: Callable[..., Any]
    args: tuple
    kwargs: dict
    valid: bool  # True: must return the reference; False: must raise
    reference: Optional[Callable[[], Any]] = None
    result_dtype: Any = None
    scale: float = 1.0  # magnitude of the inputs, for the absolute tolerance
    classes: int = 1  # length of the reduced axis, for the tolerance
    notes: list = field(default_factory=list)


def _finite_scale(*arrays: Any) -> float:
    s = 1.0
    for a in arrays:
        if isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.size:
            f = np.abs(a[np.isfinite(a)].astype(np.float64))
            if f.size:
                s = max(s, float(f.max()))
    return s


def _native(dtype: Any) -> np.dtype:
    return np.dtype(dtype).newbyteorder("=")


# ---------------------------------------------------------------------------------------------
# One draw_ function per public function


def draw_softmax_like(data: st.DataObject, log: bool) -> Call:
    x = data.draw(float_arrays(), label="x")
    axis = data.draw(axis_option(x.ndim), label="axis")
    dtype = data.draw(st.sampled_from([None, None, np.float64, np.float32, "int32"]), label="dtype")
    valid = is_valid_axis(axis, x.ndim) and dtype != "int32"
    out_dtype = _native(dtype if dtype is not None else x.dtype)
    kwargs: dict = {"dtype": dtype}
    if data.draw(st.booleans(), label="use out"):
        wrong = data.draw(st.booleans(), label="wrong out")
        kwargs["out"] = np.empty(
            x.shape + ((1,) if wrong else ()), out_dtype if valid else np.float64
        )
        valid = valid and not wrong
    f = ref.log_softmax if log else ref.softmax

    def reference() -> Any:
        xx = x.astype(out_dtype).astype(np.float64)  # dtype= casts before computing
        return f(xx, axis) if x.ndim else f(xx.reshape(1), 0).reshape(())

    return Call(
        fl.log_softmax if log else fl.softmax,
        (x, axis),
        kwargs,
        valid,
        reference,
        out_dtype,
        _finite_scale(x) if log else 1.0,
        x.shape[axis] if valid and x.ndim else 1,
    )


def draw_softmax(data: st.DataObject) -> Call:
    return draw_softmax_like(data, log=False)


def draw_log_softmax(data: st.DataObject) -> Call:
    return draw_softmax_like(data, log=True)


def draw_logsumexp(data: st.DataObject) -> Call:
    x = data.draw(float_arrays(), label="x")
    n = max(x.ndim, 1)
    axis = data.draw(
        st.one_of(
            axis_option(x.ndim),
            st.none(),
            st.lists(st.integers(-n, n - 1), min_size=1, max_size=n, unique_by=lambda a: a % n).map(
                tuple
            ),
            st.just((0, 0)),
        ),
        label="axis",
    )
    keepdims = data.draw(st.booleans(), label="keepdims")
    if isinstance(axis, tuple):
        valid = len({a % n for a in axis}) == len(axis)
        classes = int(np.prod([x.shape[a] for a in axis])) if valid and x.ndim else 1
    else:
        valid = axis is None or is_valid_axis(axis, x.ndim)
        classes = x.size if axis is None else (x.shape[axis] if valid and x.ndim else 1)

    def reference() -> Any:
        xx = x.astype(np.float64)
        if xx.ndim == 0:
            xx, ax = xx.reshape(1), 0
            res = ref.logsumexp(xx, ax, keepdims=False)
            return np.asarray(res).reshape(())
        return ref.logsumexp(
            xx, axis if axis is not None else tuple(range(xx.ndim)), keepdims=keepdims
        )

    return Call(
        fl.logsumexp,
        (x, axis),
        {"keepdims": keepdims},
        valid,
        reference,
        _native(x.dtype),
        _finite_scale(x),
        classes,
    )


def _backward_reference(g: np.ndarray, y: np.ndarray, axis: int, log: bool) -> np.ndarray:
    g64, y64 = g.astype(np.float64), y.astype(np.float64)
    with np.errstate(all="ignore"):
        if log:
            return g64 - np.exp(y64) * g64.sum(axis=axis, keepdims=True)
        return y64 * (g64 - (g64 * y64).sum(axis=axis, keepdims=True))


def draw_backward(data: st.DataObject, log: bool) -> Call:
    shape = data.draw(shapes(), label="shape")
    gd = data.draw(float_dtypes, label="grad dtype")
    yd = data.draw(float_dtypes, label="output dtype")
    # Keep products of two inputs finite in float32, as the float64 reference's are.
    big = 1e15 if "f4" in gd + yd else 1e30
    g = data.draw(float_arrays(shape, gd, big), label="grad_output")
    y = data.draw(
        float_arrays(shape if data.draw(st.integers(0, 9)) else shape + (1,), yd, big),
        label="output",
    )
    axis = data.draw(axis_option(g.ndim), label="axis")
    valid = g.shape == y.shape and is_valid_axis(axis, g.ndim)
    result = np.result_type(_native(g.dtype), _native(y.dtype))
    # Error bound: the row sum carries eps * sum|g*y| (or eps * sum|g|), then is multiplied by y
    # (or exp(y)); cancellation in float32 sums is inherent, as in PyTorch.
    gmax, ymax = _finite_scale(g), _finite_scale(y)
    scale = gmax * (ymax * ymax if not log else np.exp(min(ymax, 700)))
    return Call(
        fl.log_softmax_backward if log else fl.softmax_backward,
        (g, y, axis),
        {},
        valid,
        lambda: _backward_reference(g, y, axis, log),
        result,
        scale,
        g.shape[axis] if valid and g.ndim else 1,
    )


def draw_softmax_backward(data: st.DataObject) -> Call:
    return draw_backward(data, log=False)


def draw_log_softmax_backward(data: st.DataObject) -> Call:
    return draw_backward(data, log=True)


target_int_dtypes = st.sampled_from(
    ["<i8", "<i8", "<i4", "<i2", "|u1", ">i8", "<u8", "float64", "bool"]
)


def draw_classification(data: st.DataObject, nll: bool) -> Call:
    """cross_entropy and nll_loss: index or probability targets, every option."""
    x = data.draw(
        float_arrays(data.draw(shapes(min_dims=0, max_dims=4), label="shape")), label="input"
    )
    axis = data.draw(st.one_of(st.none(), axis_option(x.ndim)), label="axis")
    axis_ok = x.ndim >= 1 and (axis is None or is_valid_axis(axis, x.ndim))
    ax = (1 if x.ndim >= 2 else 0) if axis is None else (axis % x.ndim if axis_ok else 0)
    C = x.shape[ax] if x.ndim else 0
    positions = x.shape[:ax] + x.shape[ax + 1 :] if x.ndim else ()
    valid = axis_ok

    probabilities = not nll and data.draw(st.integers(0, 3), label="prob?") == 0
    ignore = data.draw(st.sampled_from([-100, -100, -1, 0, 1, C, 2**40]), label="ignore_index")
    if probabilities:
        tshape = x.shape if data.draw(st.integers(0, 9)) else positions
        # Finite probabilities, NaN included. An infinite "probability" is a documented
        # divergence from PyTorch (NaN where torch gives inf; RELIABILITY.md), not checked here.
        target = data.draw(
            float_arrays(
                tshape,
                data.draw(float_dtypes),
                elements=st.one_of(
                    st.floats(0, 1, width=64),
                    st.sampled_from([s for s in _specials(1e30) if not np.isinf(s)]),
                ),
            ),
            label="target",
        )
        valid = valid and target.shape == x.shape and ignore < 0
    else:
        tdtype = data.draw(target_int_dtypes, label="target dtype")
        wrong_shape = data.draw(st.integers(0, 14), label="wrong target shape") == 0
        tshape = positions + (2,) if wrong_shape else positions
        low = -3 if tdtype[1] != "u" else 0
        t = data.draw(
            hnp.arrays(
                np.int64,
                tshape,
                elements=st.one_of(
                    st.integers(0, max(C - 1, 0)),
                    st.integers(0, max(C - 1, 0)),
                    st.just(ignore),
                    st.integers(low, C + 2),
                ),
            ),
            label="target values",
        )
        with np.errstate(all="ignore"):
            target = t.astype(tdtype)  # uint8 of -1 is 255, etc.
        target = data.draw(laid_out(target, transpose=False), label="target layout")
        if tdtype in ("float64", "bool"):
            valid = False  # floats where indices are expected, or bools: TypeError
        else:
            # What the library sees, after the cast and the layout (which may repeat or reverse).
            t = target.astype(np.uint64 if tdtype == "<u8" else np.int64)
            bad = (t.astype(np.float64) != ignore) & ((t.astype(np.float64) < 0) | (t >= C))
            valid = valid and not wrong_shape and not bool(np.any(bad))
            t = t.astype(np.int64)

    kwargs: dict = {"ignore_index": ignore, "axis": axis}
    reduction = data.draw(reductions, label="reduction")
    kwargs["reduction"] = reduction
    valid = valid and reduction in ("mean", "sum", "none")
    weight = None
    if data.draw(st.booleans(), label="weight?"):
        wlen = C if data.draw(st.integers(0, 9)) else C + 1
        wdtype = data.draw(st.sampled_from(["<f4", ">f8", "<f8", "<i8"]), label="weight dtype")
        weight = data.draw(
            hnp.arrays(np.float64, (wlen,), elements=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0])),
            label="weight",
        ).astype(wdtype)
        weight = data.draw(laid_out(weight, transpose=False), label="weight layout")
        valid = valid and wlen == C and weight.dtype.kind == "f"
        kwargs["weight"] = weight
    eps = 0.0
    if not nll:
        eps = data.draw(
            st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0, -0.1, 1.5, float("nan")]), label="smoothing"
        )
        kwargs["label_smoothing"] = eps
        valid = valid and 0.0 <= eps <= 1.0
    # C == 0 with positions left has no sensible loss; the library may refuse it.
    may_raise = C == 0 and x.size == 0 and int(np.prod(positions)) > 0

    def reference() -> Any:
        xx = x.astype(np.float64)
        w = None if weight is None else weight.astype(np.float64)
        if C == 0 and not probabilities:  # every target ignored (else the call was invalid)
            per = np.zeros(positions)
            return per if reduction == "none" else (per.sum() if reduction == "sum" else np.nan)
        if nll:
            return ref.nll_loss(xx, target, w, ignore, reduction, axis)
        tt = target.astype(np.float64) if probabilities else t
        return ref.cross_entropy(xx, tt, w, ignore, reduction, np.float64(eps), axis)  # C may be 0

    scale = _finite_scale(x) * (3.0 if weight is not None else 1.0)
    call = Call(
        fl.nll_loss if nll else fl.cross_entropy,
        (x, target),
        kwargs,
        valid,
        reference,
        _native(x.dtype),
        scale,
        C,
    )
    if may_raise:
        call.notes.append("may_raise")
    return call


def draw_cross_entropy(data: st.DataObject) -> Call:
    return draw_classification(data, nll=False)


def draw_nll_loss(data: st.DataObject) -> Call:
    return draw_classification(data, nll=True)


# Functions under test. A new function is one more row (and its draw_ function above).
FUZZ_TABLE: dict[str, Callable[[st.DataObject], Call]] = {
    "softmax": draw_softmax,
    "log_softmax": draw_log_softmax,
    "logsumexp": draw_logsumexp,
    "softmax_backward": draw_softmax_backward,
    "log_softmax_backward": draw_log_softmax_backward,
    "cross_entropy": draw_cross_entropy,
    "nll_loss": draw_nll_loss,
}


# ---------------------------------------------------------------------------------------------
# The property


def _snapshot(obj: Any) -> Any:
    return np.array(obj, copy=True) if isinstance(obj, np.ndarray) else None


def check_call(call: Call) -> None:
    inputs = list(call.args) + [v for k, v in call.kwargs.items() if k != "out"]
    before = [_snapshot(a) for a in inputs]
    try:
        got = call.func(*call.args, **call.kwargs)
    except ALLOWED_ERRORS as err:
        assert not call.valid or "may_raise" in call.notes, f"valid call raised {err!r}"
        got = None
    # Anything else (RuntimeError, SystemError, a crash) fails the test by itself.
    for a, b in zip(inputs, before):
        if b is not None:
            np.testing.assert_array_equal(a, b, err_msg="an input was modified")
    if got is None:
        return
    assert call.valid, f"invalid call returned {got!r} instead of raising"
    # The float64 reference rounded to the result's dtype: a float32 result overflows to inf
    # where the float64 one does not.
    want = np.asarray(call.reference()).astype(call.result_dtype).astype(np.float64)
    got_arr = np.asarray(got)
    assert got_arr.dtype == call.result_dtype, (got_arr.dtype, call.result_dtype)
    assert got_arr.shape == want.shape, (got_arr.shape, want.shape)
    if "out" in call.kwargs:
        assert got is call.kwargs["out"]
    eps = np.finfo(call.result_dtype).eps
    tol = 64 * eps * (call.classes + 2)
    np.testing.assert_allclose(
        got_arr.astype(np.float64), want, rtol=tol, atol=tol * call.scale, equal_nan=True
    )


@pytest.mark.parametrize("name", sorted(FUZZ_TABLE))
def test_fuzz(name: str) -> None:
    draw = FUZZ_TABLE[name]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        with np.errstate(all="ignore"):  # the reference's own inf/NaN arithmetic
            check_call(draw(data))

    run()
