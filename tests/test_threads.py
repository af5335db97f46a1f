"""Thread control, and results that do not depend on the number of threads."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastloss as fl


def test_set_and_get_num_threads():
    before = fl.get_num_threads()
    try:
        fl.set_num_threads(1)
        assert fl.get_num_threads() == 1
        fl.set_num_threads(3)
        assert fl.get_num_threads() == 3
    finally:
        fl.set_num_threads(before)
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        fl.set_num_threads(0)
    with pytest.raises(TypeError, match="n must be an integer"):
        fl.set_num_threads(2.5)


def test_omp_num_threads_is_honoured():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-c", "import fastloss; print(fastloss.get_num_threads())"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"


def _big_inputs(rng):
    x = (rng.standard_normal((300, 1000)) * 4).astype(np.float32)  # rows layout, parallel
    yield "rows", x, 1
    yield "columns", x, 0
    # Work items of 16 KiB of a class row at 1 thread (4096 + 1904 positions), an equal share at
    # 2 (3008 + 2992): the cut depends on the thread count, the bits must not.
    yield "columns_wide", (rng.standard_normal((40, 6000)) * 4).astype(np.float32), 0
    x3 = rng.standard_normal((8, 64, 300))  # (N, C, positions)
    yield "columns_3d", x3, 1
    yield "staged", x3.transpose(2, 0, 1), 2


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
def test_bit_identical_for_1_and_2_threads(isa, op, rng):
    f = getattr(fl, op)
    before = fl.get_num_threads()
    try:
        for label, x, axis in _big_inputs(rng):
            results = []
            for n in (1, 2):
                fl.set_num_threads(n)
                results.append(f(x, axis))
            np.testing.assert_array_equal(results[0], results[1], err_msg=label)
    finally:
        fl.set_num_threads(before)


def test_threads_fixture_runs_both(threads, rng):
    x = rng.standard_normal((256, 512))
    assert fl.get_num_threads() == threads
    np.testing.assert_allclose(np.exp(fl.log_softmax(x)).sum(axis=1), 1.0, rtol=1e-12)
