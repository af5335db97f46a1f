"""The merge of mergeable row statistics (fastloss._row_statistics): any split of a row's classes
into pieces, merged in any order, gives the statistics of the whole row."""

from __future__ import annotations

import numpy as np
import pytest

from fastloss._row_statistics import (
    FIELDS,
    MAX,
    SUM_EXP,
    empty_row_statistics,
    merge_row_statistics,
    row_logsumexp,
)


def piece_statistics(
    x: np.ndarray, begin: int, end: int, target: np.ndarray, u: np.ndarray
) -> np.ndarray:
    """Float64 NumPy statistics of classes [begin, end) of each row of x."""
    stats = empty_row_statistics(x.shape[:1])
    part = x[:, begin:end]
    if end > begin:
        with np.errstate(invalid="ignore"):
            m = part.max(axis=1)
            shift = np.where(np.isfinite(m), m, 0.0)
            stats[:, MAX] = m
            stats[:, SUM_EXP] = np.where(
                m == -np.inf, 0.0, np.exp(part - shift[:, None]).sum(axis=1)
            )
    inside = (target >= begin) & (target < end)
    stats[inside, 2] = x[inside, target[inside]]
    stats[:, 3] = (part * u[begin:end]).sum(axis=1)
    stats[:, 4] = u[begin:end].sum()
    return stats


def test_fields():
    assert FIELDS == ("max", "sum_exp", "target_logit", "weighted_logit_sum", "target_mass")


@pytest.mark.parametrize("seed", range(5))
def test_any_split_in_any_order_gives_the_whole_row(seed):
    rng = np.random.default_rng(seed)
    rows, classes = 7, int(rng.integers(1, 200))
    x = rng.standard_normal((rows, classes)) * 30.0
    x[0, :] = -np.inf  # a row without a finite logit
    x[1, : classes // 2] = -np.inf  # pieces without a finite logit
    target = rng.integers(0, classes, rows)
    u = rng.random(classes)
    cuts = np.unique(np.concatenate([[0, classes], rng.integers(0, classes + 1, 4)]))
    pieces = [piece_statistics(x, b, e, target, u) for b, e in zip(cuts[:-1], cuts[1:])]
    rng.shuffle(pieces)
    merged = empty_row_statistics((rows,))
    for piece in pieces:
        assert merge_row_statistics(merged, piece) is merged
    whole = piece_statistics(x, 0, classes, target, u)
    np.testing.assert_allclose(merged, whole, rtol=1e-12, atol=1e-12)
    with np.errstate(divide="ignore"):
        expected = np.log(np.exp(x).sum(axis=1))
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(row_logsumexp(merged)[1:], expected[1:], rtol=1e-12)
    assert row_logsumexp(merged)[0] == -np.inf


def test_nan_and_positive_infinity_make_the_row_nan():
    a = empty_row_statistics((2,))
    a[:, MAX] = [1.0, 2.0]
    a[:, SUM_EXP] = 1.0
    b = a.copy()
    b[0, MAX] = np.nan
    b[1, MAX], b[1, SUM_EXP] = np.inf, np.nan  # what a piece holding +inf has
    merge_row_statistics(a, b)
    assert np.isnan(row_logsumexp(a)).all()


def test_the_empty_piece_is_the_identity():
    a = np.array([[3.0, 2.5, 1.0, -4.0, 0.5]])
    merge_row_statistics(a, empty_row_statistics((1,)))
    np.testing.assert_array_equal(a, [[3.0, 2.5, 1.0, -4.0, 0.5]])


def test_bad_arrays_are_refused():
    a = empty_row_statistics((3,))
    with pytest.raises(ValueError, match="shape"):
        merge_row_statistics(a, empty_row_statistics((4,)))
    with pytest.raises(TypeError, match="float64"):
        merge_row_statistics(a, a.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(\.\.\., 5\)"):
        merge_row_statistics(np.zeros((3, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="contiguous"):
        merge_row_statistics(empty_row_statistics((6,))[::2], a)
