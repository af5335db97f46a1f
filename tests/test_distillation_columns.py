"""distillation_loss with the class axis in columns (positions contiguous): one online sweep for
both maxima and every sum, its blocks of positions taken in runs and the class axis in chunks
(distillation.cpp, [Note: online distillation columns]). Checked against the rows layout of the
same numbers, which takes the maxima first and has its own tests against PyTorch."""

from __future__ import annotations

import fastloss as fl
import numpy as np
import pytest
from aligned_arrays import line_offset_array

# More positions than one run holds in every dtype and vector width (1024 float32 positions on
# AVX-512), with a head before the first cache line, whole blocks, single vectors and a partial one.
POSITIONS = 1100
CLASSES = 75  # folds of 32 classes and chunks of 8, each with a remainder


def _edge_columns(s: np.ndarray, t: np.ndarray) -> None:
    """Columns whose maxima move at every class, or jump so far that every earlier term's weight
    underflows, around -inf logits of the student, the teacher or both."""
    C = s.shape[0]
    inf = np.inf
    ramp = np.linspace(-30.0, 30.0, C)
    s[:, 3], t[:, 3] = ramp, ramp[::-1]  # the student's max moves at every class
    s[:, 4], t[:, 4] = ramp[::-1], ramp  # the teacher's does
    s[:, 5] = t[:, 5] = ramp  # both do
    s[0, 6], t[0, 6] = -inf, 0.0  # student -inf under a weight the teacher's jump later zeroes: NaN
    t[40, 6] = 3000.0
    s[0, 7], t[0, 7] = 0.0, -inf  # teacher -inf where the student's jump zeroes the student: 0 KL share
    s[40, 7] = 3000.0
    s[0, 8], t[0, 8] = -inf, 1.0  # student -inf under a live teacher weight: +inf
    s[:, 9] = -inf  # an all -inf student
    t[:, 10] = -inf  # an all -inf teacher
    s[2, 11] = t[2, 11] = -inf  # both -inf at one class: NaN
    s[:, 12] = np.finfo(s.dtype).min  # the lowest finite value, then an ordinary logit late
    s[70, 12] = 1.0
    t[:, 13] = np.finfo(t.dtype).min
    t[70, 13] = 1.0
    s[:, 14] = 1e4 + ramp  # large logits: nothing of their size may cancel
    t[:, 14] = -1e4 + ramp[::-1]
    # the student's max jumps by more than the largest finite value, right after a fold of 32
    # classes: the gap is inf, the just-folded sums 0 (KL: +inf, not NaN)
    s[:, 15], t[:, 15] = np.finfo(s.dtype).min, 0.0
    s[32, 15] = np.finfo(s.dtype).max / 2
    # A +inf term whose weight underflows only against the final max, the step's factor not: at
    # T = 1, exp(-v) > 0 but exp(-2 v) = 0. KL: a -inf student logit; reverse KL: a -inf teacher's.
    v = 60.0 if s.dtype == np.float32 else 400.0
    s[:, 16] = t[:, 16] = 0.0
    s[1, 16], t[1, 16], t[2, 16] = -inf, -v, v
    s[:, 17] = t[:, 17] = 0.0
    t[1, 17], s[1, 17], s[2, 17] = -inf, -v, v


