"""Fuzzing the elementwise losses: kl_div, binary_cross_entropy and
binary_cross_entropy_with_logits, with broadcast operands and weights, and gradient mode
(the property: tests/fuzz_property.py).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Optional

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastloss as fl
import reference as ref
from fuzz_property import Call, Grad, fuzz
from fuzz_strategies import (
    broadcast_shape_pair,
    broadcasts,
    draw_gradient_mode,
    draw_gradient_options,
    fd_scalar,
    finite_scale,
    float_arrays,
    float_dtypes,
    go_factor,
    laid_out,
    native,
    reductions,
    result_dtype,
    shapes,
    smooth,
    specials,
    sum_to,
    values,
)


@st.composite
def suffix_shape(draw: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A weight's shape for `shape`: a suffix with some axes 1 (broadcasts), or any shape."""
    if draw(st.integers(0, 4)) == 0:
        return draw(shapes(min_dims=0, max_dims=3, tiny=True))
    k = draw(st.integers(0, len(shape)))
    suffix = list(shape[len(shape) - k :])
    for i in range(len(suffix)):
        if draw(st.booleans()):
            suffix[i] = 1
    return tuple(suffix)


def draw_weight(
    data: st.DataObject, name: str, shape: tuple[int, ...], values: list[float]
) -> tuple[Optional[np.ndarray], bool]:
    """An optional per-element weight broadcast to `shape`: (array or None, valid)."""
    if data.draw(st.booleans(), label=f"{name}?"):
        return None, True
    wshape = data.draw(suffix_shape(shape), label=f"{name} shape")
    wdtype = data.draw(st.sampled_from(["<f8", "<f4", ">f8", "<i8"]), label=f"{name} dtype")
    w = data.draw(
        hnp.arrays(np.float64, wshape, elements=st.sampled_from(values)), label=name
    ).astype(wdtype)
    w = data.draw(laid_out(w, transpose=False), label=f"{name} layout")
    try:  # the library broadcasts it to the input's shape exactly (NumPy's broadcast_to)
        np.broadcast_to(w, shape)
        ok = True
    except ValueError:
        ok = False
    return w, ok and w.dtype.kind == "f"


