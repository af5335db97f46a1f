"""cross_entropy (or linear_cross_entropy) forward+backward through fastloss.torch, beside the
NumPy API, torch eager and torch.compile, on one input, in one process (issue 16's goals:
fastloss.torch at most 1.15x the NumPy API's time, at least 10x faster than eager and 5x faster
than torch.compile).

Each way gets one warm-up call (torch.compile compiles there), then --repeat rounds time every
way once each; the table gives the median and the best. The NumPy API allocates a new gradient
per call (return_grad=True), or writes a reused grad_out; torch allocates one after
``x.grad = None``; fastloss.torch writes its kept buffer once the previous gradient was freed
(fastloss.torch._gradient_pool), so its time compares with the reused grad_out's. Each torch
way frees its own previous step's gradient (`_Step`), as in a training loop of that way alone.

    python bench/torch_adapter.py [--shape 4096x32000] [--threads 2] [--repeat 7]
    python bench/torch_adapter.py --op linear_cross_entropy [--shape 1024x1024x32000]

linear_cross_entropy's shape is rows x features x classes; input and linear_weight get
gradients (no bias), and torch's ways include its chunked path (``options=``).
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


class _Step:
    """One training step of a torch way, ``x.grad = None`` then forward and backward, on
    `tensors`. Taken in turns with the other ways, the step would free the gradient that the
    previous way left (a 524 MB free charged to the wrong way, and fastloss.torch's kept buffer
    freed by torch's step); `prepare`, untimed, gives the tensors back this way's own gradients
    from its previous step, so that each step frees its own, as in a loop of this way alone."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], step: Callable[[], torch.Tensor]):
        self.tensors, self.step = tensors, step
        self.kept: tuple = (None,) * len(tensors)

    def prepare(self) -> None:
        for t, g in zip(self.tensors, self.kept):
            t.grad = g

    def __call__(self) -> None:
        self.kept = (None,) * len(self.tensors)  # (held here, the old gradients would live on)
        for t in self.tensors:
            t.grad = None
        self.step().backward()
        self.kept = tuple(t.grad for t in self.tensors)


def _timed(ways: dict[str, Callable[[], None]], repeat: int) -> dict[str, list[float]]:
    """Round-robin: each round times every way once, so that interference from other work on a
    shared machine falls on all of them alike. A way's `prepare` (see _Step) runs untimed."""

    def run(call: Callable[[], None]) -> float:
        if isinstance(call, _Step):
            call.prepare()
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    for call in ways.values():
        run(call)  # warm-up (and compilation)
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeat):
        for name, call in ways.items():
            times[name].append(run(call))
    return times


def _cross_entropy_ways(shape: str) -> tuple[str, dict[str, Callable[[], None]], Callable]:
    """(title, ways, check): `check` asserts that fastloss.torch's gradient is torch's."""
    rows, classes = (int(n) for n in shape.split("x"))
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((rows, classes), dtype=np.float32)
    t_np = rng.integers(0, classes, rows)
    x = torch.from_numpy(x_np).requires_grad_()
    t = torch.from_numpy(t_np)
    compiled = torch.compile(F.cross_entropy)
    reused = np.zeros_like(x_np)

    def through(loss: Callable[..., torch.Tensor]) -> _Step:
        return _Step((x,), lambda: loss(x, t))

    ways = {
        "NumPy API (fl.cross_entropy, return_grad=True)": lambda: fl.cross_entropy(
            x_np, t_np, return_grad=True
        ),
        "NumPy API into a reused grad_out": lambda: fl.cross_entropy(
            x_np, t_np, return_grad=True, grad_out=reused
        ),
        "fastloss.torch (flt.cross_entropy + backward)": through(flt.cross_entropy),
        "torch eager (F.cross_entropy + backward)": through(F.cross_entropy),
        "torch.compile (F.cross_entropy + backward)": through(compiled),
    }

    def check() -> None:
        through(flt.cross_entropy)()
        ours = x.grad.clone()
        through(F.cross_entropy)()
        assert torch.allclose(ours, x.grad, rtol=1e-4, atol=1e-9)

    return f"cross_entropy forward+backward, {shape} float32", ways, check


