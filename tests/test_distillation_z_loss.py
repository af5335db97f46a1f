"""distillation_loss's z_loss: cross_entropy's z-loss on the hard term (z * lse**2 per non-ignored
position, Liger's reduction), weighed by alpha with the cross-entropy, against a float64 reference
written out here and a PyTorch composition, in every kernel layout, divergence and ISA; z_loss=0
keeps the plain loss's bits."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import fastloss as fl
import reference as ref

Z = 1e-2
ALPHA = 0.4

# (shape, axis): rows in lanes (few classes), rows, the columns layout (class axis not last),
# and a strided class axis that neither layout takes (staged rows).
LAYOUTS = [((32, 10), 1), ((9, 300), 1), ((6, 5, 7), 1), ((4, 37), -1)]


def z_loss_term(s, target, reduction, axis):
    """z * lse**2 at each non-ignored position, reduced as Liger reduces it (mean: over their
    count, unweighted); per position for 'none'."""
    lse = ref.logsumexp(s, axis)
    target = np.asarray(target)
    counted = np.ones(lse.shape, bool) if target.dtype.kind == "f" else target != -100
    zt = np.where(counted, Z * lse**2, 0.0)
    if reduction == "none":
        return zt
    return zt.sum() if reduction == "sum" else zt.sum() / counted.sum()


def _case(shape, axis, rng, dtype=np.float64):
    s = (rng.standard_normal(shape) * 3).astype(dtype)
    t = (rng.standard_normal(shape) * 3).astype(dtype)
    ax = axis % len(shape)
    y = rng.integers(0, shape[ax], shape[:ax] + shape[ax + 1 :])
    y.flat[1 % y.size] = -100
    return s, t, y, ax


@pytest.mark.parametrize("shape,axis", LAYOUTS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing,weighted", [(0.0, False), (0.1, True)])
def test_z_loss_against_the_float64_reference(
    shape, axis, reduction, smoothing, weighted, rng, isa
):
    s, t, y, ax = _case(shape, axis, rng)
    w = rng.uniform(0.5, 2.0, shape[ax]) if weighted else None
    options = dict(temperature=2.0, alpha=ALPHA, reduction=reduction, weight=w,
                   label_smoothing=smoothing, axis=axis)
    got = fl.distillation_loss(s, t, y, z_loss=Z, **options)
    want = ref.distillation_loss(s, t, y, **options) + ALPHA * z_loss_term(s, y, reduction, ax)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("divergence,beta", [("kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.3)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("probabilities", [False, True])
def test_z_loss_adds_alpha_times_cross_entropys_z_loss_whatever_the_divergence(
    divergence, beta, reduction, probabilities, rng, isa
):
    """The z-loss is the hard term's: the loss and gradient grow by alpha times the difference
    z_loss makes to cross_entropy, for every divergence and target kind."""
    s, t, y, _ = _case((12, 33), 1, rng)
    if probabilities:
        y = rng.dirichlet(np.ones(33), 12)
    options = dict(temperature=3.0, alpha=ALPHA, divergence=divergence, beta=beta,
                   reduction=reduction, return_grad=True)
    with_z = fl.distillation_loss(s, t, y, z_loss=Z, **options)
    plain = fl.distillation_loss(s, t, y, **options)
    ce_z = fl.cross_entropy(s, y, z_loss=Z, reduction=reduction, return_grad=True)
    ce = fl.cross_entropy(s, y, reduction=reduction, return_grad=True)
    np.testing.assert_allclose(np.asarray(with_z.loss) - plain.loss,
                               ALPHA * (np.asarray(ce_z.loss) - ce.loss), rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(with_z.grad - plain.grad, ALPHA * (ce_z.grad - ce.grad),
                               rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("shape,axis", LAYOUTS[:3])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_z_loss_gradient_is_autograds_of_the_torch_composition(shape, axis, reduction, dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    s, t, y, ax = _case(shape, axis, rng, dtype)
    w = rng.uniform(0.5, 2.0, shape[ax]).astype(dtype)
    go = rng.standard_normal(y.shape).astype(dtype) if reduction == "none" else 0.75
    T = 2.0
    got = fl.distillation_loss(s, t, y, temperature=T, alpha=ALPHA, weight=w, reduction=reduction,
                               axis=axis, z_loss=Z, return_grad=True, grad_output=go)

    ts = torch.tensor(s, requires_grad=True)
    tt = torch.tensor(t)
    ty = torch.tensor(y)
    moved = ts.movedim(ax, 1)
    ce = F.cross_entropy(moved, ty, weight=torch.tensor(w), reduction=reduction)
    lse = torch.logsumexp(ts, dim=ax)
    counted = (ty != -100).to(ts.dtype)
    zt = Z * lse**2 * counted
    z_divisor = counted.sum() if reduction == "mean" else 1
    hard = ce + (zt if reduction == "none" else zt.sum() / z_divisor)
    kl = F.kl_div(F.log_softmax(ts / T, ax), F.softmax(tt / T, ax), reduction="none").sum(ax)
    soft = kl if reduction == "none" else kl.sum() / (s.shape[0] if reduction == "mean" else 1)
    total = ALPHA * hard + (1 - ALPHA) * T * T * soft
    (total * torch.tensor(go, dtype=ts.dtype)).sum().backward()
    tol = dict(rtol=3e-5, atol=3e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(got.loss, total.detach().numpy(), **tol)
    np.testing.assert_allclose(got.grad, ts.grad.numpy(), **tol)


@pytest.mark.parametrize("shape,axis", LAYOUTS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_z_loss_zero_keeps_the_plain_bits(shape, axis, reduction, rng, isa):
    """z_loss=0 (an int: the general path) gives the default call's bits (the common path)."""
    s, t, y, _ = _case(shape, axis, rng, np.float32)
    plain = fl.distillation_loss(s, t, y, reduction=reduction, axis=axis)
    zero = fl.distillation_loss(s, t, y, reduction=reduction, axis=axis, z_loss=0)
    np.testing.assert_array_equal(plain, zero)
    plain = fl.distillation_loss(s, t, y, reduction=reduction, axis=axis, return_grad=True)
    zero = fl.distillation_loss(s, t, y, reduction=reduction, axis=axis, return_grad=True, z_loss=0)
    np.testing.assert_array_equal(plain.loss, zero.loss)
    np.testing.assert_array_equal(plain.grad, zero.grad)


