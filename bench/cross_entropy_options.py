"""What cross_entropy's opt-in options cost beside the plain call, in one process, interleaved.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/cross_entropy_options.py \
        [--shape 4096x32000] [--threads 2] [--repeats 9] [--loss distillation_loss]

``--loss distillation_loss`` times distillation_loss's options instead (teacher logits of the
same shape, the default temperature, alpha and divergence). ``--loss linear_cross_entropy``
times linear_cross_entropy's, on a shape rows x features x classes (default 1024x1024x32000),
its gradients written into reused buffers.

Each round times every variant once (forward, then forward+gradient into a reused buffer), so a
burst of load on a shared machine touches all of them alike; the table gives medians over rounds
and each option's ratio to the plain call of the same mode.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fastloss as fl

VARIANTS = {
    "plain": {},
    "z_loss=1e-4": {"z_loss": 1e-4},
    "return_lse": {"return_lse": True},
    "softcap=30": {"softcap": 30.0},
}
# distillation_loss takes each of them but return_lse.
DISTILLATION_VARIANTS = {k: v for k, v in VARIANTS.items() if k != "return_lse"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--loss", choices=["cross_entropy", "distillation_loss",
                                           "linear_cross_entropy"], default="cross_entropy")
    args = parser.parse_args()
    linear = args.loss == "linear_cross_entropy"
    shape = args.shape or ("1024x1024x32000" if linear else "4096x32000")
    fl.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    variants = VARIANTS
    loss = fl.cross_entropy
    if linear:
        n, d, c = (int(v) for v in shape.split("x"))
        x = rng.standard_normal((n, d), dtype=np.float32)
        head = rng.standard_normal((c, d), dtype=np.float32) * (4 / d**0.5)  # logits ~ N(0, 16)
        grad, grad_head = np.empty_like(x), np.empty_like(head)

        def loss(x, y, axis, grad_out=None, **options):
            buffers = {} if grad_out is None else {"grad_input_out": grad_out,
                                                    "grad_weight_out": grad_head}
            return fl.linear_cross_entropy(x, head, y, **options, **buffers)
    else:
        n, c = (int(v) for v in shape.split("x"))
        x = rng.standard_normal((n, c), dtype=np.float32) * 4
        grad = np.empty_like(x)
    y = rng.integers(0, c, n)
    if args.loss == "distillation_loss":
        variants = DISTILLATION_VARIANTS
        teacher = rng.standard_normal((n, c), dtype=np.float32) * 4

        def loss(x, y, **options):
            return fl.distillation_loss(x, teacher, y, **options)

    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for name, options in variants.items():
            for mode in ("forward", "forward+grad"):
                extra = {"return_grad": True, "grad_out": grad} if mode != "forward" else {}
                start = time.perf_counter()
                loss(x, y, axis=-1, **options, **extra)
                times.setdefault((name, mode), []).append(time.perf_counter() - start)
    print(f"{args.loss} {shape} float32, {args.threads} threads, median of {args.repeats} rounds")
    print(f"{'option':<14}{'forward':>12}{'ratio':>8}{'fwd+grad':>12}{'ratio':>8}")
    base = {m: statistics.median(times[("plain", m)]) for m in ("forward", "forward+grad")}
    for name in variants:
        f = statistics.median(times[(name, "forward")])
        g = statistics.median(times[(name, "forward+grad")])
        print(f"{name:<14}{f * 1e3:>10.2f}ms{f / base['forward']:>7.2f}x"
              f"{g * 1e3:>10.2f}ms{g / base['forward+grad']:>7.2f}x")


if __name__ == "__main__":
    main()
