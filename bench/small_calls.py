"""Per-call time of every public function on a small input, fastloss beside torch, back to back.

The harness (python -m fastloss.bench) reports medians, which on a shared 2-core machine swing
by 2x at the microsecond scale (one descheduled call moves them; torch's second thread can wait
a whole scheduler tick). Here each call is timed as the best of --repeat runs of --number calls
(timeit's convention: interference only ever slows a run), in one process, so fastloss and torch
are compared in the same minute.

    python bench/small_calls.py [--shape 32x10] [--threads 2] [--number 2000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np

import fastloss as fl


def calls(shape: tuple[int, int], torch):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    x2 = rng.standard_normal(shape).astype(np.float32)
    y = np.arange(shape[0]) % shape[1]
    p, lp = fl.softmax(x2), fl.log_softmax(x2)
    prob = np.clip(1 / (1 + np.exp(-x)), 2**-6, 1 - 2**-6).astype(np.float32)
    soft = rng.uniform(0, 1, shape).astype(np.float32)
    sign = np.where(np.arange(shape[0]) % 2 == 0, 1, -1)
    g = np.empty_like(x)
    F = torch.nn.functional if torch else None
    T = (lambda a: torch.from_numpy(np.ascontiguousarray(a))) if torch else None
    if torch:  # the same arrays as tensors, made once, outside the timed calls
        tx, tx2, ty, tp, tlp = T(x), T(x2), T(y), T(p), T(lp)
        tprob, tsoft, tsign = T(prob), T(soft), T(sign)

    def torch_distillation(student, teacher, target, temperature=2.0, alpha=0.5):
        soft = F.kl_div(
            F.log_softmax(student / temperature, -1),
            F.softmax(teacher / temperature, -1),
            reduction="batchmean",
        )
        hard = F.cross_entropy(student, target)
        return alpha * hard + (1 - alpha) * temperature**2 * soft

    def torch_focal(x, t, alpha=0.25, gamma=2.0):  # torchvision's, averaged
        p = torch.sigmoid(x)
        ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        p_t = p * t + (1 - p) * (1 - t)
        return ((alpha * t + (1 - alpha) * (1 - t)) * ce * (1 - p_t) ** gamma).mean()

    def grad_of(fn, a, *rest):  # torch: forward and backward w.r.t. the first argument
        leaf = T(a).requires_grad_()
        tensors = [T(r) for r in rest]
        return lambda: fn(leaf, *tensors).backward()

    rows = [
        ("softmax", lambda: fl.softmax(x), torch and (lambda: torch.softmax(tx, -1))),
        (
            "log_softmax",
            lambda: fl.log_softmax(x),
            torch and (lambda: torch.log_softmax(tx, -1)),
        ),
        ("logsumexp", lambda: fl.logsumexp(x), torch and (lambda: torch.logsumexp(tx, -1))),
        (
            "softmax_backward",
            lambda: fl.softmax_backward(x2, p),
            torch and (lambda: torch._softmax_backward_data(tx2, tp, -1, tx2.dtype)),
        ),
        (
            "log_softmax_backward",
            lambda: fl.log_softmax_backward(x2, lp),
            torch and (lambda: torch._log_softmax_backward_data(tx2, tlp, -1, tx2.dtype)),
        ),
        (
            "entropy",
            lambda: fl.entropy(x),
            torch and (lambda: -(torch.softmax(tx, -1) * torch.log_softmax(tx, -1)).sum(-1)),
        ),
        (
            "cross_entropy",
            lambda: fl.cross_entropy(x, y),
            torch and (lambda: F.cross_entropy(tx, ty)),
        ),
        (
            "cross_entropy+grad",
            lambda: fl.cross_entropy(x, y, return_grad=True),
            torch and grad_of(F.cross_entropy, x, y),
        ),
        (
            "cross_entropy+grad, grad_out=",
            lambda: fl.cross_entropy(x, y, return_grad=True, grad_out=g),
            None,
        ),
        (
            "nll_loss",
            lambda: fl.nll_loss(lp, y),
            torch and (lambda: F.nll_loss(tlp, ty)),
        ),
        (
            "nll_loss+grad",
            lambda: fl.nll_loss(lp, y, return_grad=True),
            torch and grad_of(F.nll_loss, lp, y),
        ),
        (
            "kl_div batchmean",
            lambda: fl.kl_div(lp, p, reduction="batchmean"),
            torch and (lambda: F.kl_div(tlp, tp, reduction="batchmean")),
        ),
        (
            "kl_div batchmean+grad",
            lambda: fl.kl_div(lp, p, reduction="batchmean", return_grad=True),
            torch and grad_of(lambda a, b: F.kl_div(a, b, reduction="batchmean"), lp, p),
        ),
        (
            "binary_cross_entropy",
            lambda: fl.binary_cross_entropy(prob, soft),
            torch and (lambda: F.binary_cross_entropy(tprob, tsoft)),
        ),
        (
            "binary_cross_entropy+grad",
            lambda: fl.binary_cross_entropy(prob, soft, return_grad=True),
            torch and grad_of(F.binary_cross_entropy, prob, soft),
        ),
        (
            "bce_with_logits",
            lambda: fl.binary_cross_entropy_with_logits(x, soft),
            torch and (lambda: F.binary_cross_entropy_with_logits(tx, tsoft)),
        ),
        (
            "bce_with_logits+grad",
            lambda: fl.binary_cross_entropy_with_logits(x, soft, return_grad=True),
            torch and grad_of(F.binary_cross_entropy_with_logits, x, soft),
        ),
        # torch has no focal loss (torchvision has): its expression in torch ops, averaged.
        (
            "sigmoid_focal_loss",
            lambda: fl.sigmoid_focal_loss(x, soft, reduction="mean"),
            torch and (lambda: torch_focal(tx, tsoft)),
        ),
        (
            "sigmoid_focal_loss+grad",
            lambda: fl.sigmoid_focal_loss(x, soft, reduction="mean", return_grad=True),
            torch and grad_of(torch_focal, x, soft),
        ),
        # torch has no distillation loss: the expression fastloss's equals (temperature 2, alpha
        # 0.5, the defaults), composed from torch's functions.
        (
            "distillation_loss",
            lambda: fl.distillation_loss(x, x2, y),
            torch and (lambda: torch_distillation(tx, tx2, ty)),
        ),
        (
            "distillation_loss+grad",
            lambda: fl.distillation_loss(x, x2, y, return_grad=True),
            torch and grad_of(torch_distillation, x, x2, y),
        ),
        (
            "cosine_embedding_loss",
            lambda: fl.cosine_embedding_loss(x, x2, sign),
            torch and (lambda: F.cosine_embedding_loss(tx, tx2, tsign)),
        ),
        (
            "cosine_embedding_loss+grad",
            lambda: fl.cosine_embedding_loss(x, x2, sign, return_grad=True),
            torch and grad_of(F.cosine_embedding_loss, x, x2, sign),
        ),
    ]
    return rows


def best(fn, number: int, repeat: int) -> float:  # type: ignore[no-untyped-def]
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="32x10")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--number", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    shape = tuple(int(n) for n in args.shape.split("x"))
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    fl.set_num_threads(args.threads)
    print(
        f"{args.shape} float32, {args.threads} threads, best of {args.repeat} x {args.number} calls"
    )
    print(f"{'call':32s} {'fastloss':>10s} {'torch':>10s}  torch/fastloss")
    for name, ours, theirs in calls(shape, torch):
        t_ours = best(ours, args.number, args.repeat) * 1e6
        line = f"{name:32s} {t_ours:8.2f} us"
        if theirs:
            t_theirs = best(theirs, args.number, args.repeat) * 1e6
            line += f" {t_theirs:8.2f} us  {t_theirs / t_ours:6.1f}x"
        print(line)


if __name__ == "__main__":
    main()
