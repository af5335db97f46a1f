"""Fuzzing the public API with hypothesis: no input may crash, corrupt or silently mislead.

For every call the fuzz tests (tests/test_fuzz_<family>.py) draw -- random shapes (0-sized axes
included), float32/float64 in either byte order, strided / transposed / negative-stride /
zero-stride / misaligned / read-only views, values including NaN, +-inf, subnormals and +-1e30,
and random (often invalid) option values -- fastloss must either
  * return a result equal to the float64 reference of tests/reference.py (NaN where it is NaN), or
  * raise ValueError, TypeError or IndexError (numpy's AxisError is both a ValueError and an
    IndexError),
and it must never modify its inputs. Calls that are valid must succeed; calls that are invalid
(out-of-range target, bad axis, bad option) must raise.

Every loss is also fuzzed in gradient mode: about a third of its draws (kept tiny) pass
``return_grad=True``, with or without `grad_output` (the loss's shape, a broadcast number, or a
wrong shape) and `grad_out` (a new array, the input itself, another argument, or one of the wrong
shape or dtype). The gradient must have the input's shape and the documented dtype and equal a
float64 reference: the analytic formula of PyTorch's autograd (special values included), and
where the inputs are smooth and finite, central differences of the float64 reference loss too.
A call writing into `grad_out` must give what the same call without it gives, bit for bit.

This module holds that property (`check_call`) and the runner (`fuzz`). Each function under test
is one row of the FUZZ_TABLE of its family's file, tests/test_fuzz_<family>.py: a `draw_<name>`
function that draws the arguments (with the strategies of tests/fuzz_strategies.py and, for the
class-index losses, tests/fuzz_classes.py) and returns a `Call` that says whether the call is
valid and what it must return. Adding a function is one more draw_ function and one table row (a
new family, one more such file). FASTLOSS_FUZZ_EXAMPLES sets the number of examples per function
(default 200).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastloss as fl

EXAMPLES = int(os.environ.get("FASTLOSS_FUZZ_EXAMPLES", "200"))
# The default run (CI) draws the same examples every time, so that its result depends on the code
# only; asking for a number of examples explores new ones (RELIABILITY.md records those runs).
EXPLORE = "FASTLOSS_FUZZ_EXAMPLES" in os.environ
ALLOWED_ERRORS = (ValueError, TypeError, IndexError)

# ---------------------------------------------------------------------------------------------
# What a drawn call must do


@dataclass
class Grad:
    """What a valid ``return_grad=True`` call's gradient (of args[0]) must be."""

    reference: Callable[[], np.ndarray]  # float64, args[0]'s shape
    dtype: Any  # the gradient's dtype
    magnitude: Any  # per element (or scalar) size of the terms, for the absolute tolerance
    terms: int = 1  # terms summed per element, for the tolerance
    # float64 scalar loss of args[0] (as float64) for central differences, where it is smooth
    fd_loss: Optional[Callable[[np.ndarray], float]] = None
    fd_at: Optional[np.ndarray] = None


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
    grad: Optional[Grad] = None  # return_grad=True: what the gradient must be
    overwritten: tuple = ()  # indices into args that grad_out may legitimately overwrite


# ---------------------------------------------------------------------------------------------
# The property


def _snapshot(obj: Any) -> Any:
    return np.array(obj, copy=True) if isinstance(obj, np.ndarray) else None


