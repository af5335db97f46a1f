"""Gradients of binary_cross_entropy and binary_cross_entropy_with_logits (return_grad=True) with
respect to the input, against PyTorch autograd and central finite differences of our forward."""

from __future__ import annotations

import itertools

import fastloss as fl
import numpy as np
import pytest
from test_cross_entropy_grad import _finite_difference

REDUCTIONS = ("none", "mean", "sum")
# (input shape, weight shape, pos_weight shape): broadcast right-aligned, as PyTorch's.
SHAPES = [
    ((7,), None, None),
    ((9, 5), (5,), (5,)),
    ((9, 5), (9, 1), (9, 5)),
    ((2, 3, 4, 5), (3, 1, 1), (3, 1, 1)),
    ((3, 700), (700,), (3, 1)),  # rows longer than a vector, tails, several segments' worth
    ((3, 700), None, None),  # with logits: the unweighted forms, over whole vectors and a tail
]


def _case(rng, shape, w_shape, pw_shape, logits):
    x = rng.standard_normal(shape) * 3 if logits else rng.uniform(0.05, 0.95, shape)
    y = rng.uniform(0.0, 1.0, shape)
    y.flat[::3] = 1.0
    y.flat[1::3] = 0.0
    w = None if w_shape is None else rng.uniform(0.5, 2.0, w_shape)
    pw = None if pw_shape is None else rng.uniform(0.5, 3.0, pw_shape)
    return x, y, w, pw


def _call(logits, x, y, w, pw, **kw):
    if logits:
        return fl.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=pw, **kw)
    return fl.binary_cross_entropy(x, y, weight=w, **kw)


@pytest.mark.parametrize("logits", [False, True], ids=["probabilities", "logits"])
@pytest.mark.parametrize("shape,w_shape,pw_shape", SHAPES[:4])
def test_matches_finite_differences(isa, logits, shape, w_shape, pw_shape, rng):
    x, y, w, pw = _case(rng, shape, w_shape, pw_shape, logits)
    for reduction in REDUCTIONS:
        go = rng.standard_normal(shape) if reduction == "none" else None

        def scalar_loss(xx, reduction=reduction, go=go):
            value = _call(logits, xx, y, w, pw, reduction=reduction)
            return float(np.sum(value * go)) if go is not None else float(value)

        r = _call(logits, x, y, w, pw, reduction=reduction, return_grad=True, grad_output=go)
        assert r.grad.shape == x.shape and r.grad.dtype == x.dtype
        want = _finite_difference(scalar_loss, x.copy())
        np.testing.assert_allclose(r.grad, want, rtol=1e-5, atol=1e-8)
        np.testing.assert_array_equal(r.loss, _call(logits, x, y, w, pw, reduction=reduction))


def _torch_grad(torch, logits, x, y, w, pw, reduction, go):
    F = torch.nn.functional
    tx = torch.from_numpy(x).requires_grad_(True)
    tw = None if w is None else torch.from_numpy(w)
    if logits:
        tpw = None if pw is None else torch.from_numpy(pw)
        loss = F.binary_cross_entropy_with_logits(tx, torch.from_numpy(y), weight=tw,
                                                  pos_weight=tpw, reduction=reduction)
    else:
        loss = F.binary_cross_entropy(tx, torch.from_numpy(y), weight=tw, reduction=reduction)
    (loss * torch.from_numpy(go) if go is not None else loss).sum().backward()
    return loss.detach().numpy(), tx.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,w_shape,pw_shape", SHAPES)
