"""cross_entropy and nll_loss: every option against the float64 reference and PyTorch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import fastloss as fl
import reference as ref
from fastloss._validation import AxisError  # NumPy's, wherever this NumPy keeps it

TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-11, atol=1e-12)}

# (input shape, axis); targets take the input's shape without the class axis.
SHAPES = [
    ((7,), None),  # (C) with a 0-d target
    ((9, 5), None),  # (N, C)
    ((4, 37, 3), None),  # (N, C, d1): columns layout
    ((2, 6, 3, 5), None),  # (N, C, d1, d2)
    ((3, 4, 50), -1),  # (B, T, V) language-model logits
    ((5, 3, 20), 2),
]


def _case(rng, shape, axis, dtype, ignore=True):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    ax = (1 if len(shape) >= 2 else 0) if axis is None else axis % len(shape)
    C = shape[ax]
    tshape = shape[:ax] + shape[ax + 1 :]
    t = rng.integers(0, C, tshape)
    if ignore and t.size > 1:
        t.flat[:: max(1, t.size // 3)] = -100
    return x, np.asarray(t), C


def _close(got, want, dtype):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, equal_nan=True, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", SHAPES)
def test_index_targets_every_option(isa, dtype, shape, axis, rng):
    x, t, C = _case(rng, shape, axis, dtype)
    w = rng.uniform(0.2, 2.0, C).astype(dtype)
    for weight, eps, reduction in itertools.product([None, w], [0.0, 0.25, 1.0], ["mean", "sum", "none"]):
        got = fl.cross_entropy(x, t, weight=weight, label_smoothing=eps, reduction=reduction, axis=axis)
        want = ref.cross_entropy(x, t, weight, -100, reduction, eps, axis)
        _close(got, want, dtype)
        assert np.asarray(got).dtype == dtype
        if reduction == "none":
            assert got.shape == t.shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", SHAPES)
def test_probability_targets_every_option(isa, dtype, shape, axis, rng):
    x, _, C = _case(rng, shape, axis, dtype)
    ax = (1 if len(shape) >= 2 else 0) if axis is None else axis
    q = rng.dirichlet(np.ones(C), size=x.size // C)  # (positions, C)
    q = np.moveaxis(q.reshape(np.moveaxis(x, ax, -1).shape), -1, ax).astype(dtype)
    w = rng.uniform(0.2, 2.0, C).astype(dtype)
    for weight, eps, reduction in itertools.product([None, w], [0.0, 0.3], ["mean", "sum", "none"]):
        got = fl.cross_entropy(x, q, weight=weight, label_smoothing=eps, reduction=reduction, axis=axis)
        _close(got, ref.cross_entropy(x, q, weight, -100, reduction, eps, axis), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", SHAPES)
def test_nll_loss(isa, dtype, shape, axis, rng):
    x, t, C = _case(rng, shape, axis, dtype)
    lp = fl.log_softmax(x, (1 if len(shape) >= 2 else 0) if axis is None else axis)
    w = rng.uniform(0.2, 2.0, C).astype(dtype)
    for weight, reduction in itertools.product([None, w], ["mean", "sum", "none"]):
        got = fl.nll_loss(lp, t, weight=weight, reduction=reduction, axis=axis)
        _close(got, ref.nll_loss(lp, t, weight, -100, reduction, axis), dtype)
        # cross_entropy is nll_loss of log_softmax
        _close(got, fl.cross_entropy(x, t, weight=weight, reduction=reduction, axis=axis), dtype)


def test_nll_loss_ignored_positions_are_not_read(isa):
    # NaN and inf in ignored rows, the first element of the array included (an ignored
    # position must not be gathered from anywhere), do not leak; in every layout.
    x = np.full((6, 5), np.nan)
    x[:, 0] = np.inf
    t = np.full(6, -100)
    t[[2, 4]] = [3, 1]
    x[2, 3], x[4, 1] = -1.5, -2.5
    for xv, tv, axis in [(x, t, None), (x.T.copy(), t, 0), (x[::-1], t[::-1], None), (x[None], t[None], -1)]:
        want = np.where(tv == 3, 1.5, np.where(tv == 1, 2.5, 0.0))
        np.testing.assert_array_equal(fl.nll_loss(xv, tv, reduction="none", axis=axis), want)
        assert fl.nll_loss(xv, tv, reduction="sum", axis=axis) == 4.0
        assert fl.nll_loss(xv, tv, axis=axis) == 2.0
        assert np.isnan(fl.nll_loss(xv, np.full_like(tv, -100), axis=axis))  # all ignored: mean is NaN


@pytest.mark.parametrize(
    "tdtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
)
def test_every_integer_target_dtype(tdtype, rng):
    x = rng.standard_normal((10, 6))
    t = rng.integers(0, 6, 10)
    want = ref.cross_entropy(x, t)
    _close(fl.cross_entropy(x, t.astype(tdtype)), want, np.float64)
    _close(fl.nll_loss(x, t.astype(tdtype)), ref.nll_loss(x, t), np.float64)
    # uint8 with ignore_index=255, as PyTorch allows
    t8 = t.astype(np.uint8)
    t8[0] = 255
    _close(fl.cross_entropy(x, t8, ignore_index=255), ref.cross_entropy(x, t8.astype(int), ignore_index=255), np.float64)


def test_all_targets_ignored_and_empty_batch():
    x = np.ones((3, 4), np.float32)
    t = np.full(3, -100)
    assert np.isnan(fl.cross_entropy(x, t))
    assert fl.cross_entropy(x, t, reduction="sum") == 0.0
    np.testing.assert_array_equal(fl.cross_entropy(x, t, reduction="none"), np.zeros(3))
    assert np.isnan(fl.nll_loss(x, t))
    empty = np.empty((0, 4), np.float32)
    assert np.isnan(fl.cross_entropy(empty, np.empty(0, np.int64)))
    assert fl.cross_entropy(empty, np.empty(0, np.int64), reduction="sum") == 0.0
    assert fl.cross_entropy(empty, np.empty(0, np.int64), reduction="none").shape == (0,)
    assert np.isnan(fl.cross_entropy(empty, np.empty((0, 4), np.float32)))


def test_zero_weights_give_nan_mean():
    x = np.ones((3, 4))
    assert np.isnan(fl.cross_entropy(x, np.array([0, 1, 2]), weight=np.zeros(4)))


def test_nonfinite_logits(isa):
    x = np.array([[0.0, -np.inf, 1.0], [np.nan, np.inf, 2.0], [-np.inf, 0.0, 0.0]])
    t = np.array([0, -100, 1])
    per = fl.cross_entropy(x, t, reduction="none")
    _close(per, ref.cross_entropy(x, t, reduction="none"), np.float64)
    assert np.isfinite(per).all()  # NaN/inf in the ignored row do not leak; -inf non-target is fine
    assert np.isfinite(fl.cross_entropy(x, t))
    assert fl.cross_entropy(x[2:], np.array([0])) == np.inf  # -inf at the target
    assert fl.cross_entropy(x[:1], np.array([0]), label_smoothing=0.1) == np.inf  # any -inf with eps
    assert np.isnan(fl.cross_entropy(np.full((1, 3), -np.inf), np.array([0])))
    # columns layout too
    _close(fl.cross_entropy(x.T.copy(), t, axis=0, reduction="none"), per, np.float64)


def test_huge_logits_and_ignore_index_as_a_class(isa):
    x = np.array([[1e4, 0.0, -1e4], [3e4, 3e4 + 1.0, 3e4 - 1.0]], np.float32)
    t = np.array([1, 2])
    _close(fl.cross_entropy(x, t, reduction="none"), ref.cross_entropy(x, t, reduction="none"), np.float32)
    # ignore_index that is a real class: those rows are skipped, the class still counts in the softmax
    x = np.random.default_rng(1).standard_normal((6, 4))
    t = np.array([0, 1, 2, 3, 1, 1])
    _close(fl.cross_entropy(x, t, ignore_index=1), ref.cross_entropy(x, t, ignore_index=1), np.float64)


def test_layouts_and_strided_targets(isa, rng):
    base = rng.standard_normal((8, 12, 30))
    t = rng.integers(0, 30, (12, 8)).T  # strided targets
    for x in [base, np.asfortranarray(base), base[:, :, ::-1].copy(), base.transpose(0, 1, 2)]:
        _close(fl.cross_entropy(x, t, axis=-1), ref.cross_entropy(x, t, axis=-1), np.float64)
    xt = base.transpose(2, 0, 1)  # class axis first and strided: staged rows
    _close(fl.cross_entropy(xt, t, axis=0, reduction="none"), ref.cross_entropy(xt, t, axis=0, reduction="none"), np.float64)
    q = rng.dirichlet(np.ones(30), (8, 12))
    _close(fl.cross_entropy(base[:, :, :], q, axis=-1), ref.cross_entropy(base, q, axis=-1), np.float64)
    _close(fl.cross_entropy(xt, q.transpose(2, 0, 1), axis=0), ref.cross_entropy(xt, q.transpose(2, 0, 1), axis=0), np.float64)
    ro = base.copy()
    ro.flags.writeable = False
    before = ro.copy()
    fl.cross_entropy(ro, t, axis=-1)
    np.testing.assert_array_equal(ro, before)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bit_identical_across_threads(isa, reduction, rng):
    x = rng.standard_normal((2048, 300)).astype(np.float32)
    t = rng.integers(0, 300, 2048)
    before = fl.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            fl.set_num_threads(n)
            results.append(fl.cross_entropy(x, t, reduction=reduction, label_smoothing=0.1))
            results.append(fl.cross_entropy(x.reshape(64, 32, 300).transpose(0, 2, 1), t.reshape(64, 32), reduction=reduction))
        np.testing.assert_array_equal(results[0], results[2])
        np.testing.assert_array_equal(results[1], results[3])
    finally:
        fl.set_num_threads(before)


def test_half_precision_input(rng):
    x = rng.standard_normal((5, 7)).astype(np.float16)
    t = rng.integers(0, 7, 5)
    got = fl.cross_entropy(x, t)
    assert got.dtype == np.float16
    np.testing.assert_allclose(float(got), ref.cross_entropy(x, t), rtol=2e-3)


def test_callable_classes(rng):
    x = rng.standard_normal((6, 5))
    t = rng.integers(0, 5, 6)
    w = rng.uniform(0.5, 1.5, 5)
    loss = fl.CrossEntropyLoss(weight=w, label_smoothing=0.1, reduction="sum")
    _close(loss(x, t), ref.cross_entropy(x, t, w, reduction="sum", label_smoothing=0.1), np.float64)
    _close(fl.NLLLoss(reduction="none")(x, t), ref.nll_loss(x, t, reduction="none"), np.float64)
    _close(fl.Softmax(axis=0)(x), ref.softmax(x, 0), np.float64)
    _close(fl.LogSoftmax()(x), ref.log_softmax(x, -1), np.float64)
    assert "label_smoothing=0.1" in repr(loss)


# --- errors -----------------------------------------------------------------------------------


def test_target_out_of_range_names_first_bad_value():
    x = np.zeros((4, 5), np.float32)
    with pytest.raises(IndexError, match=r"^Target 5 is out of bounds\.$"):
        fl.cross_entropy(x, np.array([0, 5, 7, 1]))
    with pytest.raises(IndexError, match=r"Target -1 is out of bounds\."):
        fl.cross_entropy(x, np.array([0, 1, -1, 9]))
    with pytest.raises(IndexError, match=r"Target 5 is out of bounds\."):
        fl.nll_loss(x, np.array([5, 0, 0, 0], np.uint8))
    with pytest.raises(IndexError, match=r"Target 18446744073709551615 is out of bounds\."):
        fl.cross_entropy(x, np.array([0, 2**64 - 1, 0, 0], np.uint64))
    with pytest.raises(IndexError, match="out of bounds"):
        fl.cross_entropy(x.reshape(4, 5, 1), np.array([[0], [1], [6], [0]]))  # columns layout


def test_shape_and_dtype_errors():
    x = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"target has shape \(3,\), expected \(4,\)"):
        fl.cross_entropy(x, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"weight must have shape \(5,\).*got shape \(4,\)"):
        fl.cross_entropy(x, np.zeros(4, np.int64), weight=np.ones(4))
    with pytest.raises(TypeError, match="weight must be a floating-point array"):
        fl.cross_entropy(x, np.zeros(4, np.int64), weight=np.ones(5, np.int64))
    with pytest.raises(ValueError, match="'avg' is not a valid value for reduction"):
        fl.cross_entropy(x, np.zeros(4, np.int64), reduction="avg")
    # not a string at all: the same clear error (the C++ fast path must not see it)
    for f in (fl.cross_entropy, fl.nll_loss):
        for bad in (None, 1, b"mean"):
            with pytest.raises(ValueError, match="is not a valid value for reduction"):
                f(x, np.zeros(4, np.int64), reduction=bad)
    for eps in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0"):
            fl.cross_entropy(x, np.zeros(4, np.int64), label_smoothing=eps)
    with pytest.raises(ValueError, match="ignore_index is not supported for probability targets"):
        fl.cross_entropy(x, np.full((4, 5), 0.2, np.float32), ignore_index=0)
    with pytest.raises(TypeError, match="input must be a floating-point array"):
        fl.cross_entropy(np.zeros((4, 5), np.int64), np.zeros(4, np.int64))
    with pytest.raises(TypeError, match="class indices must be integers"):
        fl.cross_entropy(x, np.array([0.0, 1.0, 2.0, np.nan]))
    with pytest.raises(TypeError, match="target must be an integer array"):
        fl.nll_loss(x, np.zeros((4,), np.float32))
    with pytest.raises(ValueError, match="probabilities must have the input's shape"):
        fl.cross_entropy(x, np.zeros((4, 4), np.float32))
    with pytest.raises(AxisError):
        fl.cross_entropy(x, np.zeros(4, np.int64), axis=2)
    with pytest.raises(ValueError, match="at least one dimension"):
        fl.cross_entropy(np.float32(1.0), np.int64(0))
    with pytest.raises(TypeError, match="ignore_index must be an integer"):
        fl.cross_entropy(x, np.zeros(4, np.int64), ignore_index=1.5)


# --- PyTorch parity ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_torch(isa, dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    tol = dict(rtol=1.3e-6, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-7, atol=1e-7)
    for shape, axis in SHAPES[:4]:
        x, t, C = _case(rng, shape, axis, dtype)
        w = rng.uniform(0.2, 2.0, C).astype(dtype)
        tx, tt, tw = torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(w)
        for use_w, eps, reduction in itertools.product([False, True], [0.0, 0.2], ["mean", "sum", "none"]):
            got = fl.cross_entropy(x, t, weight=w if use_w else None, label_smoothing=eps, reduction=reduction)
            want = F.cross_entropy(tx, tt, weight=tw if use_w else None, label_smoothing=eps, reduction=reduction)
            np.testing.assert_allclose(got, want.numpy(), **tol)
            got = fl.nll_loss(x, t, weight=w if use_w else None, reduction=reduction)
            want = F.nll_loss(tx, tt, weight=tw if use_w else None, reduction=reduction)
            np.testing.assert_allclose(got, want.numpy(), **tol)
        q = np.abs(rng.standard_normal(x.shape)).astype(dtype)
        for eps in (0.0, 0.1):
            got = fl.cross_entropy(x, q, weight=w, label_smoothing=eps)
            want = F.cross_entropy(tx, torch.from_numpy(q), weight=tw, label_smoothing=eps)
            np.testing.assert_allclose(got, want.numpy(), **tol)
    # all ignored, empty
    tx = torch.zeros((3, 4), dtype=torch.float64)
    assert np.isnan(F.cross_entropy(tx, torch.full((3,), -100)).item())
    assert np.isnan(fl.cross_entropy(tx.numpy(), np.full(3, -100)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("classes", [1, 2, 7, 10, 15, 16, 17, 31])
def test_few_classes_many_rows(isa, dtype, classes, rng):
    """Rows processed W at a time, one per vector lane (and the leftover rows one by one)."""
    x = (rng.standard_normal((75, classes)) * 4).astype(dtype)
    x[3, 0] = -np.inf
    x[5, :] = -np.inf
    x[7, -1] = np.inf
    x[9, 0] = np.nan
    t = rng.integers(0, classes, 75)
    t[11] = -100
    x[11, :] = np.nan  # ignored: must not leak
    for view_x, view_t in [(x, t), (x[::-1], t[::-1]), (x[::2], t[::2])]:
        got = fl.cross_entropy(view_x, view_t, reduction="none")
        _close(got, ref.cross_entropy(view_x, view_t, reduction="none"), dtype)
        _close(fl.cross_entropy(view_x, view_t), ref.cross_entropy(view_x, view_t), dtype)
        _close(fl.logsumexp(view_x, 1), ref.logsumexp(view_x, 1), dtype)


def test_no_classes_gives_empty_sums_not_uninitialised_memory():
    # Found by the fuzzer (tests/test_fuzz_classification.py): with C == 0 the kernels were
    # skipped and reduction="none" returned np.empty's contents; the probability-target mean was
    # 0 where torch gives NaN.
    for target in (np.empty((3, 0)), np.full(3, -100)):
        for _ in range(3):  # fresh np.empty memory is often zero: dirty the allocator first
            np.full((3,), 7.5)
            per = fl.cross_entropy(np.empty((3, 0)), target, reduction="none", label_smoothing=0.1)
            np.testing.assert_array_equal(per, [0.0, 0.0, 0.0])
        assert fl.cross_entropy(np.empty((3, 0)), target, reduction="sum") == 0.0
        assert np.isnan(fl.cross_entropy(np.empty((3, 0)), target))
    assert fl.cross_entropy(np.empty(0), np.empty(0), reduction="none") == 0.0


def test_misaligned_class_weights_are_copied_not_read_misaligned(rng):
    # A contiguous but misaligned float32 weight (found by the fuzzer under UBSan: the kernels
    # read weight[y] as a float, which must be aligned).
    x = rng.standard_normal((6, 5)).astype(np.float32)
    y = rng.integers(0, 5, 6)
    w = rng.random(5).astype(np.float32)
    raw = np.zeros(w.nbytes + 1, np.uint8)
    misaligned = raw[1:].view(np.float32)
    misaligned[...] = w
    assert not misaligned.flags.aligned
    for loss in (fl.cross_entropy, fl.nll_loss):
        assert loss(x, y, weight=misaligned) == loss(x, y, weight=w)
    assert fl.distillation_loss(x, x[::-1], y, weight=misaligned) == fl.distillation_loss(
        x, x[::-1], y, weight=w
    )


def test_misaligned_grad_out_receives_the_gradient(rng):
    # Kernels store whole aligned elements: a misaligned grad_out is filled through a temporary
    # (found by the fuzzer under UBSan).
    x = rng.standard_normal((6, 5))
    y = rng.integers(0, 5, 6)
    raw = np.zeros(x.nbytes + 1, np.uint8)
    grad_out = raw[1:].view(np.float64).reshape(x.shape)
    assert not grad_out.flags.aligned
    want = fl.cross_entropy(x, y, return_grad=True)
    got = fl.cross_entropy(x, y, return_grad=True, grad_out=grad_out)
    assert got.grad is grad_out
    np.testing.assert_array_equal(grad_out, want.grad)
    got = fl.kl_div(x, np.abs(x), reduction="sum", return_grad=True, grad_out=grad_out)
    assert got.grad is grad_out


@pytest.mark.parametrize("loss", [fl.cross_entropy, fl.nll_loss])
def test_the_common_call_and_the_general_path_take_the_same_axes(loss):
    # The common (N, C) call is recognised in C++ alone; an axis it does not take as it is goes
    # the one general way: a float -1.0 is a TypeError there too, a NumPy integer is an axis.
    x = np.log(np.full((4, 3), 1 / 3, dtype=np.float32))
    y = np.array([0, 1, 2, 1])
    with pytest.raises(TypeError, match="axis must be an integer"):
        loss(x, y, axis=-1.0)
    assert loss(x, y, axis=np.int64(-1)) == loss(x, y)
    general = loss(x, y, axis=np.int64(-1), return_grad=True)
    assert general.grad.tolist() == loss(x, y, return_grad=True).grad.tolist()
