"""Gradient of distillation_loss (return_grad=True) with respect to the student logits, against
PyTorch autograd of the composed expression and against finite differences of our own forward."""

from __future__ import annotations

import itertools

import fastloss as fl
import numpy as np
import pytest
from test_cross_entropy_grad import SHAPES, _case, _finite_difference, _probabilities

# (temperature, alpha): T = 1 and T = 2 take the integer-power kernels, 3.5 the general one.
SETTINGS = [(1.0, 0.3), (2.0, 0.5), (3.5, 0.8)]


def _moved(a: np.ndarray, ax: int) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(a, ax, 1) if a.ndim > 1 else a)


def _torch_loss_and_grad(torch, s, t, target, temperature, alpha, reduction, ax, weight=None,
                         eps=0.0, go=None, ignore_index=-100):
    """PyTorch's autograd of alpha*CE + (1-alpha)*T^2*KL_batchmean, class axis moved to 1."""
    F = torch.nn.functional
    cls = 1 if s.ndim > 1 else 0
    ts = torch.from_numpy(_moved(s, ax)).requires_grad_(True)
    tt = torch.from_numpy(_moved(t, ax))
    tgt = torch.from_numpy(target) if target.dtype.kind in "iu" else torch.from_numpy(_moved(target, ax))
    tw = torch.from_numpy(weight) if weight is not None else None
    ce_reduction = "none" if reduction == "none" else reduction
    ce = F.cross_entropy(ts, tgt, weight=tw, label_smoothing=eps, reduction=ce_reduction,
                         ignore_index=ignore_index)
    T = temperature
    kl = F.kl_div(F.log_softmax(ts / T, cls), F.softmax(tt / T, cls), reduction="none")
    if reduction == "none":
        loss = alpha * ce + (1 - alpha) * T * T * kl.sum(cls)
        (loss * torch.from_numpy(go)).sum().backward()
    else:
        kl_total = kl.sum() / (s.shape[0] if reduction == "mean" else 1)
        loss = alpha * ce + (1 - alpha) * T * T * kl_total
        loss.backward()
    grad = ts.grad.numpy()
    return loss.detach().numpy(), (np.moveaxis(grad, 1, ax) if s.ndim > 1 else grad)