def _kl_div(*args: Any, **kwargs: Any) -> Any:
    """fl.kl_div, requiring PyTorch's UserWarning exactly for reduction='mean' (it comes before
    any other check) and no other warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return fl.kl_div(*args, **kwargs)
        finally:
            mean = [w for w in caught if "'batchmean' divides only" in str(w.message)]
            assert len(mean) == (kwargs.get("reduction", "mean") == "mean"), caught
            assert all(w.category is UserWarning for w in mean)
            assert len(caught) == len(mean), [str(w.message) for w in caught]


def draw_kl_div(data: st.DataObject) -> Call:
    mode = draw_gradient_mode(data)
    tiny = mode == 2
    xshape, tshape = data.draw(broadcast_shape_pair(tiny=tiny), label="shapes")
    xd, td = data.draw(float_dtypes, label="input dtype"), data.draw(float_dtypes, label="t dtype")
    log_target = data.draw(st.booleans(), label="log_target")
    # float32 products t * input stay finite where float64's do (as in the backward draws).
    big = 1e15 if "f4" in xd and "f4" in td else 1e30
    x = data.draw(float_arrays(xshape, xd, big), label="input")
    probabilities = st.one_of(st.floats(0, 1, width=64), st.floats(0, 1, width=64), values(big))
    t = data.draw(
        float_arrays(tshape, td, big, elements=None if log_target else probabilities),
        label="target",
    )
    xshape, tshape = x.shape, t.shape  # (a transposed layout transposes the shape)
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    reduction = data.draw(
        st.sampled_from(["mean", "sum", "none", "batchmean", "batchmean", "avg", None]),
        label="reduction",
    )
    kwargs: dict = {"reduction": reduction}
    if log_target or data.draw(st.booleans(), label="pass log_target"):
        kwargs["log_target"] = log_target
    valid = broadcasts(xshape, tshape) and reduction in ("mean", "sum", "none", "batchmean")
    shape = np.broadcast_shapes(xshape, tshape) if valid else ()
    result = result_dtype(x, t)
    opts = draw_gradient_options(
        data, mode, kwargs, (x, t), shape, reduction, native(x.dtype), result
    )
    valid = valid and opts.valid
    n = int(np.prod(shape))
    if log_target:
        scale = np.exp(min(finite_scale(t), 700.0)) * (finite_scale(x) + finite_scale(t))
    else:
        scale = finite_scale(t) * (finite_scale(x) + 1.0 + np.log(finite_scale(t)))
    call = Call(
        _kl_div,
        (x, t),
        kwargs,
        valid,
        lambda: ref.kl_div(x64, t64, reduction, log_target),
        result,
        scale,
        n,
        overwritten=opts.overwritten,
        notes=["may_raise"] if opts.may_raise else [],
    )
    if mode == 2 and valid:
        tb = np.broadcast_to(t64, shape)
        count = x.shape[0] if reduction == "batchmean" and x.ndim else n
        factor = go_factor(
            opts, "sum" if reduction == "batchmean" and not x.ndim else reduction, count
        )
        dt = np.exp(tb) if log_target else tb
        grad = sum_to(-dt * factor, xshape)
        magnitude = sum_to(np.abs(dt) * np.abs(factor), xshape)
        call.grad = Grad(lambda: grad, native(x.dtype), magnitude, max(n, 1))
        if smooth(x64, t64):
            call.grad.fd_loss = lambda xx: fd_scalar(
                ref.kl_div(xx, t64, reduction, log_target), opts, reduction
            )
            call.grad.fd_at = x64
    return call


def _bce_values(valid_only: bool) -> st.SearchStrategy[float]:
    inside = st.one_of(
        st.floats(0, 1, width=64),
        st.sampled_from([0.0, 1.0, -0.0, 1e-40, 1e-310, 5e-324, 0.5, 1 - 1e-9, 1e-9]),
    )
    if valid_only:
        return inside
    return st.one_of(inside, inside, inside, st.sampled_from([-0.5, 1.5, np.nan, np.inf, -1e-30]))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def draw_bce_like(data: st.DataObject, logits: bool) -> Call:
    mode = draw_gradient_mode(data)
    tiny = mode == 2
    xshape = data.draw(shapes(min_dims=0, max_dims=3, tiny=tiny), label="shape")
    tshape = xshape if data.draw(st.integers(0, 9)) else (*xshape, 1)
    xd, td = data.draw(float_dtypes, label="input dtype"), data.draw(float_dtypes, label="t dtype")
    big = 1e15 if "f4" in xd + td else 1e30
    if logits:
        x = data.draw(float_arrays(xshape, xd, big), label="input")
        # Finite targets: an infinite "target" (not range-checked) is a documented divergence
        # from PyTorch (RELIABILITY.md), whose own loss and gradient there depend on whether
        # pos_weight is given.
        finite = st.one_of(
            st.floats(-30, 30, width=64),
            st.sampled_from([v for v in specials(big) if np.isfinite(v)]),
        )
        t = data.draw(float_arrays(tshape, td, big, elements=finite), label="target")
    else:
        x = data.draw(float_arrays(xshape, xd, elements=_bce_values(False)), label="input")
        t = data.draw(float_arrays(tshape, td, elements=_bce_values(False)), label="target")
    xshape = x.shape  # (a transposed layout transposes the shape)
    valid = t.shape == xshape
    if not logits:  # values outside [0, 1] (NaN included): ValueError
        for a in (x, t):
            with np.errstate(invalid="ignore"):
                valid = valid and bool(np.all((a >= 0) & (a <= 1)))
    weights = [0.0, 0.5, 1.0, 2.0, 3.0, -1.0]
    w, ok = draw_weight(data, "weight", xshape, weights)
    valid = valid and ok
    pw = None
    kwargs: dict = {}
    if w is not None:
        kwargs["weight"] = w
    if logits:
        pw, ok = draw_weight(data, "pos_weight", xshape, weights)
        valid = valid and ok
        if pw is not None:
            kwargs["pos_weight"] = pw
    reduction = data.draw(reductions, label="reduction")
    if reduction != "mean" or data.draw(st.booleans(), label="pass reduction"):
        kwargs["reduction"] = reduction
    valid = valid and reduction in ("mean", "sum", "none")
    operands = [a for a in (x, t, w, pw) if a is not None and a.dtype.kind == "f"]
    result = result_dtype(*operands)
    opts = draw_gradient_options(
        data, mode, kwargs, (x, t), xshape, reduction, native(x.dtype), result
    )
    valid = valid and opts.valid
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    w64 = None if w is None else w.astype(np.float64)
    pw64 = None if pw is None else pw.astype(np.float64)
    wmax = max(1.0, finite_scale(w)) if w is not None else 1.0
    if logits:
        scale = wmax * (1 + finite_scale(t)) * (1 + finite_scale(pw)) * (1 + finite_scale(x))

        def reference() -> Any:
            return ref.binary_cross_entropy_with_logits(x64, t64, w64, pw64, reduction)
    else:
        scale = 200.0 * wmax

        def reference() -> Any:
            return ref.binary_cross_entropy(x64, t64, w64, reduction)

    n = int(np.prod(xshape))
    call = Call(
        fl.binary_cross_entropy_with_logits if logits else fl.binary_cross_entropy,
        (x, t),
        kwargs,
        valid,
        reference,
        result,
        scale,
        n,
        overwritten=opts.overwritten,
        notes=["may_raise"] if opts.may_raise else [],
    )
    if not logits:
        call.notes.append("partial_writes")
    if mode == 2 and valid:
        factor = np.asarray(go_factor(opts, reduction, n))
        wb = 1.0 if w64 is None else np.broadcast_to(w64, xshape)
        if logits:
            pwb = 1.0 if pw64 is None else np.broadcast_to(pw64, xshape)
            s = _sigmoid(x64)
            grad = wb * ((pwb * t64 + 1 - t64) * s - pwb * t64) * factor
            magnitude = np.abs(wb * factor) * (1 + np.abs(t64)) * (1 + np.abs(pwb))
        else:
            denominator = np.maximum(x64 * (1 - x64), float(np.float32(1e-12)))
            grad = wb * (x64 - t64) / denominator * factor
            magnitude = np.abs(wb * factor) / denominator
        call.grad = Grad(lambda: grad, native(x.dtype), magnitude, 1)
        use_fd = smooth(x64, t64, w64, pw64) and (
            logits or bool(np.all((x64 > 1e-3) & (x64 < 1 - 1e-3)))
        )
        if use_fd:

            def fd_loss(xx: np.ndarray) -> float:
                if logits:
                    value = ref.binary_cross_entropy_with_logits(xx, t64, w64, pw64, reduction)
                else:
                    value = ref.binary_cross_entropy(xx, t64, w64, reduction)
                return fd_scalar(value, opts, reduction)

            call.grad.fd_loss, call.grad.fd_at = fd_loss, x64
    return call


def draw_binary_cross_entropy(data: st.DataObject) -> Call:
    return draw_bce_like(data, logits=False)


def draw_binary_cross_entropy_with_logits(data: st.DataObject) -> Call:
    return draw_bce_like(data, logits=True)


# Functions under test. A new function is one more row (and its draw_ function above).
FUZZ_TABLE: dict[str, Callable[[st.DataObject], Call]] = {
    "kl_div": draw_kl_div,
    "binary_cross_entropy": draw_binary_cross_entropy,
    "binary_cross_entropy_with_logits": draw_binary_cross_entropy_with_logits,
}


@pytest.mark.parametrize("name", sorted(FUZZ_TABLE))
def test_fuzz_elementwise(name: str) -> None:
    fuzz(FUZZ_TABLE[name])
