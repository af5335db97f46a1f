"""Side-by-side timing of two fastloss builds on the large shapes, alternating between them.

    python bench/ab_compare.py --a PATH_A --b PATH_B [--rounds 5] [--threads 2]

PATH_A and PATH_B are directories holding a `fastloss` package (a source tree's `python/` with
its built `_core` module next to it, or a site-packages); each round runs one process per build,
in alternating order, and every call's median over the round goes into the table (the median of
the rounds' medians, in ms, and B / A). Used to check that a change leaves large shapes no slower.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CALLS = {
    "cross_entropy": "fl.cross_entropy(x, t)",
    "cross_entropy+grad": "fl.cross_entropy(x, t, return_grad=True, grad_out=g)",
    "cross_entropy smoothing": "fl.cross_entropy(x, t, label_smoothing=0.1)",
    "cross_entropy smoothing+grad": "fl.cross_entropy(x, t, label_smoothing=0.1, return_grad=True, grad_out=g)",
    "cross_entropy weight+grad": "fl.cross_entropy(x, t, weight=w, return_grad=True, grad_out=g)",
    "cross_entropy probabilities": "fl.cross_entropy(x, q)",
    "cross_entropy probabilities+grad": "fl.cross_entropy(x, q, return_grad=True, grad_out=g)",
    "cross_entropy softcap": "fl.cross_entropy(x, t, softcap=30.0)",
    "cross_entropy softcap+grad": "fl.cross_entropy(x, t, softcap=30.0, return_grad=True, grad_out=g)",
    "nll_loss": "fl.nll_loss(x, t)",
    "distillation_loss": "fl.distillation_loss(x, q, t)",
    "distillation_loss+grad": "fl.distillation_loss(x, q, t, return_grad=True, grad_out=g)",
    "binary_cross_entropy_with_logits": "fl.binary_cross_entropy_with_logits(x, q)",
    "binary_cross_entropy_with_logits+grad": "fl.binary_cross_entropy_with_logits(x, q, return_grad=True, grad_out=g)",
    "cosine_embedding_loss+grad": "fl.cosine_embedding_loss(x, q, y, return_grad=True, grad_out=g)",
    "logsumexp": "fl.logsumexp(x)",
    "log_softmax": "fl.log_softmax(x, out=g)",
    "softmax": "fl.softmax(x, out=g)",
    "entropy": "fl.entropy(x)",
    # The class axis in columns: xc is x transposed into a (C, N) array, reduced over axis 0.
    "logsumexp columns": "fl.logsumexp(xc, axis=0)",
    "log_softmax columns": "fl.log_softmax(xc, axis=0, out=gc)",
    "softmax columns": "fl.softmax(xc, axis=0, out=gc)",
    "entropy columns": "fl.entropy(xc, axis=0)",
    "cross_entropy columns": "fl.cross_entropy(xc, t, axis=0)",
    "cross_entropy columns+grad": "fl.cross_entropy(xc, t, axis=0, return_grad=True, grad_out=gc)",
    "nll_loss columns+grad": "fl.nll_loss(xc, t, axis=0, return_grad=True, grad_out=gc)",
    "distillation_loss columns": "fl.distillation_loss(xc, qc, t, axis=0)",
    "distillation_loss columns+grad": "fl.distillation_loss(xc, qc, t, axis=0, return_grad=True, grad_out=gc)",
    "cross_entropy bfloat16+grad": "fl.cross_entropy(xb, t, return_grad=True, grad_out=gb)",
    "softmax bfloat16": "fl.softmax(xb, out=gb)",
    "log_softmax bfloat16": "fl.log_softmax(xb, out=gb)",
    "logsumexp bfloat16": "fl.logsumexp(xb)",
    "cross_entropy float64+grad": "fl.cross_entropy(xd, t, return_grad=True, grad_out=gd)",
    "softmax float64": "fl.softmax(xd, out=gd)",
    "cross_entropy float64": "fl.cross_entropy(xd, t)",
    "logsumexp float64": "fl.logsumexp(xd)",
    "logsumexp float64 columns": "fl.logsumexp(xdc, axis=0)",
}

WORKER = """
import json, sys, time
import numpy as np
import fastloss as fl
shapes, threads, calls = json.loads(sys.argv[1])
fl.set_num_threads(threads)
rng = np.random.default_rng(0)
result = {"file": fl.__file__}
for n, c in shapes:
    x = rng.standard_normal((n, c), dtype=np.float32)
    q = rng.random((n, c), dtype=np.float32)
    q /= q.sum(axis=1, keepdims=True)
    t = rng.integers(0, c, n)
    w = rng.random(c, dtype=np.float32) + 0.5
    y = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    g = np.empty_like(x)
    xd = x.astype(np.float64) if any("float64" in name for name in calls) else None
    gd = None if xd is None else np.empty_like(xd)
    xdc = None if xd is None else np.ascontiguousarray(xd.T)
    xc = np.ascontiguousarray(x.T)
    qc = np.ascontiguousarray(q.T)
    gc = np.empty_like(xc)
    try:
        import ml_dtypes
        xb = x.astype(ml_dtypes.bfloat16)
        gb = np.empty_like(xb)
    except ImportError:
        xb = gb = None
    for name, code in calls.items():
        if xb is None and "bfloat16" in name:
            continue
        f = eval("lambda: " + code)
        f()
        times = []
        deadline = time.perf_counter() + 0.6
        while len(times) < 5 or time.perf_counter() < deadline:
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
        result[f"{name} {n}x{c}"] = float(np.median(times))
print(json.dumps(result))
"""


def run(path: str, shapes: list, threads: int, calls: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=path)
    out = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps([shapes, threads, calls])],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="directory holding build A's fastloss")
    parser.add_argument("--b", required=True, help="directory holding build B's fastloss")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shapes", default="4096x1000,4096x32000")
    parser.add_argument("--calls", default=None, help="comma-separated call names (default: all)")
    args = parser.parse_args()
    calls = CALLS if args.calls is None else {k: CALLS[k] for k in args.calls.split(",")}
    shapes = [[int(v) for v in s.split("x")] for s in args.shapes.split(",")]
    rounds: dict[str, list] = {"a": [], "b": []}
    for r in range(args.rounds):
        order = ["a", "b"] if r % 2 == 0 else ["b", "a"]
        for which in order:
            rounds[which].append(run(getattr(args, which), shapes, args.threads, calls))
    print(f"A: {rounds['a'][0]['file']}\nB: {rounds['b'][0]['file']}")
    print(
        f"{args.rounds} alternating rounds, {args.threads} threads, "
        "float32 unless the call names its dtype; median ms per call"
    )
    print(f"| call | A ms | B ms | B / A |\n|---|---|---|---|")
    keys = [k for k in rounds["a"][0] if k != "file"]
    for key in keys:
        a = sorted(r[key] for r in rounds["a"])[args.rounds // 2] * 1e3
        b = sorted(r[key] for r in rounds["b"])[args.rounds // 2] * 1e3
        print(f"| {key} | {a:.3f} | {b:.3f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
