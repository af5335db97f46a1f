"""Reliability: arrays past 2^31 elements, memory, the GIL, threads, Ctrl-C, determinism, and
coexistence with other OpenMP runtimes (threadpoolctl, torch).

Functions are listed in tables (DETERMINISM_CASES, MEMORY_CASES): a new loss is one row each.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import pytest

import fastloss as fl
import reference as ref


def _run_python(code: str, timeout: float = 300) -> str:
    """Runs `code` in a fresh interpreter (a crash there cannot take the test run down)."""
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == 0, f"exit code {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


# ---------------------------------------------------------------------------------------------
# Sizes and indices are 64-bit: zero-stride views with more than 2^31 elements cost no memory.

BIG = 2**31 + 16


def test_logsumexp_over_more_than_2_31_elements():
    # float32: a naive float32 sum of 2^31 ones would stall at 2^24. The zero-stride 1-D view is
    # the staged layout (serial, gathered in blocks): the slowest path, a few seconds.
    x = np.broadcast_to(np.float32(0.5), (BIG,))
    rss = _max_rss_bytes()
    got = fl.logsumexp(x)
    assert float(got) == pytest.approx(0.5 + np.log(BIG), rel=1e-6)
    assert _max_rss_bytes() - rss < 256 * 2**20, "a zero-stride input was copied"


@pytest.mark.parametrize("special", [None, np.inf, -np.inf, np.nan])
def test_logsumexp_of_long_strided_rows_is_computed_in_blocks(special):
    """A strided (staged) row longer than the staging block is reduced block by block; the
    blocks' results must combine to the reference, infinities and NaN included."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 2 * (3 * 2**16 + 5))) * 10
    x[0, :] = -np.inf
    if special is not None:
        x[1, 2 * 2**16 + 1000] = special  # in the third block
    view = x[:, ::2]  # class stride 2: the staged layout
    want = ref.logsumexp(view, 1)
    for dtype in (np.float64, np.float32):
        got = fl.logsumexp(x.astype(dtype)[:, ::2], 1)
        np.testing.assert_allclose(
            got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, equal_nan=True
        )


def test_cross_entropy_over_more_than_2_31_elements():
    # (N, C) with N*C = 2^31 + 2^16: every row is the same row, so the reference is cheap.
    rng = np.random.default_rng(0)
    C, N = 2**16, 2**15 + 1
    row = rng.standard_normal(C).astype(np.float32)
    x = np.broadcast_to(row, (N, C))
    target = rng.integers(0, C, N)
    target[-1] = C - 1  # the last target of the last row: the element at index N*C - 1
    rss = _max_rss_bytes()
    per = fl.cross_entropy(x, target, reduction="none")
    lse = np.log(np.sum(np.exp(row.astype(np.float64) - row.max()))) + row.max()
    np.testing.assert_allclose(per, lse - row[target].astype(np.float64), rtol=1e-5, atol=1e-5)
    assert fl.cross_entropy(x, target) == pytest.approx(np.mean(lse - row[target]), rel=1e-5)
    assert _max_rss_bytes() - rss < 256 * 2**20, "an N x C array was allocated"


# ---------------------------------------------------------------------------------------------
# Memory: forward losses allocate nothing of size N x C; grad_out= avoids the gradient array.
# NumPy reports its allocations to tracemalloc, so an N x C temporary made in Python shows up.

N, C = 2048, 1024  # 8 MiB of float32 logits
NC_BYTES = N * C * 4

MEMORY_CASES: dict[str, Callable[[np.ndarray, np.ndarray], Any]] = {
    "cross_entropy": lambda x, t: fl.cross_entropy(x, t),
    "cross_entropy_none": lambda x, t: fl.cross_entropy(x, t, reduction="none"),
    "cross_entropy_smoothing_weight": lambda x, t: fl.cross_entropy(
        x, t, label_smoothing=0.1, weight=np.ones(C, np.float32)
    ),
    "cross_entropy_axis_last_3d": lambda x, t: fl.cross_entropy(
        x.reshape(32, 64, C), t.reshape(32, 64), axis=-1
    ),
    "cross_entropy_probabilities": lambda x, t: fl.cross_entropy(x, x),
    "nll_loss": lambda x, t: fl.nll_loss(x, t),
    "logsumexp": lambda x, t: fl.logsumexp(x),
    "cross_entropy_grad_out": lambda x, t: fl.cross_entropy(x, t, return_grad=True, grad_out=x),
    "nll_loss_grad_out": lambda x, t: fl.nll_loss(x, t, return_grad=True, grad_out=x),
    "kl_div": lambda x, t: fl.kl_div(x, x, reduction="batchmean", log_target=True),
    "binary_cross_entropy_with_logits": lambda x, t: fl.binary_cross_entropy_with_logits(x, x),
    "distillation_loss": lambda x, t: fl.distillation_loss(x, x, t),
    "distillation_loss_sum": lambda x, t: fl.distillation_loss(x, x, t, reduction="sum"),
    "cosine_embedding_loss": lambda x, t: fl.cosine_embedding_loss(x, x, np.ones(len(x))),
    "entropy": lambda x, t: fl.entropy(x),
}


