"""softmax_backward and log_softmax_backward against PyTorch autograd and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import fastloss as fl
from fastloss._validation import AxisError  # NumPy's, wherever this NumPy keeps it

CASES = [((7,), 0), ((5, 40), 1), ((5, 40), 0), ((3, 6, 4, 2), 1), ((4, 3, 50), -1)]


@pytest.mark.parametrize("shape,axis", CASES)
def test_matches_finite_differences(isa, shape, axis, rng):
    x = rng.standard_normal(shape)
    g = rng.standard_normal(shape)
    for forward, backward in [(fl.softmax, fl.softmax_backward), (fl.log_softmax, fl.log_softmax_backward)]:
        y = forward(x, axis)
        got = backward(g, y, axis)
        h = 1e-6
        want = np.zeros_like(x)
        for i in range(x.size):
            xp, xm = x.copy(), x.copy()
            xp.flat[i] += h
            xm.flat[i] -= h
            want.flat[i] = np.sum(g * (forward(xp, axis) - forward(xm, axis))) / (2 * h)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", CASES)
def test_matches_torch(isa, dtype, shape, axis, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    for forward, backward, tf in [
        (fl.softmax, fl.softmax_backward, torch.softmax),
        (fl.log_softmax, fl.log_softmax_backward, torch.log_softmax),
    ]:
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        tf(tx, axis).backward(torch.from_numpy(g))
        np.testing.assert_allclose(backward(g, forward(x, axis), axis), tx.grad.numpy(), **tol)


def test_layouts_out_and_errors(isa, rng):
    x = rng.standard_normal((6, 30, 5))
    g = rng.standard_normal((6, 30, 5))
    y = fl.log_softmax(x, 1)
    want = fl.log_softmax_backward(g, y, 1)
    gt = np.ascontiguousarray(g.transpose(2, 0, 1)).transpose(1, 2, 0)  # class axis strided
    np.testing.assert_allclose(fl.log_softmax_backward(gt, y, 1), want, rtol=1e-13, atol=1e-15)
    g2 = g.copy()
    assert fl.log_softmax_backward(g2, y, 1, out=g2) is g2  # in place over grad_output
    np.testing.assert_allclose(g2, want, rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match="grad_output has shape"):
        fl.softmax_backward(g[:, :3], y, 1)
    with pytest.raises(AxisError):
        fl.softmax_backward(g, y, 3)
    with pytest.raises(TypeError, match="grad_output must be a floating-point array"):
        fl.softmax_backward(np.ones((2, 2), int), np.ones((2, 2)))
    assert fl.softmax_backward(np.empty((0, 3)), np.empty((0, 3))).shape == (0, 3)
