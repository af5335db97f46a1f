"""binary_cross_entropy(_with_logits), BCELoss, BCEWithLogitsLoss: reductions, weight and
pos_weight broadcasting, edge values, errors, layouts, threads, and PyTorch parity."""

from __future__ import annotations

import fastloss as fl
import numpy as np
import pytest
import reference as ref

TOL = {
    np.float32: {"rtol": 2e-5, "atol": 2e-6},
    np.float64: {"rtol": 1e-11, "atol": 1e-13},
}
REDUCTIONS = ["none", "sum", "mean"]
SHAPES = [(13,), (9, 5), (4, 37, 3), (2, 3, 4, 33), (3, 1000)]


def _close(got, want, dtype):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, equal_nan=True, **TOL[dtype])


def _probabilities(rng, shape, dtype):
    p = rng.uniform(0.001, 0.999, shape).astype(dtype)
    y = rng.random(shape).astype(dtype)
    return p, y


def _weights(rng, shape, dtype):
    """weight shapes that broadcast to `shape`: none, per class (last axis), per sample, full."""
    yield None
    yield rng.uniform(0.2, 2, shape[-1:]).astype(dtype)
    if len(shape) >= 2:
        yield rng.uniform(0.2, 2, shape[:1] + (1,) * (len(shape) - 1)).astype(dtype)
    yield rng.uniform(0.2, 2, shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_bce_every_option(isa, dtype, shape, rng):
    p, y = _probabilities(rng, shape, dtype)
    for w in _weights(rng, shape, dtype):
        for reduction in REDUCTIONS:
            got = fl.binary_cross_entropy(p, y, weight=w, reduction=reduction)
            _close(got, ref.binary_cross_entropy(p, y, w, reduction), dtype)
            assert np.asarray(got).dtype == dtype
            if reduction == "none":
                assert got.shape == shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_with_logits_every_option(isa, dtype, shape, rng):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    y = rng.random(shape).astype(dtype)
    pos_weights = [None, rng.uniform(0.5, 3, shape[-1:]).astype(dtype)]
    if len(shape) >= 2:
        pos_weights.append(rng.uniform(0.5, 3, shape[:1] + (1,) * (len(shape) - 1)).astype(dtype))
    for w in _weights(rng, shape, dtype):
        for pw in pos_weights:
            for reduction in REDUCTIONS:
                got = fl.binary_cross_entropy_with_logits(
                    x, y, weight=w, pos_weight=pw, reduction=reduction
                )
                _close(got, ref.binary_cross_entropy_with_logits(x, y, w, pw, reduction), dtype)
                assert np.asarray(got).dtype == dtype


def test_pos_weight_on_channels_needs_trailing_ones(isa, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    y = rng.random((2, 3, 4, 5))
    pw = np.array([1.0, 2.0, 3.0])
    got = fl.binary_cross_entropy_with_logits(x, y, pos_weight=pw.reshape(3, 1, 1), reduction="sum")
    _close(
        got,
        ref.binary_cross_entropy_with_logits(x, y, None, pw.reshape(3, 1, 1), "sum"),
        np.float64,
    )
    # PyTorch's failure case: a (C,) pos_weight aligns with the last axis (5), not the channels
    with pytest.raises(
        ValueError,
        match=r"pos_weight of shape \(3,\) cannot be broadcast to the input shape \(2, 3, 4, 5\)",
    ):
        fl.binary_cross_entropy_with_logits(x, y, pos_weight=pw)
    with pytest.raises(ValueError, match=r"weight of shape \(2,\) cannot be broadcast"):
        fl.binary_cross_entropy(np.full((2, 3), 0.5), np.full((2, 3), 0.5), weight=np.ones(2))


def test_bce_clamps_logs_at_minus_100(isa):
    for dtype in (np.float32, np.float64):
        p = np.array([0.0, 1.0, 0.0, 1.0, 0.5], dtype)
        y = np.array([1.0, 0.0, 0.0, 1.0, 0.5], dtype)
        got = fl.binary_cross_entropy(p, y, reduction="none")
        np.testing.assert_allclose(got, [100.0, 100.0, 0.0, 0.0, np.log(2)], rtol=1e-6)
        assert got[0] == 100.0 and got[1] == 100.0


def test_with_logits_extremes(isa):
    for dtype in (np.float32, np.float64):
        x = np.array([1000.0, -1000.0, 1000.0, -1000.0, 50.0, -50.0, 0.0], dtype)
        y = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.5], dtype)
        got = fl.binary_cross_entropy_with_logits(x, y, reduction="none")
        assert np.all(np.isfinite(got))
        assert got[0] == 1000.0 and got[1] == 1000.0 and got[2] == 0.0 and got[3] == 0.0
        # exp(-50) = 1.93e-22: a log(1 + e) without log1p would give 0 here
        np.testing.assert_allclose(got[4], np.exp(-50.0), rtol=4 * np.finfo(dtype).eps)
        assert got[5] == 0.0  # (1 - y) x + softplus(-x) = -50 + 50: cancels, in PyTorch too
        assert got[6] == pytest.approx(np.log(2.0), rel=1e-6)
        # the target is not range-checked
        out = fl.binary_cross_entropy_with_logits(x[:1], np.array([2.0], dtype), reduction="none")
        np.testing.assert_allclose(
            out, ref.binary_cross_entropy_with_logits(x[:1], [2.0], reduction="none")
        )
        nan = fl.binary_cross_entropy_with_logits(np.array([np.nan], dtype), np.array([1.0], dtype))
        assert np.isnan(nan)


