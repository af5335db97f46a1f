"""distillation_loss: every option against the float64 reference and the PyTorch expression."""

from __future__ import annotations

import itertools

import fastloss as fl
import numpy as np
import pytest
import reference as ref

TOL = {
    np.float32: {"rtol": 3e-5, "atol": 3e-5},
    np.float64: {"rtol": 1e-11, "atol": 1e-12},
}

# (input shape, axis); targets take the input's shape without the class axis.
SHAPES = [
    ((7,), None),  # (C) with a 0-d target
    ((9, 5), None),  # (N, C)
    ((6, 70), None),  # (N, C), more classes than one fold of the scalar ISA
    ((4, 37, 3), None),  # (N, C, d1): columns layout
    ((2, 6, 3, 5), None),  # (N, C, d1, d2)
    ((3, 4, 50), -1),  # (B, T, V) language-model logits
]


def _axis(shape, axis):
    return (1 if len(shape) >= 2 else 0) if axis is None else axis % len(shape)


def _case(rng, shape, axis, dtype, ignore=True):
    s = (rng.standard_normal(shape) * 3).astype(dtype)
    t = (rng.standard_normal(shape) * 3).astype(dtype)
    ax = _axis(shape, axis)
    C = shape[ax]
    t_idx = np.asarray(rng.integers(0, C, shape[:ax] + shape[ax + 1 :]))
    if ignore and t_idx.size > 1:
        t_idx.flat[:: max(1, t_idx.size // 3)] = -100
    return s, t, t_idx, C


def _probabilities(rng, shape, axis, dtype):
    ax = _axis(shape, axis)
    moved = np.moveaxis(np.empty(shape), ax, -1).shape
    q = rng.dirichlet(np.ones(moved[-1]), size=int(np.prod(moved[:-1]))).reshape(moved)
    return np.moveaxis(q, -1, ax).astype(dtype)


def _close(got, want, dtype):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, equal_nan=True, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", SHAPES)
def test_index_targets_every_option(isa, dtype, shape, axis, rng):
    s, t, y, C = _case(rng, shape, axis, dtype)
    w = rng.uniform(0.2, 2.0, C).astype(dtype)
    for weight, eps, reduction, (T, alpha) in itertools.product(
        [None, w], [0.0, 0.2], ["mean", "sum", "none"], [(2.0, 0.5), (1.0, 0.0), (4.5, 0.9)]
    ):
        got = fl.distillation_loss(
            s,
            t,
            y,
            temperature=T,
            alpha=alpha,
            reduction=reduction,
            weight=weight,
            label_smoothing=eps,
            axis=axis,
        )
        want = ref.distillation_loss(s, t, y, T, alpha, reduction, weight, -100, eps, axis)
        _close(got, want, dtype)
        assert np.asarray(got).dtype == dtype
        if reduction == "none":
            assert got.shape == y.shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", SHAPES)
def test_probability_targets_every_option(isa, dtype, shape, axis, rng):
    s, t, _, C = _case(rng, shape, axis, dtype)
    q = _probabilities(rng, shape, axis, dtype)
    w = rng.uniform(0.2, 2.0, C).astype(dtype)
    for weight, eps, reduction in itertools.product([None, w], [0.0, 0.3], ["mean", "sum", "none"]):
        got = fl.distillation_loss(
            s,
            t,
            q,
            temperature=3.0,
            alpha=0.3,
            reduction=reduction,
            weight=weight,
            label_smoothing=eps,
            axis=axis,
        )
        want = ref.distillation_loss(s, t, q, 3.0, 0.3, reduction, weight, -100, eps, axis)
        _close(got, want, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_the_torch_expression(isa, dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for shape in [(16, 33), (5, 7, 4)]:
        s, t, y, C = _case(rng, shape, None, dtype)
        w = rng.uniform(0.2, 2.0, C).astype(dtype)
        ts, tt, ty, tw = map(torch.from_numpy, (s, t, y, w))
        for T, alpha, eps, weight in itertools.product(
            [1.0, 2.0, 5.0], [0.0, 0.5, 1.0], [0.0, 0.1], [None, tw]
        ):
            want = alpha * F.cross_entropy(ts, ty, weight=weight, label_smoothing=eps) + (
                1 - alpha
            ) * T * T * F.kl_div(
                F.log_softmax(ts / T, 1), F.softmax(tt / T, 1), reduction="batchmean"
            )
            got = fl.distillation_loss(
                s,
                t,
                y,
                temperature=T,
                alpha=alpha,
                label_smoothing=eps,
                weight=None if weight is None else w,
            )
            _close(got, want.item(), dtype)
        # sum and none, as documented
        T, alpha = 2.0, 0.25
        kl = F.kl_div(F.log_softmax(ts / T, 1), F.softmax(tt / T, 1), reduction="none").sum(1)
        ce = F.cross_entropy(ts, ty, reduction="none")
        _close(
            fl.distillation_loss(s, t, y, temperature=T, alpha=alpha, reduction="none"),
            (alpha * ce + (1 - alpha) * T * T * kl).numpy(),
            dtype,
        )
        _close(
            fl.distillation_loss(s, t, y, temperature=T, alpha=alpha, reduction="sum"),
            (alpha * ce.sum() + (1 - alpha) * T * T * kl.sum()).item(),
            dtype,
        )
    # axis=-1 on (B, T, V) equals the torch expression on the flattened... batchmean divides by B
    s, t, y, _ = _case(rng, (3, 4, 20), -1, dtype)
    ts, tt = torch.from_numpy(s), torch.from_numpy(t)
    want = 0.5 * F.cross_entropy(ts.permute(0, 2, 1), torch.from_numpy(y)) + 0.5 * 4 * F.kl_div(
        F.log_softmax(ts / 2, -1), F.softmax(tt / 2, -1), reduction="batchmean"
    )
    _close(fl.distillation_loss(s, t, y, axis=-1), want.item(), dtype)


def test_identities(isa, rng):
    s, t, y, _ = _case(rng, (12, 40), None, np.float64)
    w = rng.uniform(0.5, 1.5, 40)
    for reduction in ["mean", "sum", "none"]:
        # alpha = 1: the cross-entropy alone
        np.testing.assert_allclose(
            fl.distillation_loss(
                s, t, y, alpha=1.0, weight=w, label_smoothing=0.1, reduction=reduction
            ),
            fl.cross_entropy(s, y, weight=w, label_smoothing=0.1, reduction=reduction),
            rtol=1e-12,
            atol=1e-13,
        )
    # T = 1, alpha = 0: the batchmean KL of the softmaxes
    np.testing.assert_allclose(
        fl.distillation_loss(s, t, y, temperature=1.0, alpha=0.0),
        ref.kl_div_batchmean_softmax(s, t),
        rtol=1e-12,
    )
    # identical student and teacher: KL is exactly 0
    assert fl.distillation_loss(s, s, y, alpha=0.0, reduction="sum") == 0.0


def test_infinite_logits_match_torch(isa):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    inf = np.inf
    cases = [
        ([[0.0, -inf, 1.0, 2.0]], [[1.0, 0.5, -inf, 0.0]], [0]),  # -inf in each, different classes
        ([[0.0, -inf, 1.0]], [[1.0, -inf, 0.0]], [0]),  # both -inf at one class: NaN (0 * -inf)
        ([[0.0, -inf, 1.0]], [[1.0, 0.0, 0.0]], [0]),  # student -inf where the teacher is not: inf
        ([[0.0, 1.0, 1.0]], [[-inf, -inf, -inf]], [0]),  # all -inf teacher: NaN
        ([[-inf, 1.0, 1.0]], [[0.0, 0.0, 0.0]], [0]),  # -inf at the target: inf
        # the teacher's probability underflows to 0 (finite logit): 0, or NaN under a -inf student
        ([[0.0, 1.0, 1.0]], [[-3000.0, 0.0, 0.0]], [1]),
        ([[-inf, 1.0, 1.0]], [[-3000.0, 0.0, 0.0]], [1]),
        # long rows: the same cases in a vector body and in a padded tail
        ([[0.0] * 37 + [-inf, 1.0]], [[1.0] * 37 + [-3000.0, 0.0]], [2]),
        ([[0.0] * 37 + [1.0, -inf]], [[1.0] * 37 + [0.0, 2.0]], [2]),
    ]
    for s, t, y in cases:
        s, t, y = np.array(s), np.array(t), np.array(y)
        for alpha, T in [(0.5, 2.0), (0.0, 1.0), (1.0, 3.0)]:
            ts, tt, ty = map(torch.from_numpy, (s, t, y))
            with np.errstate(all="ignore"):
                want = alpha * F.cross_entropy(ts, ty) + (1 - alpha) * T * T * F.kl_div(
                    F.log_softmax(ts / T, 1), F.softmax(tt / T, 1), reduction="batchmean"
                )
            got = fl.distillation_loss(s, t, y, alpha=alpha, temperature=T)
            np.testing.assert_allclose(got, want.item(), rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_rows_with_hidden_large_logits(isa, dtype):
    # A NaN hides the values before it from a running max (max returns its second operand for
    # NaN), so exponents in such a row can be large and positive: they must still be computed
    # safely (the scalar exp converts its exponent to an integer; UBSan checks that) and give NaN.
    s = np.zeros((2, 9), dtype)
    s[0, 0], s[0, 4] = np.inf, np.nan
    s[1, 0], s[1, 4] = 1e30, np.nan
    t = s[::-1].copy()
    y = np.array([1, 2])
    for temperature in (1.0, 2.0, 3.0):
        loss = fl.distillation_loss(s, t, y, temperature=temperature, reduction="none")
        assert np.isnan(loss).all()
        grad = fl.distillation_loss(s, t, y, temperature=temperature, return_grad=True).grad
        assert np.isnan(grad).any()
        # columns layout: the class axis strided
        loss = fl.distillation_loss(s.T.copy()[None], t.T.copy()[None], y[None], temperature=temperature,
                                    reduction="none")
        assert np.isnan(loss).all()


def test_infinite_logits_columns_layout(isa):
    # (N, C, d) with C on a strided axis: the columns kernel, checked against the reference
    inf = np.inf
    s = np.array([[[0.0, 1.0], [-inf, 2.0], [1.0, -inf]]])  # (1, 3, 2)
    t = np.array([[[1.0, -inf], [-inf, 0.0], [0.0, 3.0]]])
    y = np.array([[0, 1]])
    for alpha in [0.0, 0.5]:
        got = fl.distillation_loss(s, t, y, alpha=alpha, reduction="none")
        want = ref.distillation_loss(s, t, y, 2.0, alpha, "none")
        np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)


def test_empty_batch_and_all_ignored():
    s = np.zeros((0, 5))
    y = np.zeros(0, np.int64)
    assert np.isnan(fl.distillation_loss(s, s, y))
    assert fl.distillation_loss(s, s, y, reduction="sum") == 0.0
    assert fl.distillation_loss(s, s, y, reduction="none").shape == (0,)
    rng = np.random.default_rng(0)
    s, t = rng.standard_normal((2, 4, 6))
    ignored = np.full(4, -100)
    assert np.isnan(fl.distillation_loss(s, t, ignored))  # CE mean is 0/0, as in PyTorch
    soft = (1 - 0.5) * 4 * ref.kl_softmax_per_position(s, t, 2.0, 1)
    np.testing.assert_allclose(
        fl.distillation_loss(s, t, ignored, reduction="none"), soft, rtol=1e-12
    )
    np.testing.assert_allclose(
        fl.distillation_loss(s, t, ignored, reduction="sum"), soft.sum(), rtol=1e-12
    )


def test_layouts_and_input_untouched(isa, rng):
    base_s = rng.standard_normal((8, 24))
    base_t = rng.standard_normal((8, 24))
    y = rng.integers(0, 12, 8)
    for make in [
        lambda a: a[:, ::2],  # staged: no contiguous axis
        lambda a: np.asfortranarray(a[:, :12]),  # columns: positions contiguous
        lambda a: a[:, :12],
    ]:  # rows with a row stride
        s, t = make(base_s), make(base_t)
        before = (s.copy(), t.copy())
        for q_target in [False, True]:
            target = ref.softmax(rng.standard_normal((8, 12)), 1) if q_target else y
            got = fl.distillation_loss(s, t, target, label_smoothing=0.1, reduction="none")
            want = ref.distillation_loss(s, t, target, 2.0, 0.5, "none", None, -100, 0.1)
            np.testing.assert_allclose(got, want, rtol=1e-11)
        np.testing.assert_array_equal(s, before[0])
        np.testing.assert_array_equal(t, before[1])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_bit_identical_across_threads(isa, reduction, rng):
    s = rng.standard_normal((300, 500)).astype(np.float32)
    t = rng.standard_normal((300, 500)).astype(np.float32)
    y = rng.integers(0, 500, 300)
    previous = fl.get_num_threads()
    try:
        results = []
        for n in [1, 2]:
            fl.set_num_threads(n)
            results.append(fl.distillation_loss(s, t, y, reduction=reduction, label_smoothing=0.1))
    finally:
        fl.set_num_threads(previous)
    assert results[0].tobytes() == results[1].tobytes()


def test_half_precision_and_mixed_dtypes(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    s = rng.standard_normal((6, 9))
    t = rng.standard_normal((6, 9))
    y = rng.integers(0, 9, 6)
    for dtype in [np.float16, ml_dtypes.bfloat16]:
        got = fl.distillation_loss(s.astype(dtype), t.astype(dtype), y)
        assert got.dtype == dtype
        want = fl.distillation_loss(
            s.astype(dtype).astype(np.float32), t.astype(dtype).astype(np.float32), y
        )
        assert float(got) == pytest.approx(float(want), rel=1e-2)
    assert fl.distillation_loss(s.astype(np.float32), t, y).dtype == np.float64


def test_callable_class(rng):
    s, t, y, _ = _case(rng, (5, 8), None, np.float64)
    loss = fl.DistillationLoss(temperature=3.0, alpha=0.2, reduction="sum", label_smoothing=0.1)
    assert loss(s, t, y) == fl.distillation_loss(
        s, t, y, temperature=3.0, alpha=0.2, reduction="sum", label_smoothing=0.1
    )
    assert "temperature=3.0" in repr(loss)


def test_errors(rng):
    s, t, y, _ = _case(rng, (4, 6), None, np.float64)
    with pytest.raises(
        ValueError, match=r"student_logits has shape \(4, 6\) but teacher_logits has shape \(4, 5\)"
    ):
        fl.distillation_loss(s, t[:, :5], y)
    for bad in [0.0, -1.0, np.inf, np.nan]:
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            fl.distillation_loss(s, t, y, temperature=bad)
    for bad in [-0.1, 1.5, np.nan]:
        with pytest.raises(ValueError, match="alpha must be between 0.0 and 1.0"):
            fl.distillation_loss(s, t, y, alpha=bad)
    with pytest.raises(TypeError, match="temperature must be a real number"):
        fl.distillation_loss(s, t, y, temperature="hot")
    with pytest.raises(IndexError, match="Target 6 is out of bounds."):
        fl.distillation_loss(s, t, np.array([0, 6, 1, 7]))
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        fl.distillation_loss(s, t, y, reduction="batchmean")
    with pytest.raises(TypeError, match="class indices must be integers"):
        fl.distillation_loss(s, t, y.astype(np.float64))
    with pytest.raises(ValueError, match="target has shape"):
        fl.distillation_loss(s, t, y[:3])
    with pytest.raises(ValueError, match="label_smoothing"):
        fl.distillation_loss(s, t, y, label_smoothing=1.5)
    with pytest.raises(TypeError, match="student_logits must be a floating-point array"):
        fl.distillation_loss(s.astype(int), t, y)
    with pytest.raises(ValueError, match="ignore_index is not supported for probability targets"):
        fl.distillation_loss(s, t, ref.softmax(s, 1), ignore_index=0)


def test_no_classes_with_probability_targets_mean_is_nan():
    """Found by the fuzzer: as cross_entropy's (numel / C = 0 / 0), the mean CE term is NaN with
    no classes, so the loss is NaN for every alpha (PyTorch: alpha * NaN); it was 0."""
    e = np.zeros((1, 0), np.float32)
    for alpha in (0.0, 0.5, 1.0):
        assert np.isnan(fl.distillation_loss(e, e, e, alpha=alpha))
        r = fl.distillation_loss(e, e, e, alpha=alpha, return_grad=True)
        assert np.isnan(r.loss) and r.grad.shape == (1, 0)
    assert fl.distillation_loss(e, e, e, reduction="sum") == 0.0
