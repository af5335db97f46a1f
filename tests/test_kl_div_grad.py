"""Gradient of kl_div (return_grad=True) with respect to the input, against PyTorch autograd and
against central finite differences of our own forward pass."""

from __future__ import annotations

import itertools

import fastloss as fl
import numpy as np
import pytest
from test_cross_entropy_grad import _finite_difference

# kl_div's reduction="mean" warns (PyTorch's message, as PyTorch does); not what is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")

REDUCTIONS = ("none", "mean", "sum", "batchmean")
# (input shape, target shape): same shapes, a target broadcast along the input's leading axes,
# and an input that the target broadcasts to a larger shape (its gradient is summed).
SHAPES = [
    ((7,), (7,)),
    ((9, 5), (9, 5)),
    ((3, 4, 6), (3, 4, 6)),
    ((6, 5), (5,)),
    ((1, 5), (4, 5)),
    ((4, 1, 5), (3, 5)),
]


def _case(rng, x_shape, t_shape, log_target):
    x = np.log(rng.uniform(0.05, 1.0, x_shape))
    if log_target:
        t = np.log(rng.uniform(0.05, 1.0, t_shape))
    else:
        t = rng.uniform(0.0, 1.0, t_shape)
        t.flat[:: max(1, t.size // 3)] = 0.0  # xlogy's zero
    return x, t


def _loss_shape(x, t):
    return np.broadcast_shapes(x.shape, t.shape)


@pytest.mark.parametrize("x_shape,t_shape", SHAPES)
@pytest.mark.parametrize("log_target", [False, True])
def test_matches_finite_differences(isa, x_shape, t_shape, log_target, rng):
    x, t = _case(rng, x_shape, t_shape, log_target)
    for reduction in REDUCTIONS:
        go = rng.standard_normal(_loss_shape(x, t)) if reduction == "none" else None
        kw = {"reduction": reduction, "log_target": log_target}

        def scalar_loss(xx, kw=kw, go=go):
            value = fl.kl_div(xx, t, **kw)
            return float(np.sum(value * go)) if go is not None else float(value)

        r = fl.kl_div(x, t, return_grad=True, grad_output=go, **kw)
        assert r.grad.shape == x.shape and r.grad.dtype == x.dtype
        want = _finite_difference(scalar_loss, x.copy())
        np.testing.assert_allclose(r.grad, want, rtol=1e-6, atol=1e-8)
        np.testing.assert_array_equal(r.loss, fl.kl_div(x, t, **kw))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape,t_shape", SHAPES)
def test_matches_torch_autograd(isa, dtype, x_shape, t_shape, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}
    for log_target, reduction in itertools.product([False, True], REDUCTIONS):
        x, t = _case(rng, x_shape, t_shape, log_target)
        x, t = x.astype(dtype), t.astype(dtype)
        go = rng.standard_normal(_loss_shape(x, t)).astype(dtype) if reduction == "none" else None
        r = fl.kl_div(x, t, reduction=reduction, log_target=log_target, return_grad=True,
                      grad_output=go)
        tx = torch.from_numpy(x).requires_grad_(True)
        loss = F.kl_div(tx, torch.from_numpy(t), reduction=reduction, log_target=log_target)
        (loss * torch.from_numpy(go) if go is not None else loss).sum().backward()
        assert r.grad.dtype == dtype
        np.testing.assert_allclose(r.grad, tx.grad.numpy(), **tol)
        np.testing.assert_allclose(r.loss, loss.detach().numpy(), **tol)


def test_quirks_match_torch(isa):
    """-t/D whatever the input: -0 at t = 0 even where the loss is NaN (input = -inf); with
    log_target, -exp(t)/D: -0 at t = -inf."""
    torch = pytest.importorskip("torch")
    x = np.array([-np.inf, -1.0, 0.0, -np.inf, 2.0, 1.0])
    t = np.array([0.0, 0.0, 0.5, 0.25, 1.0, -np.inf])
    for log_target in (False, True):
        r = fl.kl_div(x, t, reduction="sum", log_target=log_target, return_grad=True)
        tx = torch.from_numpy(x).requires_grad_(True)
        loss = torch.nn.functional.kl_div(tx, torch.from_numpy(t), reduction="sum",
                                          log_target=log_target)
        loss.backward()
        np.testing.assert_allclose(r.grad, tx.grad.numpy(), rtol=1e-15)  # exp: within an ulp
        np.testing.assert_array_equal(np.signbit(r.grad), np.signbit(tx.grad.numpy()))
        np.testing.assert_allclose(r.loss, loss.detach().numpy(), rtol=1e-15)


def test_grad_output_scales_reduced_gradients(isa, rng):
    x, t = _case(rng, (5, 8), (5, 8), False)
    for reduction in ("mean", "sum", "batchmean"):
        base = fl.kl_div(x, t, reduction=reduction, return_grad=True)
        r = fl.kl_div(x, t, reduction=reduction, return_grad=True, grad_output=-2.5)
        np.testing.assert_allclose(r.grad, -2.5 * base.grad, rtol=1e-15)
    np.testing.assert_allclose(base.grad, -t / 5, rtol=1e-15)
    # a broadcastable grad_output for reduction="none" (a scalar, a row)
    r = fl.kl_div(x, t, reduction="none", return_grad=True, grad_output=np.arange(8.0))
    np.testing.assert_allclose(r.grad, -t * np.arange(8.0), rtol=1e-15)


def test_grad_out_aliasing_the_input(isa, rng):
    for (x_shape, t_shape), log_target in itertools.product(SHAPES, [False, True]):
        x, t = _case(rng, x_shape, t_shape, log_target)
        for reduction in REDUCTIONS:
            want = fl.kl_div(x, t, reduction=reduction, log_target=log_target, return_grad=True)
            y = x.copy()
            r = fl.kl_div(y, t, reduction=reduction, log_target=log_target, return_grad=True,
                          grad_out=y)
            assert r.grad is y
            np.testing.assert_array_equal(y, want.grad)
            np.testing.assert_array_equal(r.loss, want.loss)


def test_grad_out_aliasing_the_target(isa, rng):
    x, t = _case(rng, (6, 9), (6, 9), False)
    want = fl.kl_div(x, t, reduction="sum", return_grad=True)
    r = fl.kl_div(x, t, reduction="sum", return_grad=True, grad_out=t)
    assert r.grad is t
    np.testing.assert_array_equal(t, want.grad)
    assert r.loss == want.loss


def test_strided_layouts_and_buffers(isa, rng):
    base, t = _case(rng, (6, 40, 7), (6, 40, 7), False)
    want = fl.kl_div(base, t, reduction="batchmean", return_grad=True)
    xt = np.ascontiguousarray(base.transpose(0, 2, 1)).transpose(0, 2, 1)
    tt = np.ascontiguousarray(t[:, ::-1]).copy()[:, ::-1]  # negative strides
    r = fl.kl_div(xt, tt, reduction="batchmean", return_grad=True)
    np.testing.assert_array_equal(r.grad, want.grad)
    buf = np.empty((6, 7, 40)).transpose(0, 2, 1)
    r = fl.kl_div(base, t, reduction="batchmean", return_grad=True, grad_out=buf)
    assert r.grad is buf
    np.testing.assert_array_equal(buf, want.grad)
    every_other = np.empty((6, 80, 7))[:, ::2]
    fl.kl_div(base, t, reduction="batchmean", return_grad=True, grad_out=every_other)
    np.testing.assert_array_equal(every_other, want.grad)
    # overlapping the input without being it: the input is copied first
    big = np.log(rng.uniform(0.05, 1.0, base.size + 1))
    x_view, g_view = big[1:].reshape(base.shape), big[:-1].reshape(base.shape)
    want = fl.kl_div(x_view.copy(), t, reduction="sum", log_target=False, return_grad=True)
    fl.kl_div(x_view, t, reduction="sum", return_grad=True, grad_out=g_view)
    np.testing.assert_array_equal(g_view, want.grad)


def test_dtypes_of_the_gradient(isa, rng):
    """The gradient has the input's dtype; half precision is computed in float32."""
    x, t = _case(rng, (4, 6), (4, 6), False)
    r = fl.kl_div(x.astype(np.float16), t.astype(np.float16), reduction="sum", return_grad=True)
    assert r.grad.dtype == np.float16
    np.testing.assert_allclose(r.grad, -t, rtol=1e-3, atol=1e-4)
    r = fl.kl_div(x.astype(np.float32), t, reduction="sum", return_grad=True)  # mixed: float64 loss
    assert r.loss.dtype == np.float64 and r.grad.dtype == np.float32
    np.testing.assert_array_equal(r.grad, (-t).astype(np.float32))
    buf = np.empty((4, 6), np.float32)
    r = fl.kl_div(x.astype(np.float32), t, reduction="sum", return_grad=True, grad_out=buf)
    assert r.grad is buf
    np.testing.assert_array_equal(buf, (-t).astype(np.float32))


def test_broadcast_input_gradient_is_summed(isa, rng):
    x, t = _case(rng, (1, 3, 1), (5, 3, 4), True)
    buf = np.empty_like(x)
    r = fl.kl_div(x, t, reduction="sum", log_target=True, return_grad=True, grad_out=buf)
    assert r.grad is buf and buf.shape == (1, 3, 1)
    want = -np.exp(t).sum(axis=(0, 2), keepdims=True)
    np.testing.assert_allclose(buf, want, rtol=1e-14)


def test_bit_identical_across_threads(isa, rng):
    x, t = _case(rng, (300, 257), (300, 257), False)
    x, t = x.astype(np.float32), t.astype(np.float32)
    before = fl.get_num_threads()
    try:
        for log_target, reduction in itertools.product([False, True], ["batchmean", "none"]):
            results = []
            for n in (1, 2):
                fl.set_num_threads(n)
                results.append(fl.kl_div(x, t, reduction=reduction, log_target=log_target,
                                         return_grad=True))
            np.testing.assert_array_equal(results[0].grad, results[1].grad)
            np.testing.assert_array_equal(results[0].loss, results[1].loss)
    finally:
        fl.set_num_threads(before)


def test_gradient_argument_errors():
    x = np.zeros((4, 5))
    t = np.full((4, 5), 0.2)
    with pytest.raises(ValueError, match="only used with return_grad=True"):
        fl.kl_div(x, t, reduction="sum", grad_out=np.empty_like(x))
    with pytest.raises(ValueError, match="only used with return_grad=True"):
        fl.kl_div(x, t, reduction="sum", grad_output=2.0)
    with pytest.raises(ValueError, match=r"grad_out must have the input's shape \(4, 5\)"):
        fl.kl_div(x, t, reduction="sum", return_grad=True, grad_out=np.empty((5, 4)))
    with pytest.raises(ValueError, match="grad_out must have the input's shape"):
        fl.kl_div(x, t, reduction="sum", return_grad=True, grad_out=np.empty((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"grad_out must have the input's shape \(1, 5\)"):
        fl.kl_div(x[:1], t, reduction="sum", return_grad=True, grad_out=np.empty((4, 5)))
    with pytest.raises(ValueError, match="grad_out must be writeable"):
        ro = np.empty_like(x)
        ro.flags.writeable = False
        fl.kl_div(x, t, reduction="sum", return_grad=True, grad_out=ro)
    with pytest.raises(TypeError, match="grad_out must be a numpy.ndarray"):
        fl.kl_div(x, t, reduction="sum", return_grad=True, grad_out=[[0.0] * 5] * 4)
    with pytest.raises(ValueError, match=r"grad_output must have the loss's shape \(4, 5\)"):
        fl.kl_div(x, t, reduction="none", return_grad=True, grad_output=np.ones(3))
    with pytest.raises(ValueError, match="grad_output must be a number"):
        fl.kl_div(x, t, reduction="batchmean", return_grad=True, grad_output=np.ones(4))
    r = fl.kl_div(x, t, reduction="batchmean", return_grad=True)
    assert isinstance(r, fl.LossAndGrad)


def test_zero_d_input_broadcast_by_the_target_gets_an_array_gradient():
    """Found by the fuzzer: a 0-d input summed back from a broadcast gradient came back as a NumPy
    scalar, not a 0-d array."""
    for t in (np.zeros(0), np.array([0.25, 0.5])):
        r = fl.kl_div(np.array(-1.0), t, reduction="sum", return_grad=True)
        assert isinstance(r.grad, np.ndarray) and r.grad.shape == ()
        np.testing.assert_allclose(r.grad, -t.sum(), rtol=1e-15)
        out = np.empty(())
        r = fl.kl_div(np.array(-1.0), t, reduction="sum", return_grad=True, grad_out=out)
        assert r.grad is out