def _linear_cross_entropy_ways(
    shape: str,
) -> tuple[str, dict[str, Callable[[], None]], Callable]:
    rows, features, classes = (int(n) for n in shape.split("x"))
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((rows, features), dtype=np.float32)
    w_np = rng.standard_normal((classes, features), dtype=np.float32) / features**0.5
    t_np = rng.integers(0, classes, rows)
    x = torch.from_numpy(x_np).requires_grad_()
    w = torch.from_numpy(w_np).requires_grad_()
    t = torch.from_numpy(t_np)
    compiled = torch.compile(F.linear_cross_entropy)
    chunked = torch.nn.LinearCrossEntropyOptions()
    grad_input, grad_weight = np.zeros_like(x_np), np.zeros_like(w_np)

    def through(loss: Callable[..., torch.Tensor], **options) -> _Step:
        return _Step((x, w), lambda: loss(x, w, t, **options))

    ways = {
        "NumPy API (fl.linear_cross_entropy, return_grad=True)": lambda: fl.linear_cross_entropy(
            x_np, w_np, t_np, return_grad=True
        ),
        "NumPy API into reused grad_*_out": lambda: fl.linear_cross_entropy(
            x_np,
            w_np,
            t_np,
            return_grad=True,
            grad_input_out=grad_input,
            grad_weight_out=grad_weight,
        ),
        "fastloss.torch (flt.linear_cross_entropy + backward)": through(flt.linear_cross_entropy),
        "torch eager (F.linear_cross_entropy + backward)": through(F.linear_cross_entropy),
        "torch eager, chunked (options=LinearCrossEntropyOptions())": through(
            F.linear_cross_entropy, options=chunked
        ),
        "torch.compile (F.linear_cross_entropy + backward)": through(compiled),
    }

    def check() -> None:
        through(flt.linear_cross_entropy)()
        ours = x.grad.clone(), w.grad.clone()
        through(F.linear_cross_entropy)()
        for g, want in zip(ours, (x.grad, w.grad)):
            assert torch.allclose(g, want, rtol=1e-3, atol=1e-6)

    return f"linear_cross_entropy forward+backward, {shape} float32", ways, check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--op", choices=["cross_entropy", "linear_cross_entropy"], default="cross_entropy"
    )
    parser.add_argument("--shape", help="default 4096x32000, or 1024x1024x32000")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fl.set_num_threads(args.threads)
    if args.op == "cross_entropy":
        title, ways, check = _cross_entropy_ways(args.shape or "4096x32000")
    else:
        title, ways, check = _linear_cross_entropy_ways(args.shape or "1024x1024x32000")

    load_before = os.getloadavg()[0]
    results = _timed(ways, args.repeat)
    load_after = os.getloadavg()[0]
    check()  # the timed calls computed the same thing

    ours = next(name for name in ways if name.startswith("fastloss.torch"))
    numpy_reused = next(name for name in ways if "reused" in name)
    base = statistics.median(results[ours])
    numpy_time = statistics.median(results[numpy_reused])
    print(
        f"{title}, {args.threads} threads, torch {torch.__version__}, fastloss "
        f"{fl.__version__} ({fl.cpu_capability()})"
    )
    print("| way | median ms | best ms | median / fastloss.torch |")
    print("|---|---:|---:|---:|")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"| {name} | {median * 1e3:.1f} | {min(times) * 1e3:.1f} | {median / base:.2f} |")
    print(
        f"fastloss.torch / {numpy_reused}: {base / numpy_time:.3f}; "
        f"1-minute load average {load_before:.2f} before, {load_after:.2f} after"
    )


if __name__ == "__main__":
    main()
