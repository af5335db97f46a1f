"""entropy: logits and probability forms against float64 references and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import fastloss as fl
import reference as ref
from fastloss._validation import AxisError  # NumPy's, wherever this NumPy keeps it

TOL = {np.float32: {"rtol": 2e-5, "atol": 2e-5}, np.float64: {"rtol": 1e-12, "atol": 1e-12}}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape,axis",
    [((7,), -1), ((9, 5), -1), ((6, 70), 1), ((40, 3), 0), ((4, 37, 3), 1), ((3, 4, 50), -1)],
)
def test_logits_every_layout(isa, dtype, shape, axis, rng):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    got = fl.entropy(x, axis)
    np.testing.assert_allclose(got, ref.entropy_from_logits(x, axis), **TOL[dtype])
    assert np.asarray(got).dtype == dtype
    assert np.shape(got) == shape[: axis % len(shape)] + shape[axis % len(shape) + 1 :]
    if len(shape) == 1:
        assert isinstance(got, np.floating)
    # staged layout (no contiguous axis): other summation order, same values
    strided = np.repeat(x, 2, axis=-1)[..., ::2]
    np.testing.assert_allclose(fl.entropy(strided, axis), got, **TOL[dtype])


def test_infinite_and_nan_logits(isa):
    inf = np.inf
    x = np.array(
        [
            [0.0, -inf, 0.0],
            [-inf, -inf, -inf],
            [0.0, inf, 1.0],
            [0.0, np.nan, 1.0],
            [5.0, -inf, -inf],
        ]
    )
    got = fl.entropy(x)
    np.testing.assert_allclose(got[0], np.log(2), rtol=1e-15)
    assert np.isnan(got[1:4]).all()
    assert got[4] == 0.0
    np.testing.assert_allclose(fl.entropy(x.T.copy(), 0), got, rtol=1e-15)  # columns layout


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_columns_in_position_blocks(isa, dtype, rng):
    """The columns layout takes S and sum e (x - m) in one online sweep, four vectors of positions
    at a time, then one, then part of one (85 positions cover all three): edge columns met early
    and late, and a max that keeps moving (an increasing column), against the reference."""
    inf = np.inf
    x = (rng.standard_normal((300, 85)) * 4).astype(dtype)
    x[:, 3] = np.arange(300)  # the max moves at every class
    x[:, 10] = -inf
    x[::2, 20] = -inf  # p = 0 terms add 0
    x[-5:, 21] = -inf
    x[:3, 30] = [0.0, inf, 1.0]
    x[-1, 31] = inf
    x[150, 40] = np.nan
    x[:, 50] = 1e4  # every exponent 0
    x[-1, 70] = 60.0  # a late max that dwarfs the rest
    lowest = np.finfo(dtype).min
    x[:2, 60] = lowest  # masked with the lowest finite value, then an ordinary logit
    x[:150, 61] = lowest
    x[:2, 62] = [lowest, -lowest]
    got = fl.entropy(x, 0)
    with np.errstate(invalid="ignore"):
        want = ref.entropy_from_logits(x.astype(np.float64), 0)
    want[[10, 30, 31, 40]] = np.nan
    np.testing.assert_allclose(got, want, equal_nan=True, **TOL[dtype])
    rows = fl.entropy(np.ascontiguousarray(x.T), 1)
    np.testing.assert_allclose(rows, got, equal_nan=True, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("classes", [8193, 20011])
def test_long_rows_in_one_online_sweep(isa, dtype, classes, rng):
    """Rows longer than 8192 classes take S and sum e (x - m) in one online sweep, the sums moved
    whenever a lane's max moves: the edge rows of the columns test above, each laid along a row
    (8193 classes leave a one-class tail, 20011 a longer one), against the reference and against
    the same logits in columns."""
    inf = np.inf
    lowest = np.finfo(dtype).min
    x = (rng.standard_normal((14, classes)) * 4).astype(dtype)
    x[1] = np.arange(classes)  # the max moves at every class
    x[2, ::2] = -inf  # p = 0 terms add 0
    x[3] = -inf  # all -inf: NaN
    x[4, -3] = inf
    x[5, classes // 2] = np.nan
    x[6] = 1e4  # every exponent 0: log(classes)
    x[7, -1] = 60.0  # a late max, in the tail, that dwarfs the rest
    x[8, :100] = lowest  # masked with the lowest finite value, then ordinary logits
    x[9, :2] = [lowest, -lowest]
    x[10, :-5] = -inf  # only the tail is finite: lanes that saw only -inf merge as 0
    x[11] = -inf
    x[11, classes // 3] = 2.5  # one finite logit: entropy 0
    x[12, : classes // 2] = -inf  # the first half -inf, then the max moves from -inf
    x[13] *= 100  # a spread of exponents, most underflowing
    got = fl.entropy(x)
    with np.errstate(invalid="ignore"):
        want = ref.entropy_from_logits(x.astype(np.float64))
    want[[3, 4, 5]] = np.nan
    np.testing.assert_allclose(got, want, equal_nan=True, **TOL[dtype])
    assert got[11] == 0.0
    np.testing.assert_allclose(got[6], np.log(classes), rtol=TOL[dtype]["rtol"])
    columns = fl.entropy(np.ascontiguousarray(x.T), 0)
    np.testing.assert_allclose(columns, got, equal_nan=True, **TOL[dtype])


def test_matches_torch(isa, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((6, 9, 11))
    x[0, 0, :3] = -np.inf
    want = torch.distributions.Categorical(logits=torch.from_numpy(x)).entropy().numpy()
    np.testing.assert_allclose(fl.entropy(x), want, rtol=1e-12, atol=1e-13)
    p = rng.uniform(-0.2, 1.0, (5, 7))
    p[0, :2] = 0.0
    want = torch.special.entr(torch.from_numpy(p)).sum(-1).numpy()
    np.testing.assert_allclose(fl.entropy(probs=p), want, rtol=1e-12)


def test_probability_form():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.2, -0.1, 0.9], [0.3, np.nan, 0.7]])
    got = fl.entropy(probs=p)
    np.testing.assert_allclose(got[:2], [np.log(2), 0.0], rtol=1e-15)
    assert got[2] == -np.inf  # entr of a negative probability
    assert np.isnan(got[3])
    np.testing.assert_allclose(got, ref.entropy_from_probs(p), rtol=1e-15)
    assert fl.entropy(probs=np.float32([0.25] * 4)).dtype == np.float32


def test_cross_entropy_is_entropy_plus_kl(isa, rng):
    # CE with probability targets q = H(q) + KL(q || softmax(x))
    x = rng.standard_normal((10, 13))
    q = ref.softmax(rng.standard_normal((10, 13)), 1)
    q[0, 3] = 0.0
    q[0] /= q[0].sum()
    lp = ref.log_softmax(x, 1)
    with np.errstate(all="ignore"):
        kl = np.sum(np.where(q == 0, 0.0, q * (np.log(q) - lp)), axis=1)
    np.testing.assert_allclose(
        fl.cross_entropy(x, q, reduction="none"), fl.entropy(probs=q) + kl, rtol=1e-12
    )
    # the logits form: entropy(x) = CE(x, softmax(x))
    np.testing.assert_allclose(
        fl.entropy(x), fl.cross_entropy(x, ref.softmax(x, 1), reduction="none"), rtol=1e-12
    )


def test_empty_and_half_precision(rng):
    assert fl.entropy(np.zeros((3, 0))).tolist() == [0.0, 0.0, 0.0]
    assert fl.entropy(np.zeros((0, 4))).shape == (0,)
    x = rng.standard_normal((4, 6))
    got = fl.entropy(x.astype(np.float16))
    assert got.dtype == np.float16
    np.testing.assert_allclose(got, ref.entropy_from_logits(x.astype(np.float16)), rtol=2e-3)
    before = x.copy()
    fl.entropy(x)
    np.testing.assert_array_equal(x, before)


def test_errors():
    with pytest.raises(TypeError, match="exactly one of logits"):
        fl.entropy()
    with pytest.raises(TypeError, match="exactly one of logits"):
        fl.entropy(np.zeros(3), probs=np.zeros(3))
    with pytest.raises(ValueError, match="at least one dimension"):
        fl.entropy(np.float64(1.0))
    with pytest.raises(TypeError, match="logits must be a floating-point array"):
        fl.entropy(np.arange(3))
    with pytest.raises(AxisError):
        fl.entropy(np.zeros((2, 3)), 2)


def test_staged_rows_longer_than_one_staging_block(rng):
    # A class axis with stride 2 and no contiguous axis is staged row by row; rows longer than
    # logsumexp's 65536-class staging block must still be reduced whole (a bug found while
    # adding probs= kernels: the entropy of the blocks' entropies was returned).
    x = rng.standard_normal((2, 140002)).astype(np.float32)
    v = x[:, ::2]
    want = ref.entropy_from_logits(v.astype(np.float64))
    np.testing.assert_allclose(fl.entropy(v), want, rtol=1e-5)
    p = np.abs(v) / np.abs(v).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        fl.entropy(probs=p), ref.entropy_from_probs(p.astype(np.float64)), rtol=1e-5
    )
