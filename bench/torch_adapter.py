"""cross_entropy forward+backward through fastloss.torch, beside the NumPy API, torch eager and
torch.compile, on one input, in one process (issue 16's goals: fastloss.torch at most 1.15x the
NumPy API's time, at least 10x faster than eager and 5x faster than torch.compile).

Each way gets one warm-up call (torch.compile compiles there), then --repeat rounds time every
way once each; the table gives the median and the best. The NumPy API allocates a new gradient
per call (return_grad=True), or writes a reused grad_out; torch allocates one after
``x.grad = None``; fastloss.torch writes its kept buffer once the previous gradient was freed
(fastloss.torch._gradient_pool), so its time compares with the reused grad_out's.

    python bench/torch_adapter.py [--shape 4096x32000] [--threads 2] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

import fastloss as fl
import fastloss.torch as flt


def _timed(ways: dict[str, Callable[[], None]], repeat: int) -> dict[str, list[float]]:
    """Round-robin: each round times every way once, so that interference from other work on a
    shared machine falls on all of them alike."""
    for call in ways.values():
        call()  # warm-up (and compilation)
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeat):
        for name, call in ways.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="4096x32000")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rows, classes = (int(n) for n in args.shape.split("x"))
    torch.set_num_threads(args.threads)
    fl.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((rows, classes), dtype=np.float32)
    t_np = rng.integers(0, classes, rows)
    x = torch.from_numpy(x_np).requires_grad_()
    t = torch.from_numpy(t_np)
    compiled = torch.compile(F.cross_entropy)

    def numpy_api() -> None:
        fl.cross_entropy(x_np, t_np, return_grad=True)

    reused = np.zeros_like(x_np)

    def numpy_api_reused() -> None:
        fl.cross_entropy(x_np, t_np, return_grad=True, grad_out=reused)

    def through(loss: Callable[..., torch.Tensor]) -> Callable[[], None]:
        def call() -> None:
            x.grad = None
            loss(x, t).backward()

        return call

    ways = {
        "NumPy API (fl.cross_entropy, return_grad=True)": numpy_api,
        "NumPy API into a reused grad_out": numpy_api_reused,
        "fastloss.torch (flt.cross_entropy + backward)": through(flt.cross_entropy),
        "torch eager (F.cross_entropy + backward)": through(F.cross_entropy),
        "torch.compile (F.cross_entropy + backward)": through(compiled),
    }
    load_before = os.getloadavg()[0]
    results = _timed(ways, args.repeat)
    load_after = os.getloadavg()[0]

    # The gradients agree (a check that the timed calls computed the same thing).
    x.grad = None
    flt.cross_entropy(x, t).backward()
    ours = x.grad.clone()
    x.grad = None
    F.cross_entropy(x, t).backward()
    assert torch.allclose(ours, x.grad, rtol=1e-4, atol=1e-9)

    base = statistics.median(results["fastloss.torch (flt.cross_entropy + backward)"])
    numpy_time = statistics.median(results["NumPy API into a reused grad_out"])
    print(f"cross_entropy forward+backward, {rows}x{classes} float32, {args.threads} threads, "
          f"torch {torch.__version__}, fastloss {fl.__version__} ({fl.cpu_capability()})")
    print("| way | median ms | best ms | median / fastloss.torch |")
    print("|---|---:|---:|---:|")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"| {name} | {median * 1e3:.1f} | {min(times) * 1e3:.1f} | {median / base:.2f} |")
    print(f"fastloss.torch / NumPy API into a reused grad_out: {base / numpy_time:.3f}; "
          f"1-minute load average {load_before:.2f} before, {load_after:.2f} after")


if __name__ == "__main__":
    main()
