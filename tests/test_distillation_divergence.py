"""distillation_loss's divergences (divergence="kl" | "reverse_kl" | "jsd", beta): values and
gradients against PyTorch compositions written out here, the identities between them (JSD at
beta = 0 and 1 is Liger's forward and reverse KL, bit for bit), every kernel layout, instruction
set and thread count, -inf/NaN logits, half precision and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastloss as fl
import reference as ref

torch = pytest.importorskip("torch")
ml_dtypes = pytest.importorskip("ml_dtypes")
F = torch.nn.functional

# (divergence, beta): reverse KL, and the JSD at an asymmetric and the symmetric beta.
DIVERGENCES = [("reverse_kl", 0.5), ("jsd", 0.3), ("jsd", 0.5)]
# Layouts: rows of many classes (two folds of kFoldVectors vectors and a tail), rows in lanes
# (few classes), and the class axis in columns ((N, C, d) with axis=1).
SHAPES = [((5, 700), 1), ((37, 10), 1), ((4, 11, 5), 1)]


def torch_divergence(s, t, temperature, divergence, beta, cls):
    """Per-element soft term, as PyTorch users write it (float64 tensors)."""
    T = temperature
    log_q, log_p = F.log_softmax(s / T, cls), F.log_softmax(t / T, cls)
    q, p = F.softmax(s / T, cls), F.softmax(t / T, cls)
    if divergence == "kl" or (divergence == "jsd" and beta == 0.0):
        return F.kl_div(log_q, p, reduction="none")  # KL(P || Q)
    if divergence == "reverse_kl" or (divergence == "jsd" and beta == 1.0):
        return F.kl_div(log_p, q, reduction="none")  # KL(Q || P)
    # M = beta P + (1 - beta) Q, its log by logsumexp (no underflow to log 0)
    log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log(1 - beta)]), 0)
    # A class that is -inf in both (P = Q = M = 0) adds 0, where the literal expression gives
    # 0 * -inf = NaN: our documented convention (the JSD is bounded; masked classes are common).
    log_m = torch.where(log_m == -math.inf, torch.zeros_like(log_m), log_m)
    return beta * F.kl_div(log_m, p, reduction="none") + (1 - beta) * F.kl_div(
        log_m, q, reduction="none"
    )


def torch_loss_and_grad(s, t, target, *, temperature, alpha, divergence, beta, reduction,
                        label_smoothing=0.0, weight=None, go=None):
    """alpha * CE + (1 - alpha) T^2 D (batchmean for mean) and its autograd, class axis 1."""
    cls = 1 if s.ndim > 1 else 0
    ts = torch.from_numpy(s.astype(np.float64)).requires_grad_(True)
    tt = torch.from_numpy(t.astype(np.float64))
    tgt = torch.from_numpy(target if target.dtype.kind in "iu" else target.astype(np.float64))
    tw = None if weight is None else torch.from_numpy(weight.astype(np.float64))
    ce = F.cross_entropy(ts, tgt, reduction=reduction, label_smoothing=label_smoothing, weight=tw)
    soft = torch_divergence(ts, tt, temperature, divergence, beta, cls)
    scale = (1 - alpha) * temperature**2
    if reduction == "none":
        loss = alpha * ce + scale * soft.sum(cls)
        (loss * torch.from_numpy(go)).sum().backward()
    else:
        total = soft.sum() / (s.shape[0] if reduction == "mean" else 1)
        loss = alpha * ce + scale * total
        loss.backward()
    return loss.detach().numpy(), ts.grad.numpy()


def case(rng, shape, dtype=np.float64):
    s = (rng.standard_normal(shape) * 3).astype(dtype)
    t = (rng.standard_normal(shape) * 3).astype(dtype)
    positions = (shape[0], *shape[2:])
    y = rng.integers(0, shape[1], positions)
    return s, t, y


def same_bits(a, b) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True) and np.array_equal(
        np.signbit(a[~np.isnan(a)]), np.signbit(b[~np.isnan(b)])
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape,axis", SHAPES, ids=["rows", "lanes", "columns"])
@pytest.mark.parametrize("divergence,beta", DIVERGENCES)
def test_matches_torch_composition(rng, dtype, shape, axis, divergence, beta):
    s, t, y = case(rng, shape, dtype)
    q = fl.softmax(rng.standard_normal(shape), axis=1).astype(dtype)
    y_ignored = y.copy()
    y_ignored.flat[::3] = -100
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == np.float64 else {"rtol": 2e-5, "atol": 2e-6}
    # T = 1 and 2 take the integer-power kernels, 3.5 the general one [Note: integer temperature].
    w = rng.uniform(0.5, 2.0, shape[1]).astype(dtype)
    settings = [
        (1.0, 0.3, y, 0.0, "mean", None),
        (2.0, 0.5, q, 0.1, "sum", None),
        (3.5, 0.8, y_ignored, 0.2, "none", None),
        (2.0, 0.0, y, 0.0, "mean", None),
        (3.0, 0.4, y_ignored, 0.1, "mean", w),
    ]
    for temperature, alpha, target, eps, reduction, weight in settings:
        go = rng.standard_normal(y.shape) if reduction == "none" else None
        kw = dict(temperature=temperature, alpha=alpha, divergence=divergence, beta=beta,
                  reduction=reduction, label_smoothing=eps, weight=weight)
        got = fl.distillation_loss(s, t, target, axis=axis, return_grad=True,
                                   grad_output=go, **kw)
        want_loss, want_grad = torch_loss_and_grad(
            s.astype(np.float64), t.astype(np.float64), target, go=go, **kw
        )
        assert got.grad.dtype == dtype
        np.testing.assert_allclose(got.loss, want_loss, **tol, err_msg=str(kw))
        np.testing.assert_allclose(got.grad, want_grad, **tol, err_msg=str(kw))
        # The loss alone is the same loss.
        alone = fl.distillation_loss(s, t, target, axis=axis, **kw)
        assert same_bits(alone, got.loss)


@pytest.mark.parametrize("shape,axis", SHAPES, ids=["rows", "lanes", "columns"])
@pytest.mark.parametrize("temperature", [1.0, 2.0, 3.0])
def test_jsd_at_beta_0_and_1_is_forward_and_reverse_kl(rng, shape, axis, temperature):
    s, t, y = case(rng, shape, np.float32)
    kw = dict(temperature=temperature, alpha=0.4, reduction="none", axis=axis, return_grad=True)
    for beta, same_as in [(0.0, "kl"), (1.0, "reverse_kl")]:
        jsd = fl.distillation_loss(s, t, y, divergence="jsd", beta=beta, **kw)
        kl = fl.distillation_loss(s, t, y, divergence=same_as, **kw)
        assert same_bits(jsd.loss, kl.loss) and same_bits(jsd.grad, kl.grad)
    # "kl" is the default, whatever beta.
    default = fl.distillation_loss(s, t, y, **kw)
    explicit = fl.distillation_loss(s, t, y, divergence="kl", beta=0.9, **kw)
    assert same_bits(default.loss, explicit.loss) and same_bits(default.grad, explicit.grad)
    # Liger's definition at its ends: beta = 0 is KL(P || Q), beta = 1 is KL(Q || P).
    ts, tt = torch.from_numpy(s.astype(np.float64)), torch.from_numpy(t.astype(np.float64))
    log_q, log_p = F.log_softmax(ts / temperature, 1), F.log_softmax(tt / temperature, 1)
    forward = (log_p.exp() * (log_p - log_q)).sum(1).numpy()
    reverse = (log_q.exp() * (log_q - log_p)).sum(1).numpy()
    soft = (1 - 0.4) * temperature**2
    ce = 0.4 * F.cross_entropy(ts, torch.from_numpy(y), reduction="none").numpy()
    for beta, want in [(0.0, forward), (1.0, reverse)]:
        got = fl.distillation_loss(s, t, y, divergence="jsd", beta=beta, **kw).loss
        np.testing.assert_allclose(got, ce + soft * want, rtol=2e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, ml_dtypes.bfloat16],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("classes", [7, 10, 17])
@pytest.mark.parametrize("divergence,beta", DIVERGENCES[:2])
def test_rows_in_lanes_match_rows_every_isa_and_thread_count(isa, threads, rng, dtype, classes,
                                                             divergence, beta):
    """A row's bits are the same in a batch (W rows in lanes) as alone (the rows layout)."""
    rows = 19
    s = (rng.standard_normal((rows, classes)) * 4).astype(dtype)
    t = (rng.standard_normal((rows, classes)) * 4).astype(dtype)
    s[2, 0] = -np.inf
    t[4, classes - 1] = -np.inf
    s[6, 1] = t[6, 1] = -np.inf
    s[8, :] = np.linspace(0, 6e3, classes).astype(dtype)  # a wide spread: most terms underflow
    s[9, 2] = np.nan
    y = rng.integers(0, classes, rows)
    kw = dict(divergence=divergence, beta=beta, reduction="none", return_grad=True)
    with np.errstate(all="ignore"):
        for temperature, option in [(1.0, {}), (2.0, {"label_smoothing": 0.1}), (3.0, {})]:
            whole = fl.distillation_loss(s, t, y, temperature=temperature, **option, **kw)
            for k in range(rows):
                one = fl.distillation_loss(s[k:k + 1], t[k:k + 1], y[k:k + 1],
                                           temperature=temperature, **option, **kw)
                assert same_bits(whole.loss[k], one.loss[0]), (k, temperature)
                assert same_bits(whole.grad[k], one.grad[0]), (k, temperature)


