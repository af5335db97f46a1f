"""Gradient of cosine_embedding_loss (return_grad=True) with respect to x1, against PyTorch
autograd and against finite differences of our own forward."""

from __future__ import annotations

import fastloss as fl
import numpy as np
import pytest
from test_cross_entropy_grad import _finite_difference

# (N, D): few and many features, one row, D below and above a vector width, an empty batch.
SHAPES = [(9, 5), (7, 37), (1, 300), (40, 3), (0, 4)]


def _case(rng, shape):
    a = rng.standard_normal(shape)
    b = rng.standard_normal(shape)
    y = rng.choice([1.0, -1.0], shape[0])
    if shape[0] > 3:
        y[2] = 0.0  # neither 1 nor -1: no loss, no gradient
        b[1] = a[1] * 0.5  # a cosine of exactly 1
    return a, b, y


def _torch_loss_and_grad(torch, a, b, y, margin, reduction, go=None):
    ta = torch.from_numpy(a).requires_grad_(True)
    loss = torch.nn.functional.cosine_embedding_loss(ta, torch.from_numpy(b), torch.from_numpy(y),
                                                     margin=margin, reduction=reduction)
    (loss * torch.from_numpy(go) if go is not None else loss).sum().backward()
    return loss.detach().numpy(), ta.grad.numpy()


