"""Fuzzing distillation_loss: the cross_entropy options plus temperature, alpha, softcap and the
teacher, and gradient mode (the property: tests/fuzz_property.py; the problems:
tests/fuzz_classes.py).
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
    float_arrays,
    float_dtypes,
    mostly,
    native,
    result_dtype,
    smooth,
)


def draw_distillation_loss(data: st.DataObject) -> Call:
    mode = draw_gradient_mode(data)
    p = draw_class_problem(data, smoothing=True, probs=True, tiny=mode == 2)
    s, C, positions, reduction, weight = p.x, p.C, p.positions, p.reduction, p.weight
    tshape = s.shape if data.draw(st.integers(0, 14)) else (*s.shape, 1)
    teacher = data.draw(float_arrays(tshape, data.draw(float_dtypes)), label="teacher")
    valid = p.valid and teacher.shape == s.shape
    kwargs = p.kwargs
    temperature = data.draw(
        mostly([2.0, 1.0, 3.5, 0.5], [0.0, -1.0, np.inf, np.nan, None]), label="T"
    )
    alpha = data.draw(mostly([0.5, 0.0, 1.0, 0.3], [-0.1, 1.5, np.nan]), label="alpha")
    if temperature != 2.0 or data.draw(st.booleans()):
        kwargs["temperature"] = temperature
    if alpha != 0.5 or data.draw(st.booleans()):
        kwargs["alpha"] = alpha
    valid = valid and temperature is not None and 0 < temperature < np.inf and 0.0 <= alpha <= 1.0
    softcap = data.draw(
        mostly([None, None, 4.0, 0.5], [0.0, -1.0, np.inf, np.nan]), label="softcap"
    )
    if softcap is not None:
        kwargs["softcap"] = softcap
    valid = valid and (softcap is None or 0 < softcap < np.inf)

    def capped(x: np.ndarray) -> np.ndarray:
        """The student's logits as both terms see them: softcap * tanh(x / softcap)."""
        return x if softcap is None else softcap * np.tanh(x / softcap)

    # NumPy's promotion of the logits, probability targets and weights
    promoted = [s, teacher] + ([p.target] if p.probabilities else [])
    if weight is not None and weight.dtype.kind == "f":
        promoted.append(weight)
    result = result_dtype(*promoted)
    args = (s, teacher, p.target)
    opts = draw_gradient_options(
        data, mode, kwargs, args, positions, reduction, native(s.dtype), result
    )
    valid = valid and opts.valid
    may_raise = C == 0 and s.size == 0 and int(np.prod(positions)) > 0
    s64, t64 = p.x64, teacher.astype(np.float64)
    c64 = capped(s64) if valid else s64
    T = 1.0 if temperature is None else float(temperature)
    w64 = None if weight is None else weight.astype(np.float64)

    def reference() -> Any:
        if C == 0 and not p.probabilities:  # empty sums, every target ignored
            per = np.zeros(positions)
            if reduction == "none":
                return per
            return 0.0 if reduction == "sum" else np.nan
        return ref.distillation_loss(
            c64, t64, p.t, T, alpha, reduction, w64, p.ignore, np.float64(p.eps), p.axis
        )  # (a NumPy eps: C may be 0)

    scale = (finite_scale(s) * (3.0 if weight is not None else 1.0) + finite_scale(teacher)) * (
        max(T, 1.0)
    )
    call = Call(
        fl.distillation_loss,
        args,
        kwargs,
        valid,
        reference,
        result,
        scale,
        C + int(np.prod(positions)),
        overwritten=opts.overwritten,
        notes=["may_raise"] if opts.may_raise else [],
    )
    if may_raise:
        call.notes.append("may_raise")
    if mode == 2 and valid:
        sm, tm = np.moveaxis(c64, p.ax, -1), np.moveaxis(t64, p.ax, -1)
        # alpha * dCE/ds + (1 - alpha) T (softmax(s/T) - softmax(t/T)), each term divided as
        # its reduction divides it (KL: batchmean, by s.shape[0])
        ce, magnitude = class_loss_grad(p, ref.log_softmax(sm, -1), opts.go, False, result)
        if p.reduction == "none":
            kl_factor = np.asarray(opts.go)[..., None]
        elif p.reduction == "sum":
            kl_factor = opts.go
        else:
            kl_factor = opts.go / s.shape[0] if s.shape[0] else 0.0
        kl = T * (ref.softmax(sm / T, -1) - ref.softmax(tm / T, -1)) * kl_factor
        g = np.moveaxis(alpha * ce + (1 - alpha) * kl, -1, p.ax)
        if softcap is not None:  # through the tanh: d capped / ds = 1 - tanh(s / softcap)**2
            g = g * (1 - np.tanh(s64 / softcap) ** 2)
        magnitude = alpha * magnitude + (1 - alpha) * T * (
            float(np.max(np.abs(kl_factor), initial=0.0)) * (1 + finite_scale(s) / T)
        )
        call.grad = Grad(lambda: g, native(s.dtype), magnitude, C + 2)
        if smooth(c64, t64) and C:
            call.grad.fd_loss = lambda xx: fd_scalar(
                ref.distillation_loss(
                    capped(xx), t64, p.t, T, alpha, reduction, w64, p.ignore, p.eps, p.axis
                ),
                opts,
                reduction,
            )
            call.grad.fd_at = s64
    return call


# Functions under test. A new function is one more row (and its draw_ function above).
FUZZ_TABLE: dict[str, Callable[[st.DataObject], Call]] = {
    "distillation_loss": draw_distillation_loss,
}


@pytest.mark.parametrize("name", sorted(FUZZ_TABLE))
def test_fuzz_distillation(name: str) -> None:
    fuzz(FUZZ_TABLE[name])