@pytest.mark.parametrize("divergence,beta", DIVERGENCES[:2])
def test_one_and_two_threads_bit_identical(isa, rng, divergence, beta):
    before = fl.get_num_threads()
    inputs = [
        ("rows", (rng.standard_normal((300, 1000)) * 4).astype(np.float32), 1),
        ("columns", rng.standard_normal((8, 64, 300)), 1),
    ]
    try:
        for label, s, axis in inputs:
            t = np.roll(s, 1, axis=0)
            y = np.zeros((s.shape[0], *s.shape[2:]), np.int64)
            results = []
            for n in (1, 2):
                fl.set_num_threads(n)
                results.append(fl.distillation_loss(s, t, y, divergence=divergence, beta=beta,
                                                    axis=axis, return_grad=True))
            assert same_bits(results[0].loss, results[1].loss), label
            assert same_bits(results[0].grad, results[1].grad), label
    finally:
        fl.set_num_threads(before)


@pytest.mark.parametrize("divergence,beta", DIVERGENCES)
@pytest.mark.parametrize("shape,axis", SHAPES[1:], ids=["lanes", "columns"])
def test_infinite_and_nan_logits(isa, divergence, beta, shape, axis):
    """Values as the torch expression gives them; gradients where autograd's are finite."""
    rng = np.random.default_rng(7)
    s, t, y = case(rng, shape)
    s[0, 1] = -np.inf  # student -inf, teacher finite
    t[1, 2] = -np.inf  # teacher -inf, student finite
    s[2, 3] = t[2, 3] = -np.inf  # both
    s[3, 0] = np.nan
    kw = dict(temperature=2.0, alpha=0.5, divergence=divergence, beta=beta, reduction="none")
    go = np.ones(y.shape)
    with np.errstate(all="ignore"):
        got = fl.distillation_loss(s, t, y, axis=axis, return_grad=True, **kw)
        want_loss, want_grad = torch_loss_and_grad(s, t, y, go=go, **kw)
    np.testing.assert_allclose(got.loss, want_loss, rtol=1e-10, atol=1e-12)
    assert np.isnan(got.loss[3]).all() and np.isnan(got.grad[3]).all()
    finite = np.isfinite(want_grad)
    np.testing.assert_allclose(got.grad[finite], want_grad[finite], rtol=1e-10, atol=1e-12)
    # Where autograd gives NaN (0 * -inf in softmax's backward) ours is finite, except where
    # the loss itself is not.
    finite_loss = np.isfinite(got.loss)
    assert np.isfinite(np.moveaxis(got.grad, 1, -1)[finite_loss]).all()


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("divergence,beta", DIVERGENCES[:2])
def test_half_precision_computes_in_float32(rng, dtype, divergence, beta):
    s, t, y = case(rng, (9, 40), dtype)
    kw = dict(divergence=divergence, beta=beta, temperature=2.0, return_grad=True)
    got = fl.distillation_loss(s, t, y, **kw)
    wide = fl.distillation_loss(s.astype(np.float32), t.astype(np.float32), y, **kw)
    assert got.loss.dtype == dtype and got.grad.dtype == dtype
    # The same float32 computation, rounded once to the half type.
    assert got.loss == wide.loss.astype(dtype)
    np.testing.assert_array_equal(got.grad, wide.grad.astype(dtype))
    want_loss, _ = torch_loss_and_grad(s.astype(np.float64), t.astype(np.float64), y,
                                       temperature=2.0, alpha=0.5, divergence=divergence, beta=beta,
                                       reduction="mean")
    np.testing.assert_allclose(np.float64(got.loss), want_loss, rtol=ref.half_epsilon(dtype))


