"""linear_cross_entropy beside its floors and torch (python -m fastloss.bench --linear SHAPES).

For each (N, d, V) and dtype, one process times, best of --repeats calls (the floors and
fastloss's calls by turns, one of each per round, so that their ratios compare moments close
together on a shared machine; each one's peak memory comes from a first, untimed call):

- ``gemm``: the bare forward GEMM through NumPy's BLAS into a reused N x V buffer,
  ``np.matmul(input, linear_weight.T, out=buf)`` (float32 operands: NumPy has no BLAS for half);
- ``3 gemms``: that and the two gradient GEMMs, each into a reused buffer;
- ``read W``: one read of linear_weight (a sum over it), the floor of a few-row evaluation;
- fastloss's ``linear_cross_entropy`` forward and forward+gradients;
- torch's ``F.linear_cross_entropy`` with ``options=None`` and with
  ``LinearCrossEntropyOptions()``, forward and forward+backward (gradients of input, weight and
  bias);

and the peak memory of each beyond its inputs (the rise of VmHWM after a reset of the peak through
/proc/self/clear_refs; Linux only, else blank). It reports the BLAS that NumPy runs (threadpoolctl).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional

import numpy as np

__all__ = ["run_linear"]


def _peak_reset() -> Optional[int]:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status("VmRSS")
    except OSError:
        return None


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _peak(fn: Callable[[], Any]) -> Optional[int]:
    """Peak bytes of one call above the resident size before it."""
    gc.collect()
    base = _peak_reset()
    fn()
    return None if base is None else max(0, _status("VmHWM") - base)


def _measure(fn: Callable[[], Any], repeats: int) -> tuple[float, Optional[int]]:
    """(best seconds of `repeats` calls, peak bytes of the first, untimed call)."""
    peak = _peak(fn)
    return _best_by_turns([fn], repeats)[0], peak


def _best_by_turns(fns: Sequence[Callable[[], Any]], repeats: int) -> list[float]:
    """Each function's best seconds of `repeats` rounds in which every one runs once, by turns:
    a ratio between two of them then compares calls made moments apart on a shared machine."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def _blas_description() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    parts = [
        f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} "
        f"threads={i.get('num_threads')}"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    return "; ".join(parts) or "none found"


def run_linear(shapes: Sequence[tuple[int, int, int]], dtypes: Sequence[str], repeats: int) -> None:
    import fastloss as fl

    try:
        import torch
    except ImportError:
        torch = None
    print(f"fastloss {fl.__version__}, {fl.cpu_capability()}, {fl.get_num_threads()} threads")
    print(f"NumPy {np.__version__} BLAS: {_blas_description()}")
    if torch is not None:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')} "
        f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE')}"
    )
    print()
    header = (
        f"{'shape (N,d,V)':>22} {'dtype':>8} {'what':>30} {'time s':>9} {'ratio':>7} {'peak MB':>8}"
    )
    print(header)
    rng = np.random.default_rng(0)
    for n, d, v in shapes:
        for dtype_name in dtypes:
            rows = _one_case(fl, torch, rng, n, d, v, dtype_name, repeats)
            gemm = rows[0][1]
            gemms = rows[1][1]
            for what, seconds, peak in rows:
                if what.startswith("fastloss forward+"):
                    ratio = f"{seconds / gemms:7.3f}"
                elif what.startswith("fastloss forward"):
                    ratio = f"{seconds / gemm:7.3f}"
                else:
                    ratio = ""
                mb = "" if peak is None else f"{peak / 2**20:8.0f}"
                shape = f"({n}, {d}, {v})"
                print(
                    f"{shape:>22} {dtype_name:>8} {what:>30} {seconds:9.3f} {ratio:>7} {mb:>8}",
                    flush=True,
                )
            print()


def _one_case(
    fl: Any,
    torch: Any,
    rng: np.random.Generator,
    n: int,
    d: int,
    v: int,
    dtype_name: str,
    repeats: int,
) -> list[tuple[str, float, Optional[int]]]:
    """(what, best seconds, peak bytes) of every measurement of one shape and dtype. Ratios are
    taken against the first (the forward GEMM) and the second (the three GEMMs)."""
    dtype = _bfloat16() if dtype_name == "bfloat16" else np.dtype(dtype_name)
    x32 = rng.standard_normal((n, d), np.float32)
    w32 = (rng.standard_normal((v, d), np.float32) / np.sqrt(d)).astype(np.float32)
    b32 = rng.standard_normal(v).astype(np.float32)
    t = rng.integers(0, v, n)
    x, w, b = x32.astype(dtype), w32.astype(dtype), b32.astype(dtype)
    # The GEMMs' reused outputs, freed before torch runs.
    out = {
        "logits": np.empty((n, v), np.float32),
        "grad_input": np.empty((n, d), np.float32),
        "grad_weight": np.empty((v, d), np.float32),
    }

    def one_gemm() -> None:
        np.matmul(x32, w32.T, out=out["logits"])

    def three_gemms() -> None:
        np.matmul(x32, w32.T, out=out["logits"])
        np.matmul(out["logits"], w32, out=out["grad_input"])
        np.matmul(out["logits"].T, x32, out=out["grad_weight"])

    def read_weight() -> None:
        (w if w.dtype.kind == "f" else w.view(np.uint16)).sum(dtype=np.float32)

    def forward() -> None:
        fl.linear_cross_entropy(x, w, t, linear_bias=b)

    def forward_gradients() -> None:
        fl.linear_cross_entropy(x, w, t, linear_bias=b, return_grad=True)

    # Each one's peak from its first, untimed call (the GEMMs' outputs are resident before
    # fastloss's, so its peaks do not include them); then the floors and fastloss by turns (their
    # ratios are the goals).
    floors_and_ours = [one_gemm, three_gemms, read_weight, forward, forward_gradients]
    peaks = [_peak(fn) for fn in floors_and_ours]
    times = _best_by_turns(floors_and_ours, repeats)
    out.clear()
    labels = [
        "gemm (float32, reused out)",
        "3 gemms (float32, reused out)",
        "read linear_weight once",
        "fastloss forward",
        "fastloss forward+gradients",
    ]
    rows = list(zip(labels, times, peaks))
    if torch is None:
        return rows
    import torch.nn.functional as F

    tdtype = getattr(torch, dtype_name)
    tx, tw, tb = (torch.from_numpy(a).to(tdtype) for a in (x32, w32, b32))
    tt = torch.from_numpy(t)
    for label, options in (
        ("options=None", None),
        ("LinearCrossEntropyOptions()", torch.nn.LinearCrossEntropyOptions()),
    ):

        def forward(o: Any = options) -> None:
            with torch.no_grad():
                F.linear_cross_entropy(tx, tw, tt, linear_bias=tb, options=o)

        def backward(o: Any = options) -> None:
            a, bw, bb = (u.detach().requires_grad_() for u in (tx, tw, tb))
            F.linear_cross_entropy(a, bw, tt, linear_bias=bb, options=o).backward()

        rows.append((f"torch fwd {label}", *_measure(forward, repeats)))
        rows.append((f"torch fwd+bwd {label}", *_measure(backward, repeats)))
    return rows


def _bfloat16() -> np.dtype:
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)