@pytest.mark.parametrize("shape", SHAPES[:-1])
def test_matches_finite_differences(isa, shape, rng):
    a, b, y = _case(rng, shape)
    for margin in (0.0, -0.3, 0.2):
        for reduction in ("mean", "sum", "none"):
            go = rng.standard_normal(shape[0]) if reduction == "none" else None
            kw = {"margin": margin, "reduction": reduction}

            def scalar_loss(xx, kw=kw, go=go):
                value = fl.cosine_embedding_loss(xx, b, y, **kw)
                return float(np.sum(value * go)) if go is not None else float(value)

            r = fl.cosine_embedding_loss(a, b, y, return_grad=True, grad_output=go, **kw)
            np.testing.assert_allclose(r.grad, _finite_difference(scalar_loss, a.copy()),
                                       rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(r.loss, fl.cosine_embedding_loss(a, b, y, **kw), rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch_autograd(isa, dtype, shape, rng):
    torch = pytest.importorskip("torch")
    a, b, y = _case(rng, shape)
    a, b = a.astype(dtype), b.astype(dtype)
    a[:1] = 0  # a zero vector: cos = 0, a gradient of 1/sqrt(eps) scale
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}
    for margin in (0.0, 0.25, -0.5):
        for reduction in ("mean", "sum", "none"):
            go = rng.standard_normal(shape[0]).astype(dtype) if reduction == "none" else None
            r = fl.cosine_embedding_loss(a, b, y, margin=margin, reduction=reduction,
                                         return_grad=True, grad_output=go)
            loss, grad = _torch_loss_and_grad(torch, a, b, y, margin, reduction, go)
            assert r.grad.dtype == dtype and r.grad.shape == a.shape
            np.testing.assert_allclose(r.grad, grad, **tol)
            np.testing.assert_allclose(r.loss, loss, **tol)


def test_margin_boundary_and_one_dimensional_inputs(isa):
    torch = pytest.importorskip("torch")
    a, b = np.array([[1.0, 0.0]]), np.array([[1.0, 1.0]])
    cos = 1 - float(fl.cosine_embedding_loss(a, b, np.array([1.0])))
    # cos == margin exactly: clamp_min passes the gradient at the bound, as PyTorch's
    r = fl.cosine_embedding_loss(a, b, np.array([-1.0]), margin=cos, return_grad=True)
    np.testing.assert_allclose(r.grad, _torch_loss_and_grad(torch, a, b, np.array([-1.0]), cos,
                                                            "mean")[1], rtol=1e-12)
    assert r.grad[0, 1] > 0
    # (D,) inputs with a 0-d target
    v, w = np.array([0.3, -1.0, 2.0]), np.array([1.0, 0.5, 0.1])
    r = fl.cosine_embedding_loss(v, w, np.array(1.0), return_grad=True)
    tv = torch.from_numpy(v).requires_grad_(True)
    torch.nn.functional.cosine_embedding_loss(tv, torch.from_numpy(w), torch.tensor(1.0)).backward()
    assert r.grad.shape == (3,)
    np.testing.assert_allclose(r.grad, tv.grad.numpy(), rtol=1e-12)


def test_broadcast_x1_gets_the_summed_gradient(isa, rng):
    torch = pytest.importorskip("torch")
    a, b = rng.standard_normal((1, 6)), rng.standard_normal((5, 6))
    y = np.array([1.0, -1.0, 1.0, -1.0, 1.0])
    for reduction in ("mean", "none"):
        go = rng.standard_normal(5) if reduction == "none" else None
        r = fl.cosine_embedding_loss(a, b, y, reduction=reduction, return_grad=True, grad_output=go)
        ta = torch.from_numpy(a).requires_grad_(True)
        loss = torch.nn.functional.cosine_embedding_loss(ta.expand(5, 6), torch.from_numpy(b),
                                                         torch.from_numpy(y), reduction=reduction)
        (loss * torch.from_numpy(go) if go is not None else loss).sum().backward()
        assert r.grad.shape == (1, 6)
        np.testing.assert_allclose(r.grad, ta.grad.numpy(), rtol=1e-12, atol=1e-15)
    # x2 broadcast instead: x1's gradient has x1's full shape
    r = fl.cosine_embedding_loss(b, a, y, return_grad=True)
    assert r.grad.shape == (5, 6)


def test_grad_out_aliasing_and_strided_layouts(isa, rng):
    a, b, y = _case(rng, (20, 33))
    want = fl.cosine_embedding_loss(a, b, y, margin=0.1, return_grad=True)
    x = a.copy()
    r = fl.cosine_embedding_loss(x, b, y, margin=0.1, return_grad=True, grad_out=x)
    assert r.grad is x
    np.testing.assert_allclose(x, want.grad, rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(r.loss, want.loss, rtol=1e-14)
    # strided rows and columns of x1, x2 and the gradient buffer
    xs = np.asfortranarray(a)
    bs = np.ascontiguousarray(np.repeat(b, 2, axis=0))[::2]
    buf = np.empty((33, 20)).T
    r = fl.cosine_embedding_loss(xs, bs, y, margin=0.1, return_grad=True, grad_out=buf)
    assert r.grad is buf
    np.testing.assert_allclose(buf, want.grad, rtol=1e-14, atol=1e-16)
    # a gradient buffer over x2: x2 is read intact
    b2 = b.copy()
    fl.cosine_embedding_loss(a, b2, y, margin=0.1, return_grad=True, grad_out=b2)
    np.testing.assert_allclose(b2, want.grad, rtol=1e-14, atol=1e-16)
    # overlapping x1 and gradient: x1 is copied first
    big = rng.standard_normal(20 * 33 + 1)
    x_view, g_view = big[1:].reshape(20, 33), big[:-1].reshape(20, 33)
    want = fl.cosine_embedding_loss(x_view.copy(), b, y, return_grad=True)
    fl.cosine_embedding_loss(x_view, b, y, return_grad=True, grad_out=g_view)
    np.testing.assert_allclose(g_view, want.grad, rtol=1e-14, atol=1e-16)


def test_bit_identical_across_threads(isa, rng):
    a = rng.standard_normal((3000, 200)).astype(np.float32)
    b = rng.standard_normal((3000, 200)).astype(np.float32)
    y = rng.choice([1.0, -1.0], 3000)
    before = fl.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            fl.set_num_threads(n)
            results.append(fl.cosine_embedding_loss(a, b, y, margin=0.1, return_grad=True))
        np.testing.assert_array_equal(results[0].grad, results[1].grad)
        assert results[0].loss == results[1].loss
    finally:
        fl.set_num_threads(before)


def test_gradient_argument_errors():
    a, b, y = np.ones((4, 5)), np.ones((4, 5)), np.ones(4)
    with pytest.raises(ValueError, match="only used with return_grad=True"):
        fl.cosine_embedding_loss(a, b, y, grad_out=np.empty_like(a))
    with pytest.raises(ValueError, match=r"grad_out must have the input's shape \(4, 5\)"):
        fl.cosine_embedding_loss(a, b, y, return_grad=True, grad_out=np.empty((5, 4)))
    with pytest.raises(ValueError, match=r"grad_output must have the loss's shape \(4,\)"):
        fl.cosine_embedding_loss(a, b, y, reduction="none", return_grad=True, grad_output=np.ones(3))
    with pytest.raises(ValueError, match="grad_output must be a number"):
        fl.cosine_embedding_loss(a, b, y, return_grad=True, grad_output=np.ones(4))
    r = fl.cosine_embedding_loss(a + np.arange(5), b, y, return_grad=True, grad_output=-3.0)
    base = fl.cosine_embedding_loss(a + np.arange(5), b, y, return_grad=True)
    np.testing.assert_allclose(r.grad, -3 * base.grad)
    assert isinstance(r, fl.LossAndGrad)
    assert not isinstance(fl.CosineEmbeddingLoss()(a, b, y), fl.LossAndGrad)