@pytest.mark.parametrize("shape,axis", LAYOUTS)
def test_one_and_two_threads_give_the_same_bits(shape, axis, rng, threads):
    s, t, y, _ = _case((64, *shape[1:]), axis, rng, np.float32)
    got = fl.distillation_loss(s, t, y, z_loss=Z, axis=axis, reduction="none", return_grad=True)
    fl.set_num_threads(1)
    one = fl.distillation_loss(s, t, y, z_loss=Z, axis=axis, reduction="none", return_grad=True)
    np.testing.assert_array_equal(got.loss, one.loss)
    np.testing.assert_array_equal(got.grad, one.grad)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_half_precision_computes_in_float32(dtype, rng):
    s, t, y, _ = _case((16, 40), 1, rng, np.float32)
    s, t = s.astype(dtype), t.astype(dtype)
    got = fl.distillation_loss(s, t, y, z_loss=Z, return_grad=True)
    want = fl.distillation_loss(s.astype(np.float32), t.astype(np.float32), y, z_loss=Z,
                                return_grad=True)
    assert got.loss.dtype == dtype and got.grad.dtype == dtype
    eps = ref.half_epsilon(dtype)
    np.testing.assert_allclose(np.float32(got.loss), want.loss, rtol=2 * eps)
    np.testing.assert_allclose(got.grad.astype(np.float32), want.grad, rtol=2 * eps, atol=eps / 100)


def test_every_target_ignored_gives_a_nan_mean_and_the_soft_gradient(rng):
    s, t, _, _ = _case((5, 9), 1, rng)
    y = np.full(5, -100)
    with np.errstate(invalid="ignore"):
        got = fl.distillation_loss(s, t, y, z_loss=Z, return_grad=True)
        plain = fl.distillation_loss(s, t, y, return_grad=True)
    assert np.isnan(got.loss)
    np.testing.assert_array_equal(got.grad, plain.grad)
    none = fl.distillation_loss(s, t, y, z_loss=Z, reduction="none")
    np.testing.assert_array_equal(none, fl.distillation_loss(s, t, y, reduction="none"))


@pytest.mark.parametrize("bad", [-1e-3, float("nan"), float("inf"), None])
def test_errors_name_z_loss(bad, rng):
    s, t, y, _ = _case((4, 6), 1, rng)
    with pytest.raises((ValueError, TypeError), match="z_loss"):
        fl.distillation_loss(s, t, y, z_loss=bad)


def test_the_loss_class_takes_z_loss(rng):
    s, t, y, _ = _case((8, 12), 1, rng)
    loss = fl.DistillationLoss(temperature=3.0, z_loss=Z)
    assert "z_loss=0.01" in repr(loss)
    assert loss(s, t, y) == fl.distillation_loss(s, t, y, temperature=3.0, z_loss=Z)


def test_the_torch_op_takes_z_loss(rng):
    torch = pytest.importorskip("torch")
    import fastloss.torch as flt

    s, t, y, _ = _case((6, 11), 1, rng)
    x = torch.tensor(s, requires_grad=True)
    loss = flt.nn.DistillationLoss(temperature=2.0, alpha=ALPHA, z_loss=Z)(
        x, torch.tensor(t), torch.tensor(y)
    )
    loss.backward()
    want = fl.distillation_loss(s, t, y, temperature=2.0, alpha=ALPHA, z_loss=Z, return_grad=True)
    np.testing.assert_allclose(loss.item(), want.loss, rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), want.grad, rtol=1e-12, atol=1e-15)
