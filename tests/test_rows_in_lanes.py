"""Rows with few classes are computed W at a time, one row per vector lane [Note: few classes];
the rows left over, and rows with many classes, one at a time. Both must give a row the same bits,
so that a row's result depends neither on its neighbours nor on how rows are split between threads
([Note: rows in lanes, summed in the row sweep's order] in row_statistics-inl.hpp).

Each case compares a batch of rows against the same rows passed one at a time (a single row never
fills the lanes), on every instruction-set variant and with 1 and 2 threads.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastloss as fl

ml_dtypes = pytest.importorskip("ml_dtypes")

DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16]
# Fewer than one vector, exactly one, between one and two (AVX2 float32 W = 8, AVX-512 W = 16,
# float64 half of those), and past the lanes limit (2W).
CLASSES = [1, 3, 4, 7, 8, 10, 15, 16, 17, 31, 33]
ROWS = 37  # whole blocks of W rows and a remainder


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values with equal signs (zeros included); any NaN matches any NaN (a NaN's sign and
    payload depend on which operation made it, which no contract fixes)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
        return False
    numbers = ~np.isnan(a)
    return np.array_equal(np.signbit(a[numbers]), np.signbit(b[numbers]))


def logits(rng: np.random.Generator, classes: int, dtype) -> np.ndarray:
    x = (rng.standard_normal((ROWS, classes)) * 4).astype(dtype)
    x[2, 0] = -np.inf  # one class with probability 0
    x[5, :] = -np.inf  # an all -inf row
    x[7, classes // 2] = np.inf
    x[9, classes - 1] = np.nan
    x[11, :] = 0
    x[13, 0] = -0.0
    x[15, :] = np.linspace(0, 6e4, classes).astype(dtype)  # a wide spread: most terms underflow
    return x


def assert_rows_alone_equal_rows_together(together, alone) -> None:
    for k in range(ROWS):
        for a, b in zip(together(k), alone(k)):
            assert same_bits(a, b), (k, a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("classes", CLASSES)
@pytest.mark.parametrize(
    "function", [fl.softmax, fl.log_softmax, fl.entropy], ids=lambda f: f.__name__
)
def test_softmax_family(isa, threads, rng, dtype, classes, function):
    x = logits(rng, classes, dtype)
    with np.errstate(all="ignore"):
        whole = function(x)
        assert_rows_alone_equal_rows_together(
            lambda k: [whole[k]], lambda k: [function(x[k : k + 1])[0]]
        )
        # Strided rows (every other row of a larger array) take the lanes too.
        wide = np.repeat(x, 2, axis=0)[::2]
        assert same_bits(function(wide), whole)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("classes", [1, 7, 10, 17, 33])
@pytest.mark.parametrize(
    ("temperature", "option"),
    # Every kernel instance: T = 1, 2 and other temperatures [Note: integer temperature], and each
    # kind of hard term.
    [
        (1.0, "plain"),
        (2.0, "plain"),
        (3.0, "plain"),
        (3.0, "smoothing"),
        (1.0, "weight"),
        (2.0, "probabilities"),
        (3.0, "ignore_index"),
    ],
)
def test_distillation(isa, threads, rng, dtype, classes, temperature, option):
    student = logits(rng, classes, dtype)
    teacher = (rng.standard_normal((ROWS, classes)) * 4).astype(dtype)
    teacher[4, classes - 1] = -np.inf
    target = rng.integers(0, classes, ROWS)
    kw: dict = {"temperature": temperature, "alpha": 0.3}
    if option == "smoothing":
        kw["label_smoothing"] = 0.1
    elif option == "weight":
        kw["weight"] = rng.uniform(0.5, 2.0, classes).astype(dtype)
        kw["label_smoothing"] = 0.2
    elif option == "probabilities":
        target = fl.softmax(rng.standard_normal((ROWS, classes)).astype(dtype))
    elif option == "ignore_index":
        target[::3] = -100
    with np.errstate(all="ignore"):
        whole = fl.distillation_loss(
            student, teacher, target, reduction="none", return_grad=True, **kw
        )

        def alone(k):
            one = fl.distillation_loss(
                student[k : k + 1],
                teacher[k : k + 1],
                target[k : k + 1],
                reduction="none",
                return_grad=True,
                **kw,
            )
            return [one.loss[0], one.grad[0]]

        assert_rows_alone_equal_rows_together(lambda k: [whole.loss[k], whole.grad[k]], alone)