def _central_differences(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        h = 1e-6 * max(1.0, abs(old))
        flat[i] = old + h
        up = f(x)
        flat[i] = old - h
        down = f(x)
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return g


def _assert_close(got: np.ndarray, want: np.ndarray, rtol: float, atol: Any, what: str) -> None:
    """|got - want| <= atol + rtol |want| where want is finite; equal (NaN, +-inf) elsewhere.
    `atol` may be an array (a per-element bound)."""
    got = np.asarray(got, np.float64)
    atol = np.nan_to_num(np.broadcast_to(np.asarray(atol, np.float64), want.shape), nan=0.0)
    finite = np.isfinite(want)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    ok = np.where(finite, np.abs(got - want) <= atol + rtol * np.abs(want), same)
    if not np.all(ok):
        bad = np.argwhere(~ok)[:5].tolist() if want.ndim else []
        raise AssertionError(
            f"{what} differs at {bad}:\n got  {got[~ok][:5]}\n want {want[~ok][:5]}"
            f"\n atol {atol[~ok][:5]}, rtol {rtol}"
        )


def check_call(call: Call) -> None:
    inputs = list(call.args) + [v for k, v in call.kwargs.items() if k not in ("out", "grad_out")]
    overwritten = {id(call.args[i]) for i in call.overwritten}
    before = [_snapshot(a) for a in inputs]
    # References first: a grad_out may be one of the inputs.
    want = grad_want = fd_want = None
    if call.valid:
        want = np.asarray(call.reference()).astype(call.result_dtype).astype(np.float64)
        if call.grad is not None:
            grad_want = np.asarray(call.grad.reference(), np.float64)
            if (
                call.grad.fd_loss is not None
                and call.grad.fd_at is not None
                and np.all(np.isfinite(want))
                and np.all(np.isfinite(grad_want))
            ):
                fd_want = _central_differences(call.grad.fd_loss, call.grad.fd_at.copy())
        aliased = call.grad is not None and call.kwargs.get("grad_out") is not None
        copy_args = tuple(
            np.array(a, copy=True) if aliased and isinstance(a, np.ndarray) else a
            for a in call.args
        )
    try:
        got = call.func(*call.args, **call.kwargs)
    except ALLOWED_ERRORS as err:
        assert not call.valid or "may_raise" in call.notes, f"valid call raised {err!r}"
        got = None
    # Anything else (RuntimeError, SystemError, a crash) fails the test by itself.
    # grad_out may be an input: it then holds the gradient, or (binary_cross_entropy's range
    # error, found in the same pass) partial results; any other input must stay as it was.
    written = got is not None or "partial_writes" in call.notes
    for a, b in zip(inputs, before):
        if b is not None and not (written and id(a) in overwritten):
            np.testing.assert_array_equal(a, b, err_msg="an input was modified")
    if got is None:
        return
    assert call.valid, f"invalid call returned {got!r} instead of raising"
    assert want is not None
    grad = None
    if call.grad is not None:
        assert isinstance(got, fl.LossAndGrad), type(got)
        got, grad = got
    # The float64 reference rounded to the result's dtype: a float32 result overflows to inf
    # where the float64 one does not.
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
    if call.grad is None:
        return
    g = call.grad
    assert grad_want is not None
    assert isinstance(grad, np.ndarray), type(grad)
    assert grad.dtype == g.dtype, (grad.dtype, g.dtype)
    assert grad.shape == np.shape(call.args[0]), (grad.shape, np.shape(call.args[0]))
    if call.kwargs.get("grad_out") is not None:
        assert grad is call.kwargs["grad_out"]
    # The gradient is computed in the result's dtype, then cast to its own.
    geps = max(np.finfo(call.result_dtype).eps, np.finfo(g.dtype).eps)
    gtol = 64 * geps * (g.terms + 2)
    want_g = grad_want.astype(g.dtype).astype(np.float64)
    _assert_close(grad, want_g, gtol, gtol * np.asarray(g.magnitude, np.float64), "gradient")
    if fd_want is not None:
        _assert_close(
            grad,
            fd_want,
            1e-4,
            1e-4 * (1.0 + np.max(np.abs(fd_want), initial=0.0)),
            "gradient against central differences",
        )
    if aliased:  # the same call, writing into a new array: the same values
        kwargs = dict(call.kwargs, grad_out=None)
        again = call.func(*copy_args, **kwargs)
        np.testing.assert_array_equal(again.grad, grad, err_msg="grad_out changed the gradient")
        np.testing.assert_array_equal(again.loss, got, err_msg="grad_out changed the loss")


# ---------------------------------------------------------------------------------------------
# The runner


def fuzz(draw: Callable[[st.DataObject], Call]) -> None:
    """Checks the property on EXAMPLES calls drawn by `draw` (derandomized by default)."""
    # Derandomized, hypothesis seeds the draws with a hash of `run`'s source (decorators
    # included, comments not) and signature: editing them changes the default run's examples.

    @settings(
        max_examples=EXAMPLES,
        derandomize=not EXPLORE,
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