def test_matches_torch_autograd(isa, dtype, shape, w_shape, pw_shape, rng):
    torch = pytest.importorskip("torch")
    # float32: PyTorch's (pw y + 1 - y) sigmoid(x) - pw y cancels where sigmoid(x) ~ y (large x,
    # y = 1) and is off by ~1e-7 absolute there (our form is closer to the float64 value), so the
    # absolute tolerance is relative to the gradient's scale.
    f32 = dtype == np.float32
    for logits, reduction in itertools.product([False, True], REDUCTIONS):
        x, y, w, pw = (
            None if a is None else a.astype(dtype)
            for a in _case(rng, shape, w_shape, pw_shape, logits)
        )
        go = rng.standard_normal(shape).astype(dtype) if reduction == "none" else None
        r = _call(logits, x, y, w, pw, reduction=reduction, return_grad=True, grad_output=go)
        loss, grad = _torch_grad(torch, logits, x, y, w, pw if logits else None, reduction, go)
        assert r.grad.dtype == dtype
        rtol, scale = (1e-5, 1e-6) if f32 else (1e-12, 1e-15)
        np.testing.assert_allclose(r.grad, grad, rtol=rtol, atol=scale * np.abs(grad).max())
        np.testing.assert_allclose(r.loss, loss, rtol=rtol, atol=scale * np.abs(loss).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_probability_clamp_matches_torch(isa, dtype):
    """w (p - y) / max(p (1 - p), 1e-12f): -1e12 at p = 0, y = 1, and the clamp near 0 and 1.
    PyTorch's 1e-12 is a float, also in float64: the gradient there is -1.000000004e12."""
    torch = pytest.importorskip("torch")
    p = np.array([0.0, 0.0, 1.0, 1.0, 1e-14, 1 - 1e-7, 0.5, 1e-30], dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.3, 0.7], dtype)
    for reduction in REDUCTIONS:
        r = fl.binary_cross_entropy(p, y, reduction=reduction, return_grad=True)
        loss, grad = _torch_grad(torch, False, p, y, None, None, reduction, None)
        np.testing.assert_allclose(r.grad, grad, rtol=1e-6 if dtype == np.float32 else 1e-14)
        np.testing.assert_allclose(r.loss, loss, rtol=1e-6)
    assert fl.binary_cross_entropy(p[:1], y[:1], reduction="sum", return_grad=True).grad[0] == (
        -dtype(1) / dtype(np.float32(1e-12))
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_match_torch(isa, dtype):
    torch = pytest.importorskip("torch")
    x = np.array([-1000.0, 1000.0, -50.0, 50.0, 0.0, -20.0, 30.0, 1e-9], dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 1.0, 0.0, 0.25], dtype)
    pw = np.full(8, 2.5, dtype)
    for reduction, p in itertools.product(REDUCTIONS, [None, pw]):
        r = fl.binary_cross_entropy_with_logits(x, y, pos_weight=p, reduction=reduction,
                                                return_grad=True)
        loss, grad = _torch_grad(torch, True, x, y, None, p, reduction, None)
        assert np.isfinite(r.grad).all()
        # atol: where sigmoid(x) ~ y PyTorch's form cancels to 0 (x = 50, y = 1, pos_weight);
        # ours keeps the tiny true value, -pw y sigmoid(-x).
        scale = 1e-6 if dtype == np.float32 else 1e-15
        np.testing.assert_allclose(r.grad, grad, rtol=scale, atol=scale * np.abs(grad).max())
        np.testing.assert_allclose(r.loss, loss, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_with_logits_unweighted_equals_weights_of_one(isa, dtype, rng):
    """Without weight and pos_weight the contiguous loop takes the loss's unweighted forms; they
    give the bits the weighted forms give with weights of one (finite targets), and the bits of
    the general (strided) loop."""
    n = 3 * 1000 + 7  # several sum blocks and a tail
    x = (rng.standard_normal(n) * 6).astype(dtype)
    x[:12] = [1000.0, -1000.0, 50.0, -50.0, 0.0, -0.0, 20.0, -20.0, 1e-9, -1e-9, np.inf, -np.inf]
    y = rng.uniform(0.0, 1.0, n).astype(dtype)
    y[12:40:2] = 1.0
    y[13:40:2] = 0.0
    ones = np.ones(n, dtype)
    strided = np.empty(2 * n, dtype)[::2]
    strided[...] = x
    for reduction in REDUCTIONS:
        go = rng.standard_normal(n).astype(dtype) if reduction == "none" else None
        kw = dict(reduction=reduction, return_grad=True, grad_output=go)
        plain = fl.binary_cross_entropy_with_logits(x, y, **kw)
        weighted = fl.binary_cross_entropy_with_logits(x, y, weight=ones, pos_weight=ones, **kw)
        general = fl.binary_cross_entropy_with_logits(strided, y, **kw)
        for other in (weighted, general):
            np.testing.assert_array_equal(plain.loss, other.loss)
            np.testing.assert_array_equal(plain.grad, other.grad)
        forward = fl.binary_cross_entropy_with_logits(x, y, reduction=reduction)
        np.testing.assert_array_equal(forward, plain.loss)


def test_grad_out_aliasing_the_input(isa, rng):
    for (shape, w_shape, pw_shape), logits in itertools.product(SHAPES, [False, True]):
        x, y, w, pw = _case(rng, shape, w_shape, pw_shape, logits)
        for reduction in REDUCTIONS:
            want = _call(logits, x, y, w, pw, reduction=reduction, return_grad=True)
            z = x.copy()
            r = _call(logits, z, y, w, pw, reduction=reduction, return_grad=True, grad_out=z)
            assert r.grad is z
            np.testing.assert_array_equal(z, want.grad)
            np.testing.assert_array_equal(r.loss, want.loss)


def test_grad_out_aliasing_target_or_weight(isa, rng):
    """Another operand as grad_out: it is read whole before the gradient overwrites it."""
    x, y, w, pw = _case(rng, (6, 9), (6, 9), (6, 9), True)
    want = _call(True, x, y, w, pw, reduction="sum", return_grad=True)
    for k in (1, 2, 3):
        args = [a.copy() for a in (x, y, w, pw)]
        r = _call(True, *args, reduction="sum", return_grad=True, grad_out=args[k])
        assert r.grad is args[k]
        np.testing.assert_array_equal(args[k], want.grad)
        assert r.loss == want.loss


def test_strided_layouts_and_buffers(isa, rng):
    for logits in (False, True):
        x, y, w, pw = _case(rng, (6, 40, 7), (40, 1), (40, 7), logits)
        want = _call(logits, x, y, w, pw, reduction="mean", return_grad=True)
        xt = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
        yt = np.ascontiguousarray(y[:, ::-1])[:, ::-1]  # negative strides
        r = _call(logits, xt, yt, w, pw, reduction="mean", return_grad=True)
        np.testing.assert_array_equal(r.grad, want.grad)
        assert r.loss == want.loss
        buf = np.empty((6, 80, 7))[:, ::2]
        r = _call(logits, x, y, w, pw, reduction="mean", return_grad=True, grad_out=buf)
        assert r.grad is buf
        np.testing.assert_array_equal(buf, want.grad)
        go = rng.standard_normal((7, 40)).T  # a transposed grad_output
        want = _call(logits, x, y, w, pw, reduction="none", return_grad=True,
                     grad_output=np.ascontiguousarray(np.broadcast_to(go, x.shape)))
        r = _call(logits, x, y, w, pw, reduction="none", return_grad=True, grad_output=go)
        np.testing.assert_array_equal(r.grad, want.grad)


def test_dtypes_of_the_gradient(isa, rng):
    x, y, w, pw = _case(rng, (4, 6), (6,), (6,), True)
    r = fl.binary_cross_entropy_with_logits(x.astype(np.float16), y.astype(np.float16),
                                            return_grad=True, reduction="sum")
    assert r.grad.dtype == np.float16
    want = fl.binary_cross_entropy_with_logits(x, y, return_grad=True, reduction="sum").grad
    np.testing.assert_allclose(r.grad, want, rtol=2e-3, atol=1e-3)
    buf = np.empty((4, 6), np.float32)
    r = fl.binary_cross_entropy_with_logits(x.astype(np.float32), y, weight=w, pos_weight=pw,
                                            return_grad=True, grad_out=buf)
    assert r.loss.dtype == np.float64 and r.grad is buf
    want = fl.binary_cross_entropy_with_logits(x.astype(np.float32).astype(np.float64), y,
                                               weight=w, pos_weight=pw, return_grad=True).grad
    np.testing.assert_array_equal(buf, want.astype(np.float32))


def test_bit_identical_across_threads(isa, rng):
    for logits in (False, True):
        x, y, w, pw = (
            None if a is None else a.astype(np.float32)
            for a in _case(rng, (300, 257), (257,), (300, 1), logits)
        )
        before = fl.get_num_threads()
        try:
            for reduction in ("mean", "none"):
                results = []
                for n in (1, 2):
                    fl.set_num_threads(n)
                    results.append(_call(logits, x, y, w, pw, reduction=reduction,
                                         return_grad=True))
                np.testing.assert_array_equal(results[0].grad, results[1].grad)
                np.testing.assert_array_equal(results[0].loss, results[1].loss)
        finally:
            fl.set_num_threads(before)


def test_gradient_argument_errors():
    x = np.full((4, 5), 0.5)
    y = np.zeros((4, 5))
    for f in (fl.binary_cross_entropy, fl.binary_cross_entropy_with_logits):
        with pytest.raises(ValueError, match="only used with return_grad=True"):
            f(x, y, grad_out=np.empty_like(x))
        with pytest.raises(ValueError, match=r"grad_out must have the input's shape \(4, 5\)"):
            f(x, y, return_grad=True, grad_out=np.empty((5, 4)))
        with pytest.raises(ValueError, match="grad_out must have the input's shape"):
            f(x, y, return_grad=True, grad_out=np.empty((4, 5), np.float32))
        with pytest.raises(ValueError, match=r"grad_output must have the loss's shape \(4, 5\)"):
            f(x, y, reduction="none", return_grad=True, grad_output=np.ones(3))
        with pytest.raises(ValueError, match="grad_output must be a number"):
            f(x, y, return_grad=True, grad_output=np.ones(4))
        r = f(x, y, return_grad=True, grad_output=3.0)
        np.testing.assert_allclose(r.grad, 3 * f(x, y, return_grad=True).grad, rtol=1e-15)
        assert isinstance(r, fl.LossAndGrad)
    bad = x.copy()
    bad[1, 2] = 1.5
    with pytest.raises(ValueError, match="all elements of input should be between 0 and 1"):
        fl.binary_cross_entropy(bad, y, return_grad=True)
