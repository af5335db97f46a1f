"""Fuzzing softmax, log_softmax, logsumexp, softmax_backward and log_softmax_backward
(the property: tests/fuzz_property.py).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import strategies as st

import fastloss as fl
import reference as ref
from fuzz_property import Call, fuzz
from fuzz_strategies import (
    axis_option,
    finite_scale,
    float_arrays,
    float_dtypes,
    is_valid_axis,
    native,
    shapes,
)


def draw_softmax_like(data: st.DataObject, log: bool) -> Call:
    x = data.draw(float_arrays(), label="x")
    axis = data.draw(axis_option(x.ndim), label="axis")
    dtype = data.draw(st.sampled_from([None, None, np.float64, np.float32, "int32"]), label="dtype")
    valid = is_valid_axis(axis, x.ndim) and dtype != "int32"
    out_dtype = native(dtype if dtype is not None else x.dtype)
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
        finite_scale(x) if log else 1.0,
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
        native(x.dtype),
        finite_scale(x),
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
        float_arrays(shape if data.draw(st.integers(0, 9)) else (*shape, 1), yd, big),
        label="output",
    )
    axis = data.draw(axis_option(g.ndim), label="axis")
    valid = g.shape == y.shape and is_valid_axis(axis, g.ndim)
    result = np.result_type(native(g.dtype), native(y.dtype))
    # Error bound: the row sum carries eps * sum|g*y| (or eps * sum|g|), then is multiplied by y
    # (or exp(y)); cancellation in float32 sums is inherent, as in PyTorch.
    gmax, ymax = finite_scale(g), finite_scale(y)
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


# Functions under test. A new function is one more row (and its draw_ function above).
FUZZ_TABLE: dict[str, Callable[[st.DataObject], Call]] = {
    "softmax": draw_softmax,
    "log_softmax": draw_log_softmax,
    "logsumexp": draw_logsumexp,
    "softmax_backward": draw_softmax_backward,
    "log_softmax_backward": draw_log_softmax_backward,
}


@pytest.mark.parametrize("name", sorted(FUZZ_TABLE))
def test_fuzz_softmax(name: str) -> None:
    fuzz(FUZZ_TABLE[name])