def _as_rows(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("divergence", ["kl", "reverse_kl", "jsd"])
@pytest.mark.parametrize("offset", [0, 16])
def test_columns_match_rows_on_edge_columns(isa, dtype, divergence, offset, streamed_outputs, rng):
    s = line_offset_array((CLASSES, POSITIONS), dtype, offset)
    t = line_offset_array((CLASSES, POSITIONS), dtype, offset)
    s[...] = rng.standard_normal(s.shape) * 3
    t[...] = rng.standard_normal(t.shape) * 3
    _edge_columns(s, t)
    y = rng.integers(0, CLASSES, POSITIONS)
    y[::7] = -100
    q = rng.random((CLASSES, POSITIONS)).astype(dtype)
    q /= q.sum(0)
    tol = dict(rtol=1e-11, atol=1e-13) if dtype == np.float64 else dict(rtol=3e-4, atol=3e-5)
    settings = [
        dict(target=y, temperature=1.0),
        dict(target=y, temperature=2.0, label_smoothing=0.1, weight=rng.random(CLASSES) + 0.5),
        dict(target=q, temperature=3.5),
    ]
    for kwargs in settings:
        target = kwargs.pop("target")
        rows_target = _as_rows(target) if target.ndim == 2 else target
        with np.errstate(all="ignore"):
            want = fl.distillation_loss(_as_rows(s), _as_rows(t), rows_target, divergence=divergence,
                                        reduction="none", return_grad=True, grad_output=np.ones(POSITIONS),
                                        **kwargs)
            for stream in (False, True):
                streamed_outputs(stream)
                got = fl.distillation_loss(s, t, target, axis=0, divergence=divergence, reduction="none",
                                           return_grad=True, grad_output=np.ones(POSITIONS), **kwargs)
                np.testing.assert_allclose(got.loss, want.loss, equal_nan=True, **tol)
                # Columns 6 and 7 jump by 3000 / T: reverse KL's gradient there cancels two terms
                # of that size, and float32 keeps about 3000 eps of it in either form.
                loose = dict(tol, atol=2e-3) if dtype == np.float32 else tol
                np.testing.assert_allclose(got.grad.T[6:8], want.grad[6:8], equal_nan=True, **loose)
                np.testing.assert_allclose(got.grad.T[8:], want.grad[8:], equal_nan=True, **tol)
                np.testing.assert_allclose(got.grad.T[:6], want.grad[:6], equal_nan=True, **tol)
                forward = fl.distillation_loss(s, t, target, axis=0, divergence=divergence,
                                               reduction="none", **kwargs)
                np.testing.assert_array_equal(forward, got.loss)
        # PyTorch's NaNs: 0 * -inf of a -inf log-probability under a weight that underflowed
        # after the other operand's max jumped (6 for KL, 7 for reverse KL), or under a weight
        # of 0 from the other operand's -inf at the same class (11)
        nans = {"kl": [6, 9, 10, 11], "reverse_kl": [7, 9, 10, 11], "jsd": [9, 10]}[divergence]
        if kwargs["temperature"] == 1.0:
            nans += {"kl": [16], "reverse_kl": [17], "jsd": []}[divergence]
        assert np.isnan(got.loss[nans]).all()
        assert np.isfinite(got.loss[[3, 4, 5, 14]]).all()
        if divergence == "kl":
            assert got.loss[8] == np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_position_does_not_depend_on_its_block_or_run(isa, dtype, threads, rng):
    """Each lane's arithmetic is the same in every block, run and thread: a slice of the positions,
    which moves every position to another block, gives the same bits."""
    s = (rng.standard_normal((CLASSES, POSITIONS)) * 3).astype(dtype)
    t = (rng.standard_normal((CLASSES, POSITIONS)) * 3).astype(dtype)
    _edge_columns(s, t)
    y = rng.integers(0, CLASSES, POSITIONS)
    with np.errstate(all="ignore"):
        whole = fl.distillation_loss(s, t, y, axis=0, reduction="none", return_grad=True,
                                     grad_output=np.ones(POSITIONS), label_smoothing=0.1)
        for start in (1, 37, 500):
            part = fl.distillation_loss(s[:, start:], t[:, start:], y[start:], axis=0, reduction="none",
                                        return_grad=True, grad_output=np.ones(POSITIONS - start),
                                        label_smoothing=0.1)
            np.testing.assert_array_equal(part.loss, whole.loss[start:])
            np.testing.assert_array_equal(part.grad, whole.grad[:, start:])


def test_in_place_gradient(isa, rng):
    s = rng.standard_normal((CLASSES, POSITIONS))
    t = rng.standard_normal((CLASSES, POSITIONS))
    y = rng.integers(0, CLASSES, POSITIONS)
    want = fl.distillation_loss(s, t, y, axis=0, return_grad=True)
    out = s.copy()
    got = fl.distillation_loss(out, t, y, axis=0, return_grad=True, grad_out=out)
    np.testing.assert_array_equal(out, want.grad)
    assert got.loss == want.loss


def test_an_infinite_class_weight_when_only_the_teacher_max_moves(isa):
    """With smoothing, a class weight of inf makes the hard term's linear sum -inf; a move of the
    teacher's max alone must leave it so (not inf * 0 = NaN), as the rows layout computes it."""
    s = np.array([[-1.0, -1.0], [0.0, 0.0], [-5.0, -5.0]])  # (classes, positions): columns
    t = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    y = np.array([1, 2])
    kwargs = dict(label_smoothing=0.1, weight=np.array([np.inf, 1.0, 1.0]), reduction="none")
    with np.errstate(all="ignore"):
        want = fl.distillation_loss(_as_rows(s), _as_rows(t), y, **kwargs)
        got = fl.distillation_loss(s, t, y, axis=0, **kwargs)
    np.testing.assert_array_equal(got, want)
    assert (got == np.inf).all()
