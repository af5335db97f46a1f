"""Fuzzing cosine_embedding_loss: inputs broadcast against each other, targets, margins, and
gradient mode (the property: tests/fuzz_property.py).
"""

from __future__ import annotations

from typing import Callable

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
    float_arrays,
    float_dtypes,
    go_factor,
    laid_out,
    native,
    reductions,
    result_dtype,
    smooth,
    sum_to,
)


def _cosine_parts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    eps = float(np.float32(1e-12))
    m1, m2 = np.sum(a * a, -1) + eps, np.sum(b * b, -1) + eps
    dn = np.sqrt(m1 * m2)
    cos = np.sum(a * b, -1) / dn
    return cos, dn, m1


def draw_cosine_embedding_loss(data: st.DataObject) -> Call:
    mode = draw_gradient_mode(data)
    tiny = mode == 2
    ndim = data.draw(st.sampled_from([1, 2, 2, 2, 3]), label="ndim")
    s1, s2 = data.draw(broadcast_shape_pair(min_dims=ndim, tiny=tiny), label="shapes")
    s1, s2 = s1[:ndim], s2[:ndim]
    if data.draw(st.integers(0, 14)) == 0:
        s2 = s2[1:]  # x1 and x2 of different ndim: ValueError
    d1, d2 = data.draw(float_dtypes, label="x1 dtype"), data.draw(float_dtypes, label="x2 dtype")
    # Sums of squares and their product stay finite in float32 where they are in float64.
    big = 1e9 if "f4" in d1 and "f4" in d2 else 1e30
    a = data.draw(float_arrays(s1, d1, big), label="x1")
    b = data.draw(float_arrays(s2, d2, big), label="x2")
    s1, s2 = a.shape, b.shape  # (a transposed layout transposes the shape)
    # Only the batch axis broadcasts (D must be equal; torch's broadcast D is not a cosine).
    valid = len(s1) == len(s2) and len(s1) in (1, 2) and broadcasts(s1, s2) and s1[-1] == s2[-1]
    shape = np.broadcast_shapes(s1, s2) if valid else s1
    tshape = shape[:-1] if data.draw(st.integers(0, 9)) else (*shape[:-1], 2)
    tdtype = data.draw(st.sampled_from(["<f8", "<i8", "<f4", "|i1", ">f8", "bool"]), label="y")
    y = data.draw(
        hnp.arrays(np.float64, tshape, elements=st.sampled_from([1.0, -1.0, 1.0, -1.0, 0.0, 2.0]))
    ).astype(tdtype)
    y = data.draw(laid_out(y, transpose=False), label="y layout")
    valid = valid and tshape == shape[:-1] and tdtype != "bool"
    margin = data.draw(st.sampled_from([0.0, 0.0, 0.5, -0.5, 1.0, -1.0, None]), label="margin")
    kwargs: dict = {}
    if margin != 0.0 or data.draw(st.booleans(), label="pass margin"):
        kwargs["margin"] = margin
    valid = valid and margin is not None
    reduction = data.draw(reductions, label="reduction")
    kwargs["reduction"] = reduction
    valid = valid and reduction in ("mean", "sum", "none")
    result = result_dtype(a, b)
    opts = draw_gradient_options(
        data, mode, kwargs, (a, b, y), shape[:-1], reduction, native(a.dtype), result
    )
    valid = valid and opts.valid
    a64, b64, y64 = a.astype(np.float64), b.astype(np.float64), y.astype(np.float64)
    m = 0.0 if margin is None else margin
    D = shape[-1] if shape else 0
    call = Call(
        fl.cosine_embedding_loss,
        (a, b, y),
        kwargs,
        valid,
        lambda: ref.cosine_embedding_loss(a64, b64, y64, m, reduction),
        result,
        2.0 + abs(m),
        D,
        overwritten=opts.overwritten,
        notes=["may_raise"] if opts.may_raise else [],
    )
    if mode == 2 and valid:
        ab, bb = np.broadcast_to(a64, shape), np.broadcast_to(b64, shape)
        cos, dn, m1 = _cosine_parts(ab, bb)
        rows = int(np.prod(shape[:-1]))
        factor = np.asarray(go_factor(opts, reduction, rows))
        sign = np.where(y64 == 1, -1.0, np.where((y64 == -1) & (cos >= m), 1.0, 0.0))
        dcos = bb / dn[..., None] - (cos / m1)[..., None] * ab
        # Rows without a gradient (y not +-1, or the hinge inactive) get 0 x1 + 0 x2: NaN only
        # where x1 or x2 is not finite (PyTorch: the whole row NaN when cos is; RELIABILITY.md).
        inactive = (0.0 * ab + 0.0 * bb) * np.abs(np.asarray(factor))[..., None]
        grad = sum_to(
            np.where((sign == 0)[..., None], inactive, dcos * (sign * factor)[..., None]), a.shape
        )
        magnitude = sum_to(
            (np.abs(bb) / dn[..., None] + np.abs(ab) / m1[..., None]) * np.abs(factor)[..., None],
            a.shape,
        )
        call.grad = Grad(lambda: grad, native(a.dtype), magnitude, D + 2)
        # central differences where the hinge is not within reach of the step
        # (and away from a zero vector, curved on the scale of sqrt(1e-12))
        if smooth(a64, b64) and bool(np.all(np.abs(cos - m) > 1e-4) and np.all(m1 > 1e-2)):
            call.grad.fd_loss = lambda xx: fd_scalar(
                ref.cosine_embedding_loss(xx, b64, y64, m, reduction), opts, reduction
            )
            call.grad.fd_at = a64
    return call


# Functions under test. A new function is one more row (and its draw_ function above).
FUZZ_TABLE: dict[str, Callable[[st.DataObject], Call]] = {
    "cosine_embedding_loss": draw_cosine_embedding_loss,
}


@pytest.mark.parametrize("name", sorted(FUZZ_TABLE))
def test_fuzz_cosine_embedding(name: str) -> None:
    fuzz(FUZZ_TABLE[name])
