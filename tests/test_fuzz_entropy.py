"""Fuzzing entropy: the logits and `probs=` forms, both or neither given, positional or
keyword axis (the property: tests/fuzz_property.py).
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
    is_valid_axis,
    native,
    shapes,
    values,
)


def draw_entropy(data: st.DataObject) -> Call:
    shape = data.draw(shapes(min_dims=0, max_dims=3), label="shape")
    form = data.draw(st.sampled_from(["logits", "logits", "probs", "probs", "both", "neither"]))
    if form == "probs":
        x = data.draw(
            float_arrays(shape, elements=st.one_of(st.floats(0, 1, width=64), values())),
            label="probs",
        )
    else:
        x = data.draw(float_arrays(shape), label="logits")
    axis = data.draw(axis_option(x.ndim), label="axis")
    valid = form in ("logits", "probs") and x.ndim >= 1 and is_valid_axis(axis, x.ndim)
    args: tuple = ()
    kwargs: dict = {}
    if form in ("logits", "both"):
        args = (x,)
    if form in ("probs", "both"):
        kwargs["probs"] = x
    if form == "neither":
        kwargs["axis"] = axis
    elif args and data.draw(st.booleans(), label="positional axis"):
        args = (*args, axis)
    elif axis != -1 or data.draw(st.booleans(), label="pass axis"):
        kwargs["axis"] = axis
    x64 = x.astype(np.float64)
    if form == "probs":
        f = np.abs(x64[np.isfinite(x64)])
        scale = 1.0 + float(np.max(f * np.abs(np.log(np.where(f > 0, f, 1.0))), initial=0.0))

        def reference() -> Any:
            return ref.entropy_from_probs(x64, axis)
    else:
        scale = finite_scale(x)

        def reference() -> Any:
            return ref.entropy_from_logits(x64, axis)

    return Call(
        fl.entropy,
        args,
        kwargs,
        valid,
        reference,
        native(x.dtype),
        scale,
        x.shape[axis] if valid else 1,
    )


# Functions under test. A new function is one more row (and its draw_ function above).
FUZZ_TABLE: dict[str, Callable[[st.DataObject], Call]] = {
    "entropy": draw_entropy,
}


@pytest.mark.parametrize("name", sorted(FUZZ_TABLE))
def test_fuzz_entropy(name: str) -> None:
    fuzz(FUZZ_TABLE[name])
