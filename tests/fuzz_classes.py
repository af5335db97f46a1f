"""The class-index problems of cross_entropy, nll_loss and distillation_loss: logits, class
axis, index or probability targets and the options they share (`draw_class_problem`), and the
gradient PyTorch's autograd gives for them (`class_loss_grad`). Shared by
tests/test_fuzz_classification.py and tests/test_fuzz_distillation.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fuzz_strategies import (
    axis_option,
    float_arrays,
    float_dtypes,
    is_valid_axis,
    laid_out,
    mostly,
    reductions,
    shapes,
    specials,
)

target_int_dtypes = st.sampled_from(
    ["<i8", "<i8", "<i4", "<i2", "|u1", ">i8", "<u8", "float64", "bool"]
)


@dataclass
class ClassProblem:
    """Logits, class axis, targets and the options cross_entropy, nll_loss and
    distillation_loss share, as drawn."""

    x: np.ndarray
    x64: np.ndarray  # a float64 copy, taken before any call (grad_out may overwrite x)
    axis: Any
    ax: int
    C: int
    positions: tuple[int, ...]
    target: Any
    probabilities: bool
    t: Any  # the index targets as int64, or the probabilities as float64
    ignore: Any
    weight: Optional[np.ndarray]
    eps: float
    reduction: Any
    kwargs: dict
    valid: bool


def draw_class_problem(
    data: st.DataObject, smoothing: bool, probs: bool, tiny: bool
) -> ClassProblem:
    # A 0-d input (always an error) in about one problem in eight
    min_dims = data.draw(mostly([1], [0]), label="0-d allowed?")
    x = data.draw(
        float_arrays(
            data.draw(shapes(min_dims=min_dims, max_dims=4 - tiny, tiny=tiny), label="shape")
        ),
        label="input",
    )
    axis = data.draw(st.one_of(st.none(), axis_option(x.ndim)), label="axis")
    axis_ok = x.ndim >= 1 and (axis is None or is_valid_axis(axis, x.ndim))
    ax = (1 if x.ndim >= 2 else 0) if axis is None else (axis % x.ndim if axis_ok else 0)
    C = x.shape[ax] if x.ndim else 0
    positions = x.shape[:ax] + x.shape[ax + 1 :] if x.ndim else ()
    valid = axis_ok

    probabilities = probs and data.draw(st.integers(0, 3), label="prob?") == 0
    # Any ignore_index suits index targets; probability targets take only a negative one.
    ignore = data.draw(
        mostly([-100, -1], [0, 1, C])
        if probabilities
        else st.sampled_from([-100, -100, -1, 0, 1, C, 2**40]),
        label="ignore_index",
    )
    t: Any = None
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
                    st.sampled_from([s for s in specials(1e30) if not np.isinf(s)]),
                ),
            ),
            label="target",
        )
        valid = valid and target.shape == x.shape and ignore < 0
        t = target.astype(np.float64)
    else:
        tdtype = data.draw(target_int_dtypes, label="target dtype")
        wrong_shape = data.draw(st.integers(0, 14), label="wrong target shape") == 0
        tshape = (*positions, 2) if wrong_shape else positions
        if tdtype == "float64" and tshape == x.shape:
            tshape = positions  # that would be a valid probability target (1-D input)
        low = -3 if tdtype[1] != "u" else 0
        # Out-of-range targets in a quarter of the problems only: one anywhere makes the call an
        # error, so drawn in every problem they left few calls to check against the reference.
        in_range = [st.integers(0, max(C - 1, 0)), st.integers(0, max(C - 1, 0)), st.just(ignore)]
        stray = data.draw(st.integers(0, 3), label="stray targets?") == 0
        ti = data.draw(
            hnp.arrays(
                np.int64,
                tshape,
                elements=st.one_of(*in_range, *([st.integers(low, C + 2)] if stray else [])),
            ),
            label="target values",
        )
        with np.errstate(all="ignore"):
            target = ti.astype(tdtype)  # uint8 of -1 is 255, etc.
        target = data.draw(laid_out(target, transpose=False), label="target layout")
        if tdtype in ("float64", "bool"):
            valid = False  # floats where indices are expected, or bools: TypeError
        else:
            # What the library sees, after the cast and the layout (which may repeat or reverse).
            tt = target.astype(np.uint64 if tdtype == "<u8" else np.int64)
            bad = (tt.astype(np.float64) != ignore) & ((tt.astype(np.float64) < 0) | (tt >= C))
            valid = valid and not wrong_shape and not bool(np.any(bad))
            t = tt.astype(np.int64)

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
    if smoothing:
        eps = data.draw(
            mostly([0.0, 0.0, 0.1, 0.5, 1.0], [-0.1, 1.5, float("nan")]), label="smoothing"
        )
        kwargs["label_smoothing"] = eps
        valid = valid and 0.0 <= eps <= 1.0
    return ClassProblem(
        x,
        x.astype(np.float64),
        axis,
        ax,
        C,
        positions,
        target,
        probabilities,
        t,
        ignore,
        weight,
        eps,
        reduction,
        kwargs,
        valid,
    )


def class_loss_grad(
    p: ClassProblem, lp: np.ndarray, go: Any, nll: bool, work: Any
) -> tuple[np.ndarray, float]:
    """d(sum(go * loss)) / d input of cross_entropy (or nll_loss, `nll`) as autograd gives it,
    from log_softmax(x) (or x) `lp` with the class axis last; and its magnitude. Ignored
    positions get 0, NaN logits or not (as the library documents)."""
    C = lp.shape[-1]
    if C == 0:
        return np.zeros(lp.shape), 1.0
    w = np.ones(C) if p.weight is None else p.weight.astype(work).astype(np.float64)
    if p.probabilities:
        q = (1 - p.eps) * np.moveaxis(p.t, p.ax, -1) + p.eps / C
        per = np.exp(lp) * np.sum(w * q, axis=-1, keepdims=True) - w * q
        denom = float(np.prod(p.positions))
    else:
        valid = p.t != p.ignore
        safe = np.where(valid, p.t, 0)
        wy = np.where(valid, w[safe], 0.0)
        onehot = np.arange(C) == safe[..., None]
        if nll:
            per = -wy[..., None] * onehot
        else:
            prob = np.exp(lp)
            per = (1 - p.eps) * wy[..., None] * (prob - onehot)
            if p.eps > 0:
                per = per + (p.eps / C) * (w.sum() * prob - w)
        per = np.where(valid[..., None], per, 0.0)
        denom = float(wy.sum())
    if p.reduction == "none":
        factor = np.asarray(go)[..., None]
    elif p.reduction == "sum":
        factor = go
    elif denom or p.probabilities:
        factor = go / denom if denom else 0.0
    else:  # every weight 0: PyTorch's go / 0 times the zero weights, NaN; ignored rows stay 0
        factor = np.float64(go) / np.float64(0.0)
        active = np.broadcast_to((p.t != p.ignore)[..., None], per.shape)
        if nll:  # nll_loss's backward writes the target entry only: the others stay 0
            active = active & onehot
        return np.where(active, per * factor, 0.0), 1.0
    grad = per * factor
    magnitude = (
        float(np.max(np.abs(factor), initial=0.0))
        * float(np.max(np.abs(w), initial=1.0))
        * (2.0 + C * p.eps)
    )
    if p.probabilities:
        # b p_c - w_c q'_c cancels terms of size b = sum w q' (huge probabilities: 1e30 each
        # leave float32 rounding residues of ~1e23 where the exact gradient is 0).
        with np.errstate(all="ignore"):
            b = np.abs(w * q).sum(axis=-1)
        b_max = float(np.max(b, initial=1.0)) if np.all(np.isfinite(b)) else 1.0
        magnitude *= max(1.0, b_max)
    return grad, magnitude
