"""The error bounds documented in cpp/src/simd/vector_math-inl.hpp, checked for every ISA.

Each sweep covers millions of inputs: uniform over the whole valid range, dense near the
interesting points (0, the reduction boundaries, the overflow/underflow thresholds), plus the
special values. Errors are measured in ULPs of the correctly rounded result, against long double
(64-bit mantissa) references, which resolve float64 ULPs.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastloss import _core

# The claims, as documented next to the code.
EXP_MAX_ULP = 1.5
LOG_MAX_ULP = 1.0
LOG1P_MAX_ULP = 2.0
LOG1P_UNIT_MAX_ULP = 2.0
TANH_MAX_ULP = 2.0


def _exp(x):
    y = np.empty_like(x)
    _core._vector_exp(x, y)
    return y


def _log(x):
    y = np.empty_like(x)
    _core._vector_log(x, y)
    return y


def _log1p(x, unit=False):
    y = np.empty_like(x)
    (_core._vector_log1p_unit if unit else _core._vector_log1p)(x, y)
    return y


def _tanh(x):
    y = np.empty_like(x)
    _core._vector_tanh(x, y)
    return y


def _ulp_error(got: np.ndarray, x: np.ndarray, f) -> np.ndarray:
    dtype = got.dtype
    exact = f(x.astype(np.longdouble))
    with np.errstate(over="ignore"):
        rounded = exact.astype(dtype)
    spacing = np.spacing(np.abs(rounded)).astype(np.longdouble)
    return np.abs(got.astype(np.longdouble) - exact) / spacing


def _exp_inputs(dtype, rng, n):
    if dtype == np.float32:
        lo, hi = -87.33, 88.72  # results in the normal range
    else:
        lo, hi = -708.39, 709.78
    parts = [
        rng.uniform(lo, hi, n),
        rng.uniform(-1, 1, n // 2),
        rng.uniform(-1e-6, 1e-6, n // 8),
        # around odd multiples of ln2/2, where the reduced argument is largest
        (rng.integers(-100, 100, n // 4) + 0.5) * np.log(2) + rng.uniform(-1e-3, 1e-3, n // 4),
        # the same for the AVX-512 table paths, which reduce by ln2/16 (float32) and ln2/8 (float64)
        (rng.integers(-2000, 2000, n // 4) + 0.5) * np.log(2) / 16 + rng.uniform(-1e-5, 1e-5, n // 4),
        (rng.integers(-8000, 8000, n // 4) + 0.5) * np.log(2) / 8 + rng.uniform(-1e-9, 1e-9, n // 4),
    ]
    x = np.concatenate(parts).astype(dtype)
    return x[(x >= lo) & (x <= hi)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_error_bound(isa, dtype, rng):
    x = _exp_inputs(dtype, rng, 2_000_000)
    err = _ulp_error(_exp(x), x, np.exp)
    assert err.max() <= EXP_MAX_ULP, (err.max(), x[err.argmax()])


def _table_path(isa, dtype) -> bool:
    """Whether exp of this ISA and dtype is vexp_table (vector_math-inl.hpp)."""
    return isa == "avx512"


# Entries per table: 2^(j/K), j = 0..K-1 (ExpTable in vector_math-inl.hpp).
_TABLE_ENTRIES = {np.float32: 16, np.float64: 8}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_table_entries_are_correctly_rounded(isa, dtype):
    # At x = k ln2/K, e^r is 1 to within rounding, so the result is the table entry
    # 2^((k mod K)/K), scaled, then rounded once: at most 0.45 ULP (float32's worst entry
    # rounding; 0.5 for float64) + 0.5 ULP. An entry one ULP off would show about 1.45 here,
    # still under EXP_MAX_ULP.
    if not _table_path(isa, dtype):
        pytest.skip("only the AVX-512 exp uses the tables")
    k = _TABLE_ENTRIES[dtype]
    lo, hi = (-87.33, 88.72) if dtype == np.float32 else (-708.39, 709.78)
    x = (np.arange(int(lo * k / np.log(2)), int(hi * k / np.log(2)) + 1) * np.log(2) / k).astype(dtype)
    x = x[(x >= lo) & (x <= hi)]
    err = _ulp_error(_exp(x), x, np.exp)
    assert err.max() <= 1.0, (err.max(), x[err.argmax()])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_subnormal_results_and_thresholds(isa, dtype, rng):
    fi = np.finfo(dtype)
    lo = -103.97 if dtype == np.float32 else -745.13
    x = rng.uniform(lo, np.log(float(fi.tiny)), 200_000).astype(dtype)
    got = _exp(x).astype(np.longdouble)
    exact = np.exp(x.astype(np.longdouble))
    # vector_math-inl.hpp: the polynomials round once into the subnormals (within one spacing);
    # the AVX-512 table path rounds twice (within 1.1)
    spacings = 1.1 if _table_path(isa, dtype) else 1.0
    assert np.max(np.abs(got - exact)) <= spacings * float(fi.smallest_subnormal)
    big = np.array([fi.max, 89.0 if dtype == np.float32 else 710.0, np.inf], dtype)
    assert np.all(_exp(big) == np.inf)
    small = np.array([-fi.max, -104.0 if dtype == np.float32 else -746.0, -np.inf], dtype)
    assert np.all(_exp(small) == 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_error_bound(isa, dtype, rng):
    fi = np.finfo(dtype)
    n = 2_000_000
    max_exp = 120 if dtype == np.float32 else 1000
    x = np.concatenate(
        [
            np.exp2(rng.uniform(-max_exp, max_exp, n)),
            rng.uniform(0.5, 2.0, n // 2),  # near 1, where log is small
            1.0 + rng.uniform(-1e-4, 1e-4, n // 8),
            rng.uniform(0, 1, n // 8) * float(fi.tiny),  # subnormal inputs
            np.array([fi.tiny, fi.max, fi.smallest_subnormal, np.sqrt(0.5), np.sqrt(2.0)]),
        ]
    ).astype(dtype)
    x = x[(x > 0) & np.isfinite(x) & (x != 1.0)]
    err = _ulp_error(_log(x), x, np.log)
    assert err.max() <= LOG_MAX_ULP, (err.max(), x[err.argmax()])
    assert _log(np.array([1.0], dtype))[0] == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(isa, dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0], dtype)
    e = _exp(x)
    assert np.isnan(e[0]) and e[1] == np.inf and e[2] == 0.0 and e[3] == 1.0 and e[4] == 1.0
    lg = _log(x)
    assert np.isnan(lg[0]) and lg[1] == np.inf and np.isnan(lg[2])
    assert lg[3] == -np.inf and lg[4] == -np.inf and np.isnan(lg[5])


@pytest.mark.parametrize("n", [0, 1, 3, 15, 16, 17, 33])
def test_tails(isa, n, rng):
    for dtype in (np.float32, np.float64):
        x = rng.uniform(-5, 5, n).astype(dtype)
        np.testing.assert_allclose(_exp(x), np.exp(x), rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log1p_error_bound(isa, dtype, rng):
    tiny = float(np.finfo(dtype).tiny)
    n = 1_000_000
    small = np.exp(-rng.uniform(0, 80, n // 2))  # where log(1 + a) would lose everything
    a = np.concatenate(
        [rng.uniform(-1, 1, n), small, -small, rng.uniform(-1, -0.5, n // 4)]
    ).astype(dtype)
    a = a[(np.abs(a) >= tiny) & (a > -1)]
    err = _ulp_error(_log1p(a), a, np.log1p)
    assert err.max() <= LOG1P_MAX_ULP, (err.max(), a[err.argmax()])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log1p_unit_error_bound(isa, dtype, rng):
    """log(1 + e) on [0, 1], the range softplus needs (e = exp(-|x|))."""
    tiny = float(np.finfo(dtype).tiny)
    n = 1_000_000
    max_x = 80 if dtype == np.float32 else 700
    e = np.concatenate(
        [rng.uniform(0, 1, n), np.exp(-rng.uniform(0, max_x, n)), np.array([1.0, 0.5, 1e-7])]
    ).astype(dtype)
    e = e[e >= tiny]
    err = _ulp_error(_log1p(e, unit=True), e, np.log1p)
    assert err.max() <= LOG1P_UNIT_MAX_ULP, (err.max(), e[err.argmax()])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log1p_special_values(isa, dtype):
    a = np.array([np.nan, np.inf, -1.0, -2.0, 0.0, 1e-30], dtype)
    g = _log1p(a)
    assert np.isnan(g[0]) and g[1] == np.inf and g[2] == -np.inf and np.isnan(g[3])
    assert g[4] == 0.0 and g[5] == a[5]  # 1 + a rounds to 1: exactly a
    u = _log1p(np.array([0.0, np.nan, 1e-30, 1.0], dtype), unit=True)
    assert u[0] == 0.0 and np.isnan(u[1]) and u[2] == dtype(1e-30)
    assert abs(u[3] - np.log(2.0)) <= 2 * np.spacing(dtype(np.log(2.0)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_error_bound(isa, dtype, rng):
    """Both sides of the switch from the Taylor series to 1 - 2 / (exp(2|x|) + 1) at 0.55, the
    tiny arguments where tanh(x) ~ x, and the range where it saturates."""
    tiny = float(np.finfo(dtype).tiny)
    n = 500_000
    near_switch = rng.uniform(0.5, 0.6, n // 2)
    x = np.concatenate(
        [rng.uniform(-25, 25, n), rng.uniform(-1, 1, n), near_switch, -near_switch,
         np.exp(-rng.uniform(0, 80, n // 4))]
    ).astype(dtype)
    x = x[np.abs(x) >= tiny]
    err = _ulp_error(_tanh(x), x, np.tanh)
    assert err.max() <= TANH_MAX_ULP, (err.max(), x[err.argmax()])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_special_values(isa, dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, 100.0, -100.0], dtype)
    y = _tanh(x)
    np.testing.assert_array_equal(y, np.array([np.nan, 1.0, -1.0, 0.0, 0.0, 1e-30, 1.0, -1.0], dtype))
    assert np.signbit(y[4]) and not np.signbit(y[3])