def test_with_logits_equals_bce_of_sigmoid(isa, rng):
    x = rng.uniform(-10, 10, (50, 40))  # away from the -100 clamp
    y = rng.random((50, 40))
    w = rng.uniform(0.5, 2, 40)
    for reduction in REDUCTIONS:
        a = fl.binary_cross_entropy_with_logits(x, y, weight=w, reduction=reduction)
        b = fl.binary_cross_entropy(1 / (1 + np.exp(-x)), y, weight=w, reduction=reduction)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("bad", [-0.1, 1.5, np.nan, -np.inf])
def test_bce_range_errors(isa, bad):
    p = np.full((3, 4), 0.5)
    y = np.full((3, 4), 0.5)
    p_bad = p.copy()
    p_bad[2, 3] = bad
    for reduction in REDUCTIONS:
        with pytest.raises(ValueError, match="all elements of input should be between 0 and 1"):
            fl.binary_cross_entropy(p_bad, y, reduction=reduction)
        with pytest.raises(ValueError, match="all elements of target should be between 0 and 1"):
            fl.binary_cross_entropy(p, p_bad, reduction=reduction)
    # both bad: input is reported first, as in PyTorch
    with pytest.raises(ValueError, match="input"):
        fl.binary_cross_entropy(p_bad, p_bad)


def test_shape_dtype_and_reduction_errors():
    p = np.full((3, 1), 0.5)
    for f in (fl.binary_cross_entropy, fl.binary_cross_entropy_with_logits):
        with pytest.raises(ValueError, match=r"target has shape \(3,\).*input shape \(3, 1\)"):
            f(p, np.full(3, 0.5))
        with pytest.raises(ValueError, match="'batchmean' is not a valid value for reduction"):
            f(p, p, reduction="batchmean")
        with pytest.raises(TypeError, match="input must be a floating-point array"):
            f(np.zeros((3, 1), np.int64), p)
        with pytest.raises(TypeError, match="target must be a floating-point array"):
            f(p, np.zeros((3, 1), np.int64))
        with pytest.raises(TypeError, match="weight must be a floating-point array"):
            f(p, p, weight=np.ones(1, np.int32))


def test_empty_batch():
    e = np.zeros((0, 3), np.float32)
    for f in (fl.binary_cross_entropy, fl.binary_cross_entropy_with_logits):
        assert np.isnan(f(e, e))
        assert f(e, e, reduction="sum") == 0.0
        none = f(e, e, reduction="none")
        assert none.shape == (0, 3) and none.dtype == np.float32


