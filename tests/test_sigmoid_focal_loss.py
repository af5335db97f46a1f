"""sigmoid_focal_loss and SigmoidFocalLoss: torchvision.ops.sigmoid_focal_loss's values and
autograd's gradients, against a float64 reference (tests/reference.py) and against torchvision's
formula spelled in torch ops (torchvision itself is not a dependency)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import fastloss as fl
import reference as ref

ml_dtypes = pytest.importorskip("ml_dtypes")

GAMMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
ALPHAS = (0.25, -1.0)
REDUCTIONS = ("none", "mean", "sum")


def torchvision_focal(x, t, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss, written out in torch ops."""
    import torch.nn.functional as F

    p = x.sigmoid()
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def _case(rng, shape, dtype=np.float64, scale=4.0):
    """Logits, and targets that are half hard (0 or 1), half soft."""
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    t = rng.uniform(0, 1, shape)
    t.flat[::2] = np.round(t.flat[::2])
    return x, t.astype(dtype)


def _tolerances(dtype, values):
    """rtol, and an atol for values near 0 (soft targets cancel in the gradient)."""
    rtol = 1e-12 if dtype == np.float64 else 3e-5
    return rtol, rtol * 1e-2 * float(np.max(np.abs(values), initial=0.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_the_float64_reference(isa, dtype, rng):
    x, t = _case(rng, (37, 19), dtype)
    for gamma, alpha, reduction in itertools.product(GAMMAS, ALPHAS, REDUCTIONS):
        kw = dict(alpha=alpha, gamma=gamma, reduction=reduction)
        loss, grad = ref.sigmoid_focal_loss(x, t, return_grad=True, **kw)
        r = fl.sigmoid_focal_loss(x, t, return_grad=True, **kw)
        assert r.grad.dtype == dtype and np.asarray(r.loss).dtype == dtype
        np.testing.assert_allclose(r.loss, loss, *_tolerances(dtype, loss), err_msg=str(kw))
        np.testing.assert_allclose(r.grad, grad, *_tolerances(dtype, grad), err_msg=str(kw))
        # the loss alone is the loss of the fused pass, bit for bit
        np.testing.assert_array_equal(fl.sigmoid_focal_loss(x, t, **kw), r.loss)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_the_torch_composition_and_autograd(dtype, rng):
    torch = pytest.importorskip("torch")
    # |x| <= ~12: torch's 1 - p_t keeps most of its digits there
    x, t = _case(rng, (23, 17), dtype, scale=3.0)
    rtol = 1e-9 if dtype == np.float64 else 1e-4
    for gamma, alpha, reduction in itertools.product(GAMMAS, ALPHAS, REDUCTIONS):
        kw = dict(alpha=alpha, gamma=gamma, reduction=reduction)
        xt = torch.tensor(x, requires_grad=True)
        want = torchvision_focal(xt, torch.tensor(t), **kw)
        want.sum().backward()
        want, want_grad = want.detach().numpy(), xt.grad.numpy()
        r = fl.sigmoid_focal_loss(x, t, return_grad=True, **kw)
        np.testing.assert_allclose(
            r.loss, want, rtol, rtol * 1e-2 * np.abs(want).max(), err_msg=str(kw)
        )
        np.testing.assert_allclose(
            r.grad, want_grad, rtol, rtol * 1e-2 * np.abs(want_grad).max(), err_msg=str(kw)
        )


def test_gradcheck_in_float64(rng):
    """torch.autograd.gradcheck of the loss (reduction "none", so grad_output is exercised)."""
    torch = pytest.importorskip("torch")

    class Focal(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, t, alpha, gamma):
            ctx.save_for_backward(x, t)
            ctx.options = dict(alpha=alpha, gamma=gamma)
            return torch.from_numpy(fl.sigmoid_focal_loss(x.numpy(), t.numpy(), **ctx.options))

        @staticmethod
        def backward(ctx, g):
            x, t = ctx.saved_tensors
            r = fl.sigmoid_focal_loss(
                x.numpy(), t.numpy(), return_grad=True, grad_output=g.numpy(), **ctx.options
            )
            return torch.from_numpy(r.grad), None, None, None

    x, t = _case(rng, (5, 6), scale=2.0)
    for gamma, alpha in itertools.product((0.0, 0.7, 2.0, 2.5), ALPHAS):
        xt = torch.tensor(x, requires_grad=True)
        assert torch.autograd.gradcheck(Focal.apply, (xt, torch.tensor(t), alpha, gamma))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values_match_torch(isa, dtype):
    """inf, NaN, zero and huge logits against hard and soft targets: torch's values and NaNs.
    (Logits where torch's 1 - p_t rounds to 0 but ours does not are the next test's.)"""
    torch = pytest.importorskip("torch")
    logits = [0.0, 1.0, -1.0, 5.0, -5.0, 1e30, -1e30, np.inf, -np.inf, np.nan]
    x = np.array(logits * 3, dtype)
    t = np.repeat(np.array([0.0, 1.0, 0.3], dtype), len(logits))
    rtol = 1e-12 if dtype == np.float64 else 1e-4  # torch's 1 - p_t at x = 5: 1e-5 relative
    for gamma, alpha in itertools.product((0.0, 0.5, 1.0, 2.0, 2.5), ALPHAS):
        xt = torch.tensor(x, requires_grad=True)
        want = torchvision_focal(xt, torch.tensor(t), alpha, gamma)
        want.sum().backward()
        r = fl.sigmoid_focal_loss(x, t, alpha=alpha, gamma=gamma, return_grad=True)
        msg = f"gamma={gamma} alpha={alpha}"
        np.testing.assert_allclose(r.loss, want.detach().numpy(), rtol, 1e-30, err_msg=msg)
        np.testing.assert_allclose(r.grad, xt.grad.numpy(), rtol, 1e-30, err_msg=msg)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_minus_p_t_without_cancellation(isa, dtype):
    """Far on the target's side, 1 - p_t is sigmoid(-|x|), which torchvision's formula rounds
    to 0 (from |x| ~ 17 in float32, ~ 37 in float64): the loss keeps its true tiny value, and
    the gradient stays finite for gamma < 1. (ce is binary_cross_entropy_with_logits', as
    torchvision's: accurate for x > 0 against t = 1, which these cases are.)"""
    x = np.array([20.0, 40.0, 80.0, 300.0], dtype)
    t = np.ones_like(x)
    tiny = np.finfo(dtype).tiny  # exp(-80) and beyond are subnormal or 0 in float32
    rtol = 1e-12 if dtype == np.float64 else 3e-5
    for gamma in (0.5, 1.0, 1.5, 2.0):
        loss, grad = ref.sigmoid_focal_loss(x, t, alpha=0.25, gamma=gamma, return_grad=True)
        r = fl.sigmoid_focal_loss(x, t, alpha=0.25, gamma=gamma, return_grad=True)
        np.testing.assert_allclose(r.loss, loss, rtol, tiny, err_msg=f"gamma={gamma}")
        if dtype == np.float32 and gamma < 1:
            # sigmoid(-300) is 0 in float32: 0 * inf in the gradient, NaN as autograd's
            assert np.isnan(r.grad[-1])
            np.testing.assert_allclose(r.grad[:-1], grad[:-1], rtol, tiny)
        else:
            np.testing.assert_allclose(r.grad, grad, rtol, tiny, err_msg=f"gamma={gamma}")
    assert fl.sigmoid_focal_loss(x, t)[0] > 0  # float32 holds 0.25 * 2e-9 * (2e-9) ** 2


def test_gamma_zero_is_bce_with_logits(isa, rng):
    x, t = _case(rng, (9, 31))
    for reduction in REDUCTIONS:
        want = fl.binary_cross_entropy_with_logits(x, t, reduction=reduction, return_grad=True)
        r = fl.sigmoid_focal_loss(
            x, t, alpha=-1.0, gamma=0.0, reduction=reduction, return_grad=True
        )
        np.testing.assert_array_equal(r.loss, want.loss)
        # p - t without cancellation: the same to rounding (an ULP of 1 where it cancels)
        np.testing.assert_allclose(r.grad, want.grad, rtol=1e-15, atol=1e-15)
    a_t = 0.25 * t + 0.75 * (1 - t)
    r = fl.sigmoid_focal_loss(x, t, gamma=0.0, return_grad=True)
    want = fl.binary_cross_entropy_with_logits(x, t, reduction="none", return_grad=True)
    np.testing.assert_allclose(r.loss, a_t * want.loss, rtol=1e-15)
    np.testing.assert_allclose(r.grad, a_t * want.grad, rtol=1e-15, atol=1e-15)
    # 0 ** 0 = 1: a target of exactly 0 against a logit of -inf gives q = 0 (torch's pow too)
    assert fl.sigmoid_focal_loss(np.array([-1e30]), np.array([0.0]), gamma=0.0)[0] == 0.0


def test_torchvision_defaults_and_alpha(rng):
    x, t = _case(rng, (4, 5))
    np.testing.assert_array_equal(
        fl.sigmoid_focal_loss(x, t), fl.sigmoid_focal_loss(x, t, alpha=0.25, gamma=2.0)
    )
    assert fl.sigmoid_focal_loss(x, t).shape == (4, 5)  # reduction "none"
    # any negative alpha means no alpha weighting, even one that float32 would round to -0
    x32, t32 = x.astype(np.float32), t.astype(np.float32)
    want = fl.sigmoid_focal_loss(x32, t32, alpha=-1.0)
    np.testing.assert_array_equal(fl.sigmoid_focal_loss(x32, t32, alpha=-1e-60), want)
    # whole gammas given as ints take the general path, to the same bits
    np.testing.assert_array_equal(fl.sigmoid_focal_loss(x, t, alpha=1, gamma=3),
                                  fl.sigmoid_focal_loss(x, t, alpha=1.0, gamma=3.0))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_float32_rounded_once(isa, dtype, rng):
    half = np.dtype(getattr(ml_dtypes, dtype) if dtype == "bfloat16" else dtype)
    x, t = (a.astype(half) for a in _case(rng, (13, 21), scale=3.0))
    x32, t32 = x.astype(np.float32), t.astype(np.float32)
    for gamma in (2.0, 1.5):
        r = fl.sigmoid_focal_loss(x, t, gamma=gamma, return_grad=True)
        want = fl.sigmoid_focal_loss(x32, t32, gamma=gamma, return_grad=True)
        assert r.loss.dtype == half and r.grad.dtype == half
        np.testing.assert_array_equal(r.loss, want.loss.astype(half))
        np.testing.assert_array_equal(r.grad, want.grad.astype(half))
        for reduction in ("mean", "sum"):
            r = fl.sigmoid_focal_loss(x, t, gamma=gamma, reduction=reduction, return_grad=True)
            want = fl.sigmoid_focal_loss(
                x32, t32, gamma=gamma, reduction=reduction, return_grad=True
            )
            assert r.loss.dtype == half
            np.testing.assert_allclose(np.float32(r.loss), want.loss, rtol=1e-2)
            np.testing.assert_array_equal(r.grad, want.grad.astype(half))


def test_bit_identical_across_threads(isa, rng):
    x, t = (a.astype(np.float32) for a in _case(rng, (300, 257)))
    before = fl.get_num_threads()
    try:
        for gamma, reduction in itertools.product((2.0, 1.5), ("mean", "none")):
            results = []
            for n in (1, 2):
                fl.set_num_threads(n)
                results.append(
                    fl.sigmoid_focal_loss(x, t, gamma=gamma, reduction=reduction, return_grad=True)
                )
            np.testing.assert_array_equal(results[0].grad, results[1].grad)
            np.testing.assert_array_equal(results[0].loss, results[1].loss)
    finally:
        fl.set_num_threads(before)


def test_strided_read_only_and_broadcast_inputs(isa, rng):
    x, t = _case(rng, (6, 40, 7))
    for reduction in REDUCTIONS:
        want = fl.sigmoid_focal_loss(x, t, gamma=1.5, reduction=reduction, return_grad=True)
        xs = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
        ts = np.ascontiguousarray(t[:, ::-1])[:, ::-1]  # negative strides
        xs.flags.writeable = ts.flags.writeable = False
        r = fl.sigmoid_focal_loss(xs, ts, gamma=1.5, reduction=reduction, return_grad=True)
        # (a reduced loss is summed in pieces of the layout's rows: equal to the last bits or so)
        np.testing.assert_allclose(r.loss, want.loss, rtol=1e-15)
        np.testing.assert_array_equal(r.grad, want.grad)
    # zero-stride views (np.broadcast_to) read as their copies
    row, trow = x[0, 0], t[0, 0]
    xb, tb = np.broadcast_to(row, (5, 7)), np.broadcast_to(trow, (5, 7))
    r = fl.sigmoid_focal_loss(xb, tb, reduction="sum", return_grad=True)
    want = fl.sigmoid_focal_loss(xb.copy(), tb.copy(), reduction="sum", return_grad=True)
    np.testing.assert_allclose(r.loss, want.loss, rtol=1e-15)
    np.testing.assert_array_equal(r.grad, want.grad)


def test_gradient_buffers(isa, rng):
    x, t = _case(rng, (8, 9))
    want = fl.sigmoid_focal_loss(x, t, reduction="mean", return_grad=True)
    z = x.copy()
    r = fl.sigmoid_focal_loss(z, t, reduction="mean", return_grad=True, grad_out=z)
    assert r.grad is z and r.loss == want.loss
    np.testing.assert_array_equal(z, want.grad)
    r = fl.sigmoid_focal_loss(x, t, reduction="mean", return_grad=True, grad_output=3.0)
    np.testing.assert_allclose(r.grad, 3 * want.grad, rtol=1e-15)
    go = rng.standard_normal((8, 9))
    r = fl.sigmoid_focal_loss(x, t, return_grad=True, grad_output=go)
    np.testing.assert_allclose(
        r.grad, go * fl.sigmoid_focal_loss(x, t, return_grad=True).grad, rtol=1e-15
    )


def test_empty_inputs():
    x = np.zeros((0, 3), np.float32)
    assert fl.sigmoid_focal_loss(x, x).shape == (0, 3)
    assert np.isnan(fl.sigmoid_focal_loss(x, x, reduction="mean"))
    r = fl.sigmoid_focal_loss(x, x, reduction="sum", return_grad=True)
    assert r.loss == 0 and r.loss.dtype == np.float32 and r.grad.shape == (0, 3)


def test_errors():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="'avg' is not a valid value for reduction"):
        fl.sigmoid_focal_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match=r"target has shape \(3,\).*input shape \(2, 3\)"):
        fl.sigmoid_focal_loss(x, x[0])
    with pytest.raises(TypeError, match=r"input must be a floating-point array.*int64"):
        fl.sigmoid_focal_loss(x.astype(np.int64), x)
    with pytest.raises(TypeError, match=r"target must be a floating-point array.*int64"):
        fl.sigmoid_focal_loss(x, x.astype(np.int64))
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="alpha must be a finite number"):
            fl.sigmoid_focal_loss(x, x, alpha=bad)
        with pytest.raises(ValueError, match="gamma must be a finite number >= 0"):
            fl.sigmoid_focal_loss(x, x, gamma=bad)
    with pytest.raises(ValueError, match=r"gamma must be a finite number >= 0, got -0\.5"):
        fl.sigmoid_focal_loss(x, x, gamma=-0.5)
    with pytest.raises(TypeError, match="alpha must be a real number, got object"):
        fl.sigmoid_focal_loss(x, x, alpha=object())
    with pytest.raises(TypeError, match="gamma must be a real number, got NoneType"):
        fl.sigmoid_focal_loss(x, x, gamma=None)
    with pytest.raises(ValueError, match="only used with return_grad=True"):
        fl.sigmoid_focal_loss(x, x, grad_out=np.empty_like(x))


def test_callable_class(rng):
    x, t = _case(rng, (4, 5))
    loss = fl.SigmoidFocalLoss()
    assert repr(loss) == "SigmoidFocalLoss(alpha=0.25, gamma=2.0, reduction='none')"
    np.testing.assert_array_equal(loss(x, t), fl.sigmoid_focal_loss(x, t))
    loss = fl.SigmoidFocalLoss(alpha=-1, gamma=1.5, reduction="sum")
    assert repr(loss) == "SigmoidFocalLoss(alpha=-1, gamma=1.5, reduction='sum')"
    assert loss(x, t) == fl.sigmoid_focal_loss(x, t, alpha=-1, gamma=1.5, reduction="sum")
