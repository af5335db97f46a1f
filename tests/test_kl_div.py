"""kl_div and KLDivLoss: every reduction and layout against the float64 reference and PyTorch."""

from __future__ import annotations

import fastloss as fl
import numpy as np
import pytest
import reference as ref

TOL = {
    np.float32: {"rtol": 2e-5, "atol": 2e-6},
    np.float64: {"rtol": 1e-11, "atol": 1e-13},
}
REDUCTIONS = ["none", "sum", "batchmean", "mean"]
MEAN_WARNING = r"reduction: 'mean' divides the total loss by both the batch size"


def _kl(*args, **kwargs):
    """fl.kl_div, expecting PyTorch's warning exactly when the reduction is 'mean'."""
    if kwargs.get("reduction", "mean") == "mean":
        with pytest.warns(UserWarning, match=MEAN_WARNING):
            return fl.kl_div(*args, **kwargs)
    return fl.kl_div(*args, **kwargs)


def _close(got, want, dtype):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, equal_nan=True, **TOL[dtype])


def _pair(rng, shape, dtype, zeros=True):
    """Log-probabilities and probabilities (some exactly 0) along the last axis."""
    x = np.log(rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])).astype(dtype)
    t = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]).astype(dtype)
    if zeros:
        t.reshape(-1)[::7] = 0
    return x, t