def test_module_and_errors(rng):
    s, t, y = case(rng, (4, 6))
    module = fl.DistillationLoss(divergence="jsd", beta=0.25, reduction="sum")
    assert "divergence='jsd', beta=0.25" in repr(module)
    assert same_bits(module(s, t, y), fl.distillation_loss(s, t, y, divergence="jsd", beta=0.25,
                                                           reduction="sum"))
    for beta in (-0.1, 1.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"beta must be between 0.0 and 1.0, got"):
            fl.distillation_loss(s, t, y, divergence="jsd", beta=beta)
    with pytest.raises(TypeError, match="beta"):
        fl.distillation_loss(s, t, y, beta="half")
    choices = r"divergence must be one of 'kl', 'reverse_kl', 'jsd', got 'js'"
    with pytest.raises(ValueError, match=choices):
        fl.distillation_loss(s, t, y, divergence="js")
    with pytest.raises(ValueError, match="divergence must be one of"):
        fl.distillation_loss(s, t, y, divergence=None)


def test_torch_adapter_passes_the_divergence_through(rng):
    import fastloss.torch as flt

    s, t, y = case(rng, (5, 7))
    x = torch.from_numpy(s).requires_grad_(True)
    for divergence, beta in DIVERGENCES:
        loss = flt.distillation_loss(x, torch.from_numpy(t), torch.from_numpy(y),
                                     divergence=divergence, beta=beta)
        (grad,) = torch.autograd.grad(loss, x)
        want = fl.distillation_loss(s, t, y, divergence=divergence, beta=beta, return_grad=True)
        assert same_bits(loss.detach().numpy(), want.loss)
        assert same_bits(grad.numpy(), want.grad)
    module = flt.nn.DistillationLoss(divergence="jsd", beta=0.3)
    assert same_bits(module(x, torch.from_numpy(t), torch.from_numpy(y)).detach().numpy(),
                     fl.distillation_loss(s, t, y, divergence="jsd", beta=0.3))