def test_layouts_readonly_and_inputs_untouched(isa, rng):
    x = rng.standard_normal((60, 50))
    y = rng.random((60, 50))
    p = 1 / (1 + np.exp(-x))
    for a in (x, y, p):
        a.flags.writeable = False
    copies = [a.copy() for a in (x, y, p)]
    w = rng.uniform(0.5, 2, (60, 1))
    for sl in [np.s_[:, ::3], np.s_[::2, ::-1], np.s_[::-1]]:
        xs, ys, ps = x[sl], y[sl], p[sl]
        ws = np.broadcast_to(w, x.shape)[sl]  # a zero-stride view, strided again
        for reduction in ("none", "sum"):
            _close(
                fl.binary_cross_entropy_with_logits(
                    xs, ys, weight=ws, pos_weight=ws, reduction=reduction
                ),
                ref.binary_cross_entropy_with_logits(xs, ys, ws, ws, reduction),
                np.float64,
            )
            _close(
                fl.binary_cross_entropy(ps, ys, weight=ws, reduction=reduction),
                ref.binary_cross_entropy(ps, ys, ws, reduction),
                np.float64,
            )
    xt, yt = x.T, y.T  # row stride > 1 in every operand
    _close(
        fl.binary_cross_entropy_with_logits(xt, yt),
        ref.binary_cross_entropy_with_logits(xt, yt),
        np.float64,
    )
    for a, c in zip((x, y, p), copies):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_bit_identical_across_threads(isa, reduction, rng):
    x = rng.standard_normal((300, 2000)).astype(np.float32)
    y = rng.random((300, 2000)).astype(np.float32)
    pw = rng.uniform(0.5, 2, 2000).astype(np.float32)
    p = 1 / (1 + np.exp(-x))
    results = []
    for threads in (1, 2):
        previous = fl.get_num_threads()
        fl.set_num_threads(threads)
        try:
            results.append(
                (
                    fl.binary_cross_entropy_with_logits(
                        x, y, pos_weight=pw, reduction=reduction
                    ).tobytes(),
                    fl.binary_cross_entropy(p, y, weight=pw, reduction=reduction).tobytes(),
                )
            )
        finally:
            fl.set_num_threads(previous)
    assert results[0] == results[1]


def test_half_precision(rng):
    x = rng.standard_normal((8, 16)).astype(np.float16)
    y = (rng.random((8, 16)) < 0.5).astype(np.float16)
    got = fl.binary_cross_entropy_with_logits(x, y)
    assert got.dtype == np.float16
    assert float(got) == pytest.approx(float(ref.binary_cross_entropy_with_logits(x, y)), rel=2e-3)
    p = (1 / (1 + np.exp(-x.astype(np.float32)))).astype(np.float16)
    assert fl.binary_cross_entropy(p, y, reduction="none").dtype == np.float16


def test_classes(rng):
    x = rng.standard_normal((5, 4))
    y = rng.random((5, 4))
    w, pw = rng.random(4), rng.random(4) + 0.5
    loss = fl.BCEWithLogitsLoss(weight=w, reduction="sum", pos_weight=pw)
    assert loss(x, y) == fl.binary_cross_entropy_with_logits(
        x, y, weight=w, pos_weight=pw, reduction="sum"
    )
    p = 1 / (1 + np.exp(-x))
    assert fl.BCELoss(weight=w)(p, y) == fl.binary_cross_entropy(p, y, weight=w)
    assert "sum" in repr(loss) and "mean" in repr(fl.BCELoss())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_torch(isa, dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = torch.from_numpy
    shape = (6, 3, 5, 7)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    x.reshape(-1)[:4] = [1000, -1000, 60, -60]
    y = rng.random(shape).astype(dtype)
    y.reshape(-1)[:4] = [0, 1, 1, 0]
    with np.errstate(over="ignore"):
        p = (1 / (1 + np.exp(-x.astype(np.float64)))).astype(dtype)
    p.reshape(-1)[4:6] = [0, 1]
    weights = [None, rng.random(7).astype(dtype), rng.random((6, 1, 1, 1)).astype(dtype)]
    pos_weights = [
        None,
        rng.random(7).astype(dtype) + 0.5,
        rng.random((3, 1, 1)).astype(dtype) + 0.5,
    ]
    for reduction in REDUCTIONS:
        for w in weights:
            tw = None if w is None else t(w)
            want = F.binary_cross_entropy(t(p), t(y), weight=tw, reduction=reduction)
            got = fl.binary_cross_entropy(p, y, weight=w, reduction=reduction)
            np.testing.assert_allclose(
                np.asarray(got, np.float64), want.double().numpy(), **TOL[dtype]
            )
            for pw in pos_weights:
                tpw = None if pw is None else t(pw)
                want = F.binary_cross_entropy_with_logits(
                    t(x), t(y), weight=tw, pos_weight=tpw, reduction=reduction
                )
                got = fl.binary_cross_entropy_with_logits(
                    x, y, weight=w, pos_weight=pw, reduction=reduction
                )
                np.testing.assert_allclose(
                    np.asarray(got, np.float64), want.double().numpy(), **TOL[dtype]
                )