def _peak_traced(f: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        f()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", sorted(MEMORY_CASES))
def test_no_n_by_c_allocation(name):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, C)).astype(np.float32)
    t = rng.integers(0, C, N)
    f = MEMORY_CASES[name]
    f(x.copy(), t)  # warm-up: first-call caches are not what this measures
    peak = _peak_traced(lambda: f(x, t))
    assert peak < NC_BYTES // 8, f"{name}: peak {peak} bytes, N x C is {NC_BYTES}"


def test_tracemalloc_sees_a_gradient_allocation():
    """The check above would be vacuous if tracemalloc did not see NumPy's arrays."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, C)).astype(np.float32)
    t = rng.integers(0, C, N)
    assert _peak_traced(lambda: fl.cross_entropy(x, t, return_grad=True)) >= NC_BYTES


# ---------------------------------------------------------------------------------------------
# The GIL and Python threads


def test_large_calls_release_the_gil():
    """While one thread is inside a long call, another keeps running Python code."""
    x = np.broadcast_to(np.float32(0.25), (2**28,))  # zero-stride: no memory, ~0.3-1 s of work
    before = fl.get_num_threads()
    fl.set_num_threads(1)
    try:
        span: list[float] = []

        def worker():
            start = time.perf_counter()
            fl.logsumexp(x)
            span.extend([start, time.perf_counter()])

        th = threading.Thread(target=worker)
        ticks = []
        th.start()
        while th.is_alive():
            ticks.append(time.perf_counter())
        th.join()
    finally:
        fl.set_num_threads(before)
    start, end = span
    inside = [t for t in ticks if start < t < end]
    assert end - start > 0.1, "the call was too short to tell"
    gaps = np.diff([start, *inside, end])
    # Holding the GIL, the main thread could not tick at all during the call.
    assert gaps.max() < 0.5 * (end - start), (
        f"longest pause {gaps.max():.3f} s in a {end - start:.3f} s call"
    )


def test_many_python_threads_get_correct_results():
    rng = np.random.default_rng(2)
    inputs = [
        (rng.standard_normal((256, 700)) * 3).astype(dt) for dt in (np.float32, np.float64) * 8
    ]
    targets = [rng.integers(0, 700, 256) for _ in inputs]

    def work(i: int) -> tuple:
        x, t = inputs[i], targets[i]
        return (
            fl.softmax(x),
            fl.log_softmax(x, 0),
            fl.logsumexp(x),
            fl.cross_entropy(x, t, reduction="none"),
            fl.cross_entropy(x, t, return_grad=True).grad,
            fl.nll_loss(x, t),
        )

    serial = [work(i) for i in range(len(inputs))]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            for want, got in zip(serial, pool.map(work, range(len(inputs)))):
                for a, b in zip(want, got):
                    np.testing.assert_array_equal(a, b)


def test_ctrl_c_during_large_calls_leaves_the_process_usable():
    out = _run_python("""
        import os, signal, threading
        import numpy as np
        import fastloss as fl
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2000, 4000)).astype(np.float32)
        t = rng.integers(0, 4000, 2000)
        want = fl.cross_entropy(x, t)
        threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        calls = 0
        try:
            for _ in range(100000):
                fl.cross_entropy(x, t, return_grad=True)
                fl.softmax(x)
                calls += 1
            print("never interrupted")
        except KeyboardInterrupt:
            print("interrupted after", calls)
        assert fl.cross_entropy(x, t) == want
        assert np.allclose(fl.softmax(x).sum(axis=1), 1, rtol=1e-5)
        print("usable")
    """)
    assert "interrupted after" in out and "usable" in out, out


# ---------------------------------------------------------------------------------------------
# Determinism: bit-identical for 1 and 2 threads and across repeated calls, for every loss.
# Inputs are large enough to run in parallel, in each layout the kernels distinguish.


def _determinism_inputs() -> dict[str, tuple]:
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((300, 1000)) * 4).astype(np.float32)
    t = rng.integers(0, 1000, 300)
    t[::7] = -100
    x3 = rng.standard_normal((8, 64, 300))  # (N, C, positions): the columns layout
    t3 = rng.integers(0, 64, (8, 300))
    q = fl.softmax(rng.standard_normal(x.shape).astype(np.float32))
    w = rng.uniform(0.5, 2, 1000).astype(np.float32)
    return {"x": x, "t": t, "x3": x3, "t3": t3, "q": q, "w": w}


DETERMINISM_CASES: dict[str, Callable[[dict], Any]] = {
    "softmax": lambda d: fl.softmax(d["x"]),
    "log_softmax_columns": lambda d: fl.log_softmax(d["x"], 0),
    "logsumexp": lambda d: fl.logsumexp(d["x3"], 1),
    "softmax_backward": lambda d: fl.softmax_backward(d["q"], d["q"]),
    "log_softmax_backward": lambda d: fl.log_softmax_backward(d["x"], d["x"] / 10, 0),
    "cross_entropy": lambda d: fl.cross_entropy(d["x"], d["t"], label_smoothing=0.1, weight=d["w"]),
    "cross_entropy_none": lambda d: fl.cross_entropy(d["x"], d["t"], reduction="none"),
    "cross_entropy_grad": lambda d: fl.cross_entropy(d["x"], d["t"], return_grad=True),
    "cross_entropy_columns_grad": lambda d: fl.cross_entropy(d["x3"], d["t3"], return_grad=True),
    "cross_entropy_probabilities_grad": lambda d: fl.cross_entropy(
        d["x"], d["q"], return_grad=True
    ),
    "nll_loss": lambda d: fl.nll_loss(d["x"], d["t"], weight=d["w"]),
    "nll_loss_columns_grad": lambda d: fl.nll_loss(
        d["x3"], d["t3"], return_grad=True, reduction="sum"
    ),
    "kl_div_grad": lambda d: fl.kl_div(
        fl.log_softmax(d["x"]), d["q"], reduction="batchmean", return_grad=True
    ),
    "binary_cross_entropy_grad": lambda d: fl.binary_cross_entropy(d["q"], d["q"], return_grad=True),
    "binary_cross_entropy_with_logits_grad": lambda d: fl.binary_cross_entropy_with_logits(
        d["x"], d["q"], pos_weight=d["w"], return_grad=True
    ),
    "distillation_loss_grad": lambda d: fl.distillation_loss(
        d["x"], d["x"][::-1].copy(), d["t"], return_grad=True
    ),
    "distillation_loss_columns": lambda d: fl.distillation_loss(d["x3"], d["x3"] * 2, d["t3"]),
    "cosine_embedding_loss_grad": lambda d: fl.cosine_embedding_loss(
        d["x"], d["x"][::-1].copy(), np.where(d["t"] % 2 == 0, 1.0, -1.0), return_grad=True
    ),
    "entropy": lambda d: fl.entropy(d["x3"], 1),
}


def _flat(result: Any) -> list[np.ndarray]:
    return [np.asarray(r) for r in result] if isinstance(result, tuple) else [np.asarray(result)]


@pytest.mark.parametrize("name", sorted(DETERMINISM_CASES))
def test_bit_identical_for_1_and_2_threads_and_repeated_calls(isa, name):
    data = _determinism_inputs()
    f = DETERMINISM_CASES[name]
    before = fl.get_num_threads()
    try:
        results = []
        for n in (1, 2, 2, 1):
            fl.set_num_threads(n)
            results.append(_flat(f(data)))
    finally:
        fl.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# OpenMP runtimes: threadpoolctl sees and limits ours; torch's runtime coexists with it.


def test_threadpoolctl_lists_and_limits_our_openmp_runtime():
    pytest.importorskip("threadpoolctl")
    out = _run_python("""
        import os
        import threadpoolctl
        import fastloss as fl
        from fastloss import _core
        ours = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "openmp"]
        assert ours, threadpoolctl.threadpool_info()
        # A repaired wheel carries its own libgomp in fastloss.libs/: that one must be listed.
        libs = os.path.join(os.path.dirname(os.path.dirname(fl.__file__)), "fastloss.libs")
        if os.path.isdir(libs):
            assert any(i["filepath"].startswith(libs) for i in ours), (libs, ours)
            print("bundled runtime listed")
        n = fl.get_num_threads()
        with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
            assert fl.get_num_threads() == 1
        assert fl.get_num_threads() == n
        fl.set_num_threads(1)
        info = threadpoolctl.threadpool_info()
        limited = [i["num_threads"] for i in info if i["user_api"] == "openmp"]
        assert 1 in limited, limited
        print("ok")
    """)
    assert "ok" in out


@pytest.mark.parametrize("order", ["torch_first", "fastloss_first"])
def test_coexists_with_torch_in_one_process(order):
    pytest.importorskip("torch")
    imports = (
        "import torch\nimport fastloss as fl"
        if order == "torch_first"
        else "import fastloss as fl\nimport torch"
    )
    out = _run_python(
        imports
        + """
import os
import numpy as np
cores = os.cpu_count()
rng = np.random.default_rng(0)
x = rng.standard_normal((512, 2000)).astype(np.float32)
t = rng.integers(0, 2000, 512)
want = float(torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(t)))
for _ in range(20):  # both runtimes' thread pools in use, alternately
    got = fl.cross_entropy(x, t, return_grad=True)
    ref = torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(t))
    assert abs(float(got.loss) - want) < 1e-4 * abs(want), (float(got.loss), want)
# Neither runtime uses more threads than there are cores: no oversubscription by default.
assert fl.get_num_threads() <= cores, (fl.get_num_threads(), cores)
assert torch.get_num_threads() <= cores, (torch.get_num_threads(), cores)
with open("/proc/self/status") as f:
    threads = int(next(line for line in f if line.startswith("Threads:")).split()[1])
# main + (cores - 1) per OpenMP pool + torch's inter-op pool: a few per core, not hundreds
assert threads <= 4 * cores + 8, threads
print("ok", threads)
"""
    )
    assert "ok" in out
