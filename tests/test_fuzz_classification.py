"""Fuzzing cross_entropy and nll_loss: index and probability targets, every option, and
gradient mode (the property: tests/fuzz_property.py; the problems: tests/fuzz_classes.py).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import strategies as st

import fastloss as fl
import reference as ref
from fuzz_classes import class_loss_grad, draw_class_problem
from fuzz_property import Call, Grad, fuzz
from fuzz_strategies import (
    draw_gradient_mode,
    draw_gradient_options,
    fd_scalar,
    finite_scale,
    native,
    result_dtype,
    smooth,
)


def draw_classification(data: st.DataObject, nll: bool) -> Call:
    """cross_entropy and nll_loss: index or probability targets, every option."""
    mode = draw_gradient_mode(data)
    p = draw_class_problem(data, smoothing=not nll, probs=not nll, tiny=mode == 2)
    x, C, positions, reduction, weight = p.x, p.C, p.positions, p.reduction, p.weight
    valid = p.valid
    # C == 0 with positions left has no sensible loss; the library may refuse it.
    may_raise = C == 0 and x.size == 0 and int(np.prod(positions)) > 0
    x64 = p.x64
    kwargs = p.kwargs
    # NumPy's promotion of the input, probability targets and weights
    promoted = [x] + ([p.target] if p.probabilities else [])
    if weight is not None and weight.dtype.kind == "f":
        promoted.append(weight)
    work = result_dtype(*promoted)
    args = (x, p.target)
    opts = draw_gradient_options(
        data, mode, kwargs, args, positions, reduction, native(x.dtype), work
    )
    valid = valid and opts.valid

    def reference() -> Any:
        w = None if weight is None else weight.astype(np.float64)
        if C == 0 and not p.probabilities:  # every target ignored (else the call was invalid)
            per = np.zeros(positions)
            return per if reduction == "none" else (per.sum() if reduction == "sum" else np.nan)
        if nll:
            return ref.nll_loss(x64, p.target, w, p.ignore, reduction, p.axis)
        return ref.cross_entropy(
            x64, p.t, w, p.ignore, reduction, np.float64(p.eps), p.axis
        )  # C may be 0

    scale = finite_scale(x) * (3.0 if weight is not None else 1.0)
    call = Call(
        fl.nll_loss if nll else fl.cross_entropy,
        args,
        kwargs,
        valid,
        reference,
        work,
        scale,
        C,
        overwritten=opts.overwritten,
        notes=["may_raise"] if opts.may_raise else [],
    )
    if may_raise:
        call.notes.append("may_raise")
    if mode == 2 and valid:
        moved = np.moveaxis(x64, p.ax, -1)
        lp = moved if nll else ref.log_softmax(moved, -1)
        g, magnitude = class_loss_grad(p, lp, opts.go, nll, work)
        call.grad = Grad(lambda: np.moveaxis(g, -1, p.ax), native(x.dtype), magnitude, C)
        if smooth(x64) and C:

            def fd_loss(xx: np.ndarray) -> float:
                w = None if weight is None else weight.astype(np.float64)
                if nll:
                    value = ref.nll_loss(xx, p.target, w, p.ignore, reduction, p.axis)
                else:
                    value = ref.cross_entropy(xx, p.t, w, p.ignore, reduction, p.eps, p.axis)
                return fd_scalar(value, opts, reduction)

            call.grad.fd_loss, call.grad.fd_at = fd_loss, x64
    return call


def draw_cross_entropy(data: st.DataObject) -> Call:
    return draw_classification(data, nll=False)


def draw_nll_loss(data: st.DataObject) -> Call:
    return draw_classification(data, nll=True)


# Functions under test. A new function is one more row (and its draw_ function above).
FUZZ_TABLE: dict[str, Callable[[st.DataObject], Call]] = {
    "cross_entropy": draw_cross_entropy,
    "nll_loss": draw_nll_loss,
}


@pytest.mark.parametrize("name", sorted(FUZZ_TABLE))
def test_fuzz_classification(name: str) -> None:
    fuzz(FUZZ_TABLE[name])