@pytest.mark.parametrize("shape,axis", SHAPES)
def test_matches_finite_differences(isa, shape, axis, rng):
    s, y, C, ax, positions = _case(rng, shape, axis)
    t = rng.standard_normal(shape) * 2
    w = rng.uniform(0.5, 2.0, C)
    q = _probabilities(rng, shape, ax)
    for (temp, alpha), (target, weight, eps) in itertools.product(
        SETTINGS[::2], [(y, None, 0.0), (y, w, 0.2), (q, w, 0.1)]
    ):
        for reduction in ("mean", "sum", "none"):
            go = rng.standard_normal(positions) if reduction == "none" else None
            kw = {"temperature": temp, "alpha": alpha, "weight": weight, "label_smoothing": eps,
                      "reduction": reduction, "axis": axis}

            def scalar_loss(xx, target=target, kw=kw, go=go):
                value = fl.distillation_loss(xx, t, target, **kw)
                return float(np.sum(value * go)) if go is not None else float(value)

            r = fl.distillation_loss(s, t, target, return_grad=True, grad_output=go, **kw)
            want = _finite_difference(scalar_loss, s.copy())
            np.testing.assert_allclose(r.grad, want, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(r.loss, fl.distillation_loss(s, t, target, **kw), rtol=1e-14,
                                       atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", SHAPES)
def test_matches_torch_autograd(isa, dtype, shape, axis, rng):
    torch = pytest.importorskip("torch")
    s, y, C, ax, positions = _case(rng, shape, axis)
    s = s.astype(dtype)
    t = (rng.standard_normal(shape) * 2).astype(dtype)
    w = rng.uniform(0.5, 2.0, C).astype(dtype)
    q = _probabilities(rng, shape, ax).astype(dtype)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}
    for (temp, alpha), kind, use_w, eps, reduction in itertools.product(
        SETTINGS, ["index", "prob"], [False, True], [0.0, 0.2], ["mean", "sum", "none"]
    ):
        target = y if kind == "index" else q
        weight = w if use_w else None
        go = rng.standard_normal(positions).astype(dtype) if reduction == "none" else None
        r = fl.distillation_loss(
            s, t, target, temperature=temp, alpha=alpha, weight=weight, label_smoothing=eps,
            reduction=reduction, axis=axis, return_grad=True, grad_output=go,
        )
        loss, grad = _torch_loss_and_grad(torch, s, t, target, temp, alpha, reduction, ax, weight,
                                          eps, go)
        assert r.grad.dtype == dtype and r.grad.shape == s.shape
        np.testing.assert_allclose(r.grad, grad, **tol)
        np.testing.assert_allclose(r.loss, loss, **tol)


def test_columns_layout_matches_rows(isa, rng):
    # the class axis first: columns layout; (N, C, H) with axis 1 is columns as well
    s = rng.standard_normal((4, 30, 17))
    t = rng.standard_normal((4, 30, 17))
    y = rng.integers(0, 30, (4, 17))
    y[0, :5] = -100
    for kw in [{}, {"label_smoothing": 0.1}, {"temperature": 1.0}, {"temperature": 3.0}]:
        for reduction in ("mean", "sum", "none"):
            want = fl.distillation_loss(np.moveaxis(s, 1, 2).copy(), np.moveaxis(t, 1, 2).copy(), y,
                                        axis=-1, reduction=reduction, return_grad=True, **kw)
            r = fl.distillation_loss(s, t, y, reduction=reduction, return_grad=True, **kw)
            np.testing.assert_allclose(r.grad, np.moveaxis(want.grad, 2, 1), rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(r.loss, want.loss, rtol=1e-13, atol=1e-15)


def test_ignored_positions_keep_the_kl_gradient(isa, rng):
    torch = pytest.importorskip("torch")
    s, t = rng.standard_normal((6, 9)), rng.standard_normal((6, 9))
    y = np.array([1, -100, 3, -100, 0, 8])
    r = fl.distillation_loss(s, t, y, alpha=0.4, return_grad=True)
    _loss, grad = _torch_loss_and_grad(torch, s, t, y, 2.0, 0.4, "mean", 1)
    np.testing.assert_allclose(r.grad, grad, rtol=1e-12, atol=1e-14)
    # the ignored rows' gradient is the KL part alone: (1-alpha) T (softmax(s/T) - softmax(t/T)) / N
    kl_only = 0.6 * 2.0 * (fl.softmax(s / 2, 1) - fl.softmax(t / 2, 1)) / 6
    np.testing.assert_allclose(r.grad[[1, 3]], kl_only[[1, 3]], rtol=1e-12, atol=1e-15)


def test_all_ignored_mean_gives_nan_loss_and_the_kl_gradient(isa, rng):
    torch = pytest.importorskip("torch")
    s, t = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    y = np.full(4, -100)
    for layout_s, layout_t, ax in [(s, t, 1), (s.T.copy(), t.T.copy(), 0)]:
        r = fl.distillation_loss(layout_s, layout_t, y, axis=ax, return_grad=True)
        assert np.isnan(r.loss)
        g = r.grad if ax == 1 else r.grad.T
        n = layout_s.shape[0]
        np.testing.assert_allclose(g, 0.5 * 2.0 * (fl.softmax(s / 2, 1) - fl.softmax(t / 2, 1)) / n,
                                   rtol=1e-12, atol=1e-15)
    loss, grad = _torch_loss_and_grad(torch, s, t, y, 2.0, 0.5, "mean", 1)
    assert np.isnan(loss)
    np.testing.assert_allclose(fl.distillation_loss(s, t, y, return_grad=True).grad, grad,
                               rtol=1e-12, atol=1e-15)


def test_infinite_logits_match_torch(isa):
    torch = pytest.importorskip("torch")
    s = np.array([[0.5, -np.inf, 1.0, 2.0], [1.0, 0.0, -np.inf, 0.3]])
    t = np.array([[0.1, 0.2, -np.inf, 0.0], [0.0, 1.0, -np.inf, 0.5]])
    y = np.array([0, 3])
    for reduction in ("mean", "none"):
        go = np.array([1.0, -2.0]) if reduction == "none" else None
        r = fl.distillation_loss(s, t, y, reduction=reduction, return_grad=True, grad_output=go)
        loss, grad = _torch_loss_and_grad(torch, s, t, y, 2.0, 0.5, reduction, 1, go=go)
        np.testing.assert_allclose(r.loss, loss, rtol=1e-12)  # +inf and NaN where torch has them
        np.testing.assert_allclose(r.grad, grad, rtol=1e-12, atol=1e-15)


def test_grad_out_aliasing_the_student_logits(isa, rng):
    for shape, axis in SHAPES:
        s, y, _C, ax, _positions = _case(rng, shape, axis)
        t = rng.standard_normal(shape)
        q = _probabilities(rng, shape, ax)
        for target, kw in [(y, {"label_smoothing": 0.1}), (q, {"temperature": 1.0})]:
            want = fl.distillation_loss(s, t, target, axis=axis, return_grad=True, **kw)
            x = s.copy()
            r = fl.distillation_loss(x, t, target, axis=axis, return_grad=True, grad_out=x, **kw)
            assert r.grad is x
            np.testing.assert_allclose(x, want.grad, rtol=1e-14, atol=1e-15)
            np.testing.assert_allclose(r.loss, want.loss, rtol=1e-14)
    # a grad_out over the teacher logits: the teacher is read intact
    s, t, y = rng.standard_normal((5, 8)), rng.standard_normal((5, 8)), rng.integers(0, 8, 5)
    want = fl.distillation_loss(s, t, y, return_grad=True)
    r = fl.distillation_loss(s, t, y, return_grad=True, grad_out=t)
    assert r.grad is t
    np.testing.assert_allclose(t, want.grad, rtol=1e-14, atol=1e-15)


def test_strided_layouts_and_buffers(isa, rng):
    s, t = rng.standard_normal((5, 40, 7)), rng.standard_normal((5, 40, 7))
    y = rng.integers(0, 40, (5, 7))
    q = _probabilities(rng, (5, 40, 7), 1)
    for target in (y, q):
        want = fl.distillation_loss(s, t, target, return_grad=True, temperature=3.0)
        # class axis strided and positions not contiguous: the staged path
        st = np.ascontiguousarray(s.transpose(0, 2, 1)).transpose(0, 2, 1)
        tt = np.ascontiguousarray(t.transpose(2, 0, 1)).transpose(1, 2, 0)
        r = fl.distillation_loss(st, tt, target, return_grad=True, temperature=3.0)
        np.testing.assert_allclose(r.grad, want.grad, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(r.loss, want.loss, rtol=1e-13)
        buf = np.empty((5, 7, 40)).transpose(0, 2, 1)
        r = fl.distillation_loss(s, t, target, return_grad=True, temperature=3.0, grad_out=buf)
        assert r.grad is buf
        np.testing.assert_allclose(buf, want.grad, rtol=1e-13, atol=1e-15)
    # overlapping but not identical: the input is copied first
    big = rng.standard_normal(5 * 40 * 7 + 1)
    s_view, g_view = big[1:].reshape(5, 40, 7), big[:-1].reshape(5, 40, 7)
    want = fl.distillation_loss(s_view.copy(), t, y, return_grad=True)
    fl.distillation_loss(s_view, t, y, return_grad=True, grad_out=g_view)
    np.testing.assert_allclose(g_view, want.grad, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("divergence", ["kl", "reverse_kl", "jsd"])
def test_rows_gradient_streamed_or_not(isa, dtype, divergence, streamed_outputs, rng):
    """The rows' gradient with non-temporal stores (any output size here) gives the bits of
    ordinary stores: rows of a length that is no multiple of a vector, written into buffers 0 to
    60 bytes past a cache line (a streamed row starts with a vector boundary of grad), and into
    the student logits themselves."""
    from aligned_arrays import line_offset_array

    rows, classes = 6, 203
    s = (rng.standard_normal((rows, classes)) * 3).astype(dtype)
    t = (rng.standard_normal((rows, classes)) * 3).astype(dtype)
    s[1, 5] = t[2, 7] = -np.inf
    y = rng.integers(0, classes, rows)
    y[3] = -100
    q = _probabilities(rng, (rows, classes), 1).astype(dtype)
    settings = [
        (y, dict(temperature=1.0)),
        (y, dict(temperature=2.0, label_smoothing=0.1, weight=rng.random(classes) + 0.5)),
        (q, dict(temperature=3.5)),
    ]
    for target, kw in settings:
        kw = dict(kw, divergence=divergence, reduction="none", return_grad=True,
                  grad_output=rng.standard_normal(rows).astype(dtype))
        with np.errstate(all="ignore"):
            streamed_outputs(False)
            want = fl.distillation_loss(s, t, target, **kw)
            streamed_outputs(True)
            for offset in (0, 4, 16, 60):
                buf = line_offset_array((rows, classes), dtype, offset)
                got = fl.distillation_loss(s, t, target, grad_out=buf, **kw)
                assert got.grad is buf
                np.testing.assert_array_equal(got.grad, want.grad)
                np.testing.assert_array_equal(got.loss, want.loss)
            x = s.copy()
            got = fl.distillation_loss(x, t, target, grad_out=x, **kw)
            np.testing.assert_array_equal(x, want.grad)


def test_half_precision_and_mixed_dtypes(rng):
    s = rng.standard_normal((6, 11)).astype(np.float16)
    t = rng.standard_normal((6, 11)).astype(np.float16)
    y = rng.integers(0, 11, 6)
    r = fl.distillation_loss(s, t, y, return_grad=True)
    assert r.grad.dtype == np.float16 and r.loss.dtype == np.float16
    want = fl.distillation_loss(s.astype(np.float32), t.astype(np.float32), y, return_grad=True)
    np.testing.assert_array_equal(r.grad, want.grad.astype(np.float16))


def test_bit_identical_across_threads(isa, rng):
    s = rng.standard_normal((1024, 300)).astype(np.float32)
    t = rng.standard_normal((1024, 300)).astype(np.float32)
    y = rng.integers(0, 300, 1024)
    before = fl.get_num_threads()
    try:
        for layout in (lambda a: a, lambda a: np.ascontiguousarray(a.T)):
            results = []
            for n in (1, 2):
                fl.set_num_threads(n)
                ax = 1 if layout(s).shape[1] == 300 else 0
                results.append(fl.distillation_loss(layout(s), layout(t), y, axis=ax, return_grad=True,
                                                    label_smoothing=0.1, temperature=3.0))
            np.testing.assert_array_equal(results[0].grad, results[1].grad)
            assert results[0].loss == results[1].loss
    finally:
        fl.set_num_threads(before)


def test_gradient_argument_errors():
    s, t = np.zeros((4, 5)), np.zeros((4, 5))
    y = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="only used with return_grad=True"):
        fl.distillation_loss(s, t, y, grad_out=np.empty_like(s))
    with pytest.raises(ValueError, match="only used with return_grad=True"):
        fl.distillation_loss(s, t, y, grad_output=2.0)
    with pytest.raises(ValueError, match=r"grad_out must have the input's shape \(4, 5\)"):
        fl.distillation_loss(s, t, y, return_grad=True, grad_out=np.empty((5, 4)))
    with pytest.raises(ValueError, match="grad_out must have the input's shape"):
        fl.distillation_loss(s, t, y, return_grad=True, grad_out=np.empty((4, 5), np.float32))
    with pytest.raises(TypeError, match="grad_out must be a numpy.ndarray"):
        fl.distillation_loss(s, t, y, return_grad=True, grad_out=[[0.0] * 5] * 4)
    with pytest.raises(ValueError, match=r"grad_output must have the loss's shape \(4,\)"):
        fl.distillation_loss(s, t, y, reduction="none", return_grad=True, grad_output=np.ones(3))
    with pytest.raises(ValueError, match="grad_output must be a number"):
        fl.distillation_loss(s, t, y, return_grad=True, grad_output=np.ones(4))
    r = fl.distillation_loss(s + 1 * np.arange(5), t, y, return_grad=True, grad_output=2.0)
    base = fl.distillation_loss(s + 1 * np.arange(5), t, y, return_grad=True)
    np.testing.assert_allclose(r.grad, 2 * base.grad)
    assert isinstance(r, fl.LossAndGrad)
    # the callable class stays forward-only
    assert not isinstance(fl.DistillationLoss()(s, t, y), fl.LossAndGrad)
