"""jensen_shannon_divergence (Liger's generalized JSD, input = log Q, target = P): values and
gradients against a PyTorch composition written out here, Liger's beta = 0 and 1, -inf
log-probabilities, half precision, instruction sets and threads, and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastloss as fl
import reference as ref
from fastloss._validation import AxisError

torch = pytest.importorskip("torch")
ml_dtypes = pytest.importorskip("ml_dtypes")
F = torch.nn.functional


def torch_jsd(x, t, beta, log_target, axis):
    """Per-element terms (float64 tensors); x = log Q, t = P (log P with log_target)."""
    if beta == 0.0:  # Liger: forward KL(P || Q)
        return F.kl_div(x, t, reduction="none", log_target=log_target)
    log_p = t if log_target else torch.log(t)
    p, q = log_p.exp(), x.exp()
    if beta == 1.0:  # Liger: reverse KL(Q || P)
        return F.kl_div(log_p, q, reduction="none")
    log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), x + math.log(1 - beta)]), 0)
    # P = Q = 0 adds 0 (the literal expression's 0 * -inf would be NaN): our convention
    log_m = torch.where(log_m == -math.inf, torch.zeros_like(log_m), log_m)
    return beta * F.kl_div(log_m, p, reduction="none") + (1 - beta) * F.kl_div(
        log_m, q, reduction="none"
    )


def torch_loss_and_grad(x, t, beta, log_target, reduction, axis, go=None):
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    terms = torch_jsd(tx, torch.from_numpy(t.astype(np.float64)), beta, log_target, axis)
    per_position = terms.sum(axis)
    if reduction == "none":
        loss = per_position
        (loss * torch.from_numpy(go)).sum().backward()
    else:
        loss = per_position.sum() / (per_position.numel() if reduction == "mean" else 1)
        loss.backward()
    return loss.detach().numpy(), tx.grad.numpy()


def case(rng, shape, axis, dtype=np.float64, log_target=False):
    x = fl.log_softmax(rng.standard_normal(shape) * 2, axis=axis).astype(dtype)
    lt = fl.log_softmax(rng.standard_normal(shape) * 2, axis=axis)
    return x, (lt if log_target else np.exp(lt)).astype(dtype)


def same_bits(a, b) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True) and np.array_equal(
        np.signbit(a[~np.isnan(a)]), np.signbit(b[~np.isnan(b)])
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("shape,axis", [((6, 9), -1), ((3, 7, 4), 1)])
def test_matches_torch_composition(rng, dtype, beta, log_target, shape, axis):
    x, t = case(rng, shape, axis, dtype, log_target)
    tol = {"rtol": 1e-10, "atol": 1e-13} if dtype == np.float64 else {"rtol": 1e-5, "atol": 1e-7}
    for reduction in ("mean", "sum", "none"):
        positions = np.delete(np.array(shape), axis).tolist()
        go = rng.standard_normal(positions) if reduction == "none" else None
        got = fl.jensen_shannon_divergence(x, t, beta=beta, log_target=log_target,
                                           reduction=reduction, axis=axis, return_grad=True,
                                           grad_output=go)
        want_loss, want_grad = torch_loss_and_grad(x, t, beta, log_target, reduction, axis, go)
        assert got.grad.dtype == dtype and np.asarray(got.loss).dtype == dtype
        np.testing.assert_allclose(got.loss, want_loss, **tol, err_msg=reduction)
        np.testing.assert_allclose(got.grad, want_grad, **tol, err_msg=reduction)
        alone = fl.jensen_shannon_divergence(x, t, beta=beta, log_target=log_target,
                                             reduction=reduction, axis=axis)
        assert same_bits(alone, got.loss)


def test_liger_normalisation_and_its_beta_ends(rng):
    """mean over (BT, V) is the sum divided by BT (Liger's, without labels); beta = 0 is kl_div's
    pointwise loss bit for bit, beta = 1 the reverse KL."""
    x, p = case(rng, (8, 50), -1, np.float32)
    total = fl.jensen_shannon_divergence(x, p, reduction="sum")
    assert np.isclose(fl.jensen_shannon_divergence(x, p), total / 8, rtol=1e-6)
    for log_target, t in [(False, p), (True, np.log(p))]:
        jsd = fl.jensen_shannon_divergence(x, t, beta=0.0, log_target=log_target,
                                           reduction="sum", return_grad=True)
        kl = fl.kl_div(x, t, log_target=log_target, reduction="sum", return_grad=True)
        assert same_bits(jsd.loss, kl.loss) and same_bits(jsd.grad, kl.grad)
    q = np.exp(x.astype(np.float64))
    reverse = (q * (x - np.log(p.astype(np.float64)))).sum()
    np.testing.assert_allclose(fl.jensen_shannon_divergence(x, p, beta=1.0, reduction="sum"),
                               reverse, rtol=1e-5)
    # symmetric at beta = 0.5, and bounded by log 2 per position
    jsd = fl.jensen_shannon_divergence(x, p, reduction="none")
    swapped = fl.jensen_shannon_divergence(np.log(p), np.exp(x), reduction="none")
    np.testing.assert_allclose(jsd, swapped, rtol=1e-5, atol=1e-7)
    assert (jsd >= 0).all() and (jsd <= math.log(2) + 1e-6).all()


@pytest.mark.parametrize("beta", [0.3, 0.5, 1.0])
def test_masked_classes(beta):
    """-inf log-probabilities (probability 0) in the input, the target or both."""
    with np.errstate(divide="ignore"):
        x = np.log(np.array([[0.5, 0.5, 0.0, 0.0], [0.2, 0.3, 0.5, 0.0]]))
    p = np.array([[0.25, 0.25, 0.5, 0.0], [0.0, 0.5, 0.5, 0.0]])
    with np.errstate(divide="ignore"):
        got = fl.jensen_shannon_divergence(x, p, beta=beta, reduction="none", return_grad=True)
        want_loss, want_grad = torch_loss_and_grad(x, p, beta, False, "none", -1, np.ones(2))
    np.testing.assert_allclose(got.loss, want_loss, rtol=1e-12)
    finite = np.isfinite(want_grad)
    np.testing.assert_allclose(got.grad[finite], want_grad[finite], rtol=1e-12)
    assert np.isfinite(got.grad[np.isfinite(got.loss)]).all()  # autograd's 0 * -inf is NaN
    if beta < 1.0:
        assert np.isfinite(got.loss).all()  # the JSD is bounded whatever the supports


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16], ids=lambda d: np.dtype(d).name)
def test_half_precision_computes_in_float32(rng, dtype):
    x, t = case(rng, (5, 30), -1, dtype)
    got = fl.jensen_shannon_divergence(x, t, beta=0.3, return_grad=True)
    wide = fl.jensen_shannon_divergence(x.astype(np.float32), t.astype(np.float32), beta=0.3,
                                        return_grad=True)
    assert got.loss.dtype == dtype and got.grad.dtype == dtype
    np.testing.assert_allclose(np.float32(got.loss), np.float32(wide.loss),
                               rtol=ref.half_epsilon(dtype))
    np.testing.assert_array_equal(got.grad, wide.grad.astype(dtype))


def test_every_isa_one_and_two_threads_bit_identical(isa, rng):
    x, t = case(rng, (300, 1000), -1, np.float32)
    before = fl.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            fl.set_num_threads(n)
            results.append(fl.jensen_shannon_divergence(x, t, beta=0.3, return_grad=True))
    finally:
        fl.set_num_threads(before)
    assert same_bits(results[0].loss, results[1].loss)
    assert same_bits(results[0].grad, results[1].grad)
    want, _ = torch_loss_and_grad(x[:4], t[:4], 0.3, False, "sum", -1)
    got = fl.jensen_shannon_divergence(x[:4], t[:4], beta=0.3, reduction="sum")
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_module_and_errors(rng):
    x, t = case(rng, (4, 6), -1)
    module = fl.JSDLoss(beta=0.2, reduction="sum")
    assert repr(module) == "JSDLoss(beta=0.2, reduction='sum', log_target=False, axis=-1)"
    assert same_bits(module(x, t), fl.jensen_shannon_divergence(x, t, beta=0.2, reduction="sum"))
    for beta in (-0.5, 1.01, float("nan"), float("-inf")):
        with pytest.raises(ValueError, match=r"beta must be between 0\.0 and 1\.0, got"):
            fl.jensen_shannon_divergence(x, t, beta=beta)
    with pytest.raises(ValueError, match="reduction"):
        fl.jensen_shannon_divergence(x, t, reduction="batchmean")
    with pytest.raises(AxisError):
        fl.jensen_shannon_divergence(x, t, axis=2)
    with pytest.raises(ValueError, match="cannot be broadcast"):
        fl.jensen_shannon_divergence(x, t[:, :5])
    with pytest.raises(ValueError, match=r"grad_output must have the loss's shape"):
        fl.jensen_shannon_divergence(x, t, reduction="none", return_grad=True,
                                     grad_output=np.ones(3))