SHAPES = [(11,), (9, 5), (4, 37, 3), (2, 3, 4, 33), (3, 1000)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_reduction(isa, dtype, shape, rng):
    x, t = _pair(rng, shape, dtype)
    for log_target in (False, True):
        tt = np.log(t + dtype(0.01)).astype(dtype) if log_target else t
        for reduction in REDUCTIONS:
            got = _kl(x, tt, reduction=reduction, log_target=log_target)
            _close(got, ref.kl_div(x, tt, reduction, log_target), dtype)
            assert np.asarray(got).dtype == dtype
            if reduction == "none":
                assert got.shape == shape
            else:
                assert isinstance(got, dtype)


def test_batchmean_divides_by_the_first_dimension(rng):
    x, t = _pair(rng, (6, 10), np.float64)
    total = fl.kl_div(x, t, reduction="sum")
    assert fl.kl_div(x, t, reduction="batchmean") == pytest.approx(total / 6, rel=1e-14)
    # 1-D: the first dimension is every element, so batchmean equals mean
    x1, t1 = x[0], t[0]
    mean = _kl(x1, t1, reduction="mean")
    assert fl.kl_div(x1, t1, reduction="batchmean") == pytest.approx(mean, rel=1e-14)
    # 0-d input: PyTorch returns the sum
    assert fl.kl_div(x[0, 0], t[0, 0], reduction="batchmean") == pytest.approx(
        ref.kl_div(x[0, 0], t[0, 0], "sum"), rel=1e-14
    )


@pytest.mark.parametrize(
    "xshape,tshape",
    [((8, 5), (5,)), ((5,), (8, 5)), ((1, 5), (8, 5)), ((8, 1), (8, 5)), ((4, 1, 6), (3, 1))],
)
def test_input_and_target_broadcast(isa, xshape, tshape, rng):
    x = rng.standard_normal(xshape) - 3
    t = rng.random(tshape)
    shape = np.broadcast_shapes(xshape, tshape)
    for reduction in REDUCTIONS:
        got = _kl(x, t, reduction=reduction)
        want = ref.kl_div(np.broadcast_to(x, shape), np.broadcast_to(t, shape), reduction)
        if reduction == "batchmean":  # divides by the input's first dimension, not the broadcast's
            want = (
                ref.kl_div(np.broadcast_to(x, shape), np.broadcast_to(t, shape), "sum") / xshape[0]
            )
        _close(got, want, np.float64)
        if reduction == "none":
            assert got.shape == shape


def test_edge_values(isa):
    inf, nan = np.inf, np.nan
    for dtype in (np.float32, np.float64):
        x = np.array([-1.0, -inf, -inf, -2.0, -1.0, nan, 0.0], dtype)
        t = np.array([0.0, 0.0, 0.5, -0.1, nan, 0.0, 1.0], dtype)
        got = fl.kl_div(x, t, reduction="none")
        # t = 0 gives 0 unless input is -inf or NaN; t < 0 is NaN; -inf input with t > 0 is +inf
        np.testing.assert_array_equal(got, np.array([0.0, nan, inf, nan, nan, nan, 0.0], dtype))
        _close(got, ref.kl_div(x, t, "none"), dtype)
        lt = fl.kl_div(
            np.array([0.0, -inf, 1.0], dtype),
            np.array([-inf, -inf, 0.0], dtype),
            reduction="none",
            log_target=True,
        )
        np.testing.assert_array_equal(lt, np.array([nan, nan, -1.0], dtype))
        assert np.isnan(fl.kl_div(x, t, reduction="sum"))


def test_empty_batch():
    x = np.zeros((0, 4), np.float32)
    assert np.isnan(_kl(x, x, reduction="mean"))
    assert np.isnan(fl.kl_div(x, x, reduction="batchmean"))
    assert fl.kl_div(x, x, reduction="sum") == 0.0
    none = fl.kl_div(x, x, reduction="none")
    assert none.shape == (0, 4) and none.dtype == np.float32


def test_layouts_readonly_and_inputs_untouched(isa, rng):
    x, t = _pair(rng, (40, 70), np.float64)
    x.flags.writeable = False
    t_copy, x_copy = t.copy(), x.copy()
    views = [
        (x[:, ::3], t[:, ::3]),  # strided rows
        (x.T, t.T),  # transposed: row stride > 1
        (x[::2], t[::2]),
        (np.asfortranarray(x), t),  # different layouts per operand
        (x[::-1, ::-1], t),  # negative strides
    ]
    for a, b in views:
        for reduction in ("none", "sum"):
            _close(fl.kl_div(a, b, reduction=reduction), ref.kl_div(a, b, reduction), np.float64)
    # a zero-stride target read as it is
    row = t[0]
    _close(
        fl.kl_div(x, np.broadcast_to(row, x.shape), reduction="sum"),
        ref.kl_div(x, row, "sum"),
        np.float64,
    )
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(t, t_copy)


@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("reduction", ["sum", "batchmean"])
def test_bit_identical_across_threads(isa, reduction, log_target, rng):
    x, t = _pair(rng, (300, 2000), np.float32)
    results = []
    for threads in (1, 2):
        previous = fl.get_num_threads()
        fl.set_num_threads(threads)
        try:
            results.append(fl.kl_div(x, t, reduction=reduction, log_target=log_target))
        finally:
            fl.set_num_threads(previous)
    assert results[0].tobytes() == results[1].tobytes()


def test_half_precision(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x, t = _pair(rng, (16, 20), np.float32, zeros=False)
    for half in (np.float16, ml_dtypes.bfloat16):
        xh, th = x.astype(half), t.astype(half)
        got = fl.kl_div(xh, th, reduction="sum")
        assert got.dtype == half
        want = fl.kl_div(xh.astype(np.float32), th.astype(np.float32), reduction="sum")
        assert float(got) == pytest.approx(float(want), rel=1e-2)
        assert fl.kl_div(xh, th, reduction="none").dtype == half


def test_class_and_errors(rng):
    x, t = _pair(rng, (4, 6), np.float64)
    loss = fl.KLDivLoss(reduction="batchmean", log_target=False)
    assert loss(x, t) == fl.kl_div(x, t, reduction="batchmean")
    assert "batchmean" in repr(loss)
    with pytest.warns(UserWarning, match=MEAN_WARNING):
        fl.KLDivLoss()(x, t)
    with pytest.raises(ValueError, match="'avg' is not a valid value for reduction"):
        fl.kl_div(x, t, reduction="avg")
    with pytest.raises(TypeError, match="input must be a floating-point array"):
        fl.kl_div(np.zeros((4, 6), np.int64), t, reduction="sum")
    with pytest.raises(TypeError, match="target must be a floating-point array"):
        fl.kl_div(x, np.zeros((4, 6), np.int32), reduction="sum")
    with pytest.raises(ValueError, match=r"input of shape \(4, 6\) and target of shape \(5,\)"):
        fl.kl_div(x, np.ones(5), reduction="sum")


def test_warning_text_is_pytorchs():
    x = np.zeros(3)
    with pytest.warns(UserWarning) as record:
        fl.kl_div(x, x)
    assert str(record[0].message) == (
        "reduction: 'mean' divides the total loss by both the batch size and the support size."
        "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
        "'mean' will be changed to behave the same as 'batchmean' in the next major release."
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_torch(isa, dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, t = _pair(rng, (7, 3, 40), dtype)
    x.reshape(-1)[5] = -np.inf  # with t = 0 there: NaN in both
    t.reshape(-1)[5] = 0
    lt = np.log(t + dtype(1e-3)).astype(dtype)
    for reduction in REDUCTIONS:
        for log_target, target in ((False, t), (True, lt)):
            if reduction == "mean":
                with pytest.warns(UserWarning):
                    want = F.kl_div(
                        torch.from_numpy(x), torch.from_numpy(target), log_target=log_target
                    )
            else:
                want = F.kl_div(
                    torch.from_numpy(x),
                    torch.from_numpy(target),
                    reduction=reduction,
                    log_target=log_target,
                )
            got = _kl(x, target, reduction=reduction, log_target=log_target)
            np.testing.assert_allclose(
                np.asarray(got, np.float64), want.double().numpy(), equal_nan=True, **TOL[dtype]
            )
    # broadcasting and batchmean's divisor: the input's first dimension
    xb, tb = x[0, 0], t[:, 0]  # (40,) against (7, 40)
    want = F.kl_div(torch.from_numpy(xb), torch.from_numpy(tb), reduction="batchmean")
    np.testing.assert_allclose(
        fl.kl_div(xb, tb, reduction="batchmean"), want.numpy(), equal_nan=True, **TOL[dtype]
    )
