"""Every public function as calls with named array operands, for the tests that put operands in
hostile places: inside an output buffer, in a masked array, in a zero-size array with a huge
other dimension, under a concurrent writer, in a forked child (tests/test_fuzz_hostile.py,
tests/test_hostile_inputs.py).

A Case makes float64 operands (int64 class targets) for n positions of c classes, each of them
used by the call, and calls its function on them with one output buffer (``out=`` or
``grad_out=``, None for a new array). `flat` makes any result a tuple of arrays, so that
results compare whatever their kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

import fastloss as fl

Operands = dict[str, np.ndarray]


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[np.random.Generator, int, int], Operands]
    run: Callable[[Operands, Optional[np.ndarray]], Any]
    # The operand whose shape and dtype the output buffer has, and which it may also be (the
    # in-place call), or None for a function without an output buffer.
    output_like: Optional[str]


def flat(result: Any) -> tuple[np.ndarray, ...]:
    """A result (a scalar, an array, LossAndGrad) as a tuple of arrays."""
    if isinstance(result, tuple):
        return tuple(np.asarray(r) for r in result)
    return (np.asarray(result),)


def _logits(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    return rng.standard_normal((n, c)) * 3


def _probabilities(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    p = rng.random((n, c)) + 0.05
    return p / p.sum(axis=1, keepdims=True)


def _classes(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    t = rng.integers(0, c, n)
    if n > 1:
        t[0] = -100  # one ignored position
    return t


def _weights(rng: np.random.Generator, c: int) -> np.ndarray:
    return rng.random(c) + 0.5


def _without(name: str, make: Callable[..., Operands]) -> Callable[..., Operands]:
    """`make` for a call that does not take operand `name` (every operand made is used)."""
    return lambda rng, n, c: {k: v for k, v in make(rng, n, c).items() if k != name}


def _make_index(rng: np.random.Generator, n: int, c: int) -> Operands:
    return {"x": _logits(rng, n, c), "target": _classes(rng, n, c), "weight": _weights(rng, c),
            "grad_output": rng.standard_normal(n)}


def _make_probability(rng: np.random.Generator, n: int, c: int) -> Operands:
    return {"x": _logits(rng, n, c), "target": _probabilities(rng, n, c),
            "weight": _weights(rng, c)}


def _make_pair(rng: np.random.Generator, n: int, c: int) -> Operands:
    return {"x": np.log(_probabilities(rng, n, c)), "target": _probabilities(rng, n, c),
            "grad_output": rng.standard_normal((n, c))}


def _make_bce(rng: np.random.Generator, n: int, c: int) -> Operands:
    return {"x": rng.random((n, c)) * 0.9 + 0.05, "target": rng.random((n, c)),
            "weight": _weights(rng, c), "pos_weight": _weights(rng, c)}


def _make_distillation(rng: np.random.Generator, n: int, c: int) -> Operands:
    return {"x": _logits(rng, n, c), "teacher": _logits(rng, n, c),
            "target": _classes(rng, n, c), "weight": _weights(rng, c)}


def _make_cosine(rng: np.random.Generator, n: int, c: int) -> Operands:
    return {"x": rng.standard_normal((n, c)), "x2": rng.standard_normal((n, c)),
            "target": np.where(rng.random(n) < 0.5, 1.0, -1.0),
            "grad_output": rng.standard_normal(n)}


def _make_backward(rng: np.random.Generator, n: int, c: int) -> Operands:
    return {"x": rng.standard_normal((n, c)), "output": fl.softmax(_logits(rng, n, c))}


def _make_logits(rng: np.random.Generator, n: int, c: int) -> Operands:
    return {"x": _logits(rng, n, c)}


CASES = [
    Case("cross_entropy", _make_index, lambda a, out: fl.cross_entropy(
        a["x"], a["target"], weight=a["weight"], label_smoothing=0.1, reduction="none",
        return_grad=True, grad_output=a["grad_output"], grad_out=out), "x"),
    Case("cross_entropy_mean", _without("grad_output", _make_index),
         lambda a, out: fl.cross_entropy(
        a["x"], a["target"], weight=a["weight"], return_grad=True, grad_out=out), "x"),
    Case("cross_entropy_probabilities", _make_probability, lambda a, out: fl.cross_entropy(
        a["x"], a["target"], weight=a["weight"], label_smoothing=0.2, return_grad=True,
        grad_out=out), "x"),
    Case("nll_loss", _make_index, lambda a, out: fl.nll_loss(
        a["x"], a["target"], weight=a["weight"], reduction="none", return_grad=True,
        grad_output=a["grad_output"], grad_out=out), "x"),
    Case("kl_div", _make_pair, lambda a, out: fl.kl_div(
        a["x"], a["target"], reduction="none", return_grad=True, grad_output=a["grad_output"],
        grad_out=out), "x"),
    Case("binary_cross_entropy", _without("pos_weight", _make_bce),
         lambda a, out: fl.binary_cross_entropy(
        a["x"], a["target"], weight=a["weight"], reduction="sum", return_grad=True,
        grad_out=out), "x"),
    Case("binary_cross_entropy_with_logits", _make_bce,
         lambda a, out: fl.binary_cross_entropy_with_logits(
             a["x"], a["target"], weight=a["weight"], pos_weight=a["pos_weight"],
             return_grad=True, grad_out=out), "x"),
    Case("distillation_loss", _make_distillation, lambda a, out: fl.distillation_loss(
        a["x"], a["teacher"], a["target"], weight=a["weight"], label_smoothing=0.1,
        return_grad=True, grad_out=out), "x"),
    Case("cosine_embedding_loss", _make_cosine, lambda a, out: fl.cosine_embedding_loss(
        a["x"], a["x2"], a["target"], margin=-0.5, reduction="none", return_grad=True,
        grad_output=a["grad_output"], grad_out=out), "x"),
    Case("softmax", _make_logits, lambda a, out: fl.softmax(a["x"], out=out), "x"),
    Case("log_softmax", _make_logits, lambda a, out: fl.log_softmax(a["x"], out=out), "x"),
    Case("softmax_backward", _make_backward,
         lambda a, out: fl.softmax_backward(a["x"], a["output"], out=out), "x"),
    Case("log_softmax_backward", _make_backward,
         lambda a, out: fl.log_softmax_backward(a["x"], a["output"], out=out), "x"),
    Case("logsumexp", _make_logits, lambda a, out: fl.logsumexp(a["x"]), None),
    Case("entropy", _make_logits, lambda a, out: fl.entropy(a["x"]), None),
]
CASE_BY_NAME = {case.name: case for case in CASES}
WITH_OUTPUT = [case.name for case in CASES if case.output_like is not None]


def overlapping(operand: np.ndarray, out_shape: tuple[int, ...], kind: str, shift: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """A float64 output buffer of `out_shape` and a view holding `operand`'s values that shares
    its memory: the same start ("same"), `shift` elements later ("shifted"), backwards from
    there ("reversed"), or every other element from there ("strided": a view of a view)."""
    n_out, n_op = int(np.prod(out_shape)), operand.size
    buf = np.zeros(n_out + 2 * n_op + shift + 1)
    out = buf[:n_out].reshape(out_shape)
    memory = buf.view(operand.dtype)  # int64 class targets share the float64 buffer's bytes
    start = 0 if kind == "same" else shift
    if kind == "strided":
        view = memory[start : start + 2 * n_op : 2]
    else:
        view = memory[start : start + n_op]
        if kind == "reversed":
            view = view[::-1]
    view = view.reshape(operand.shape)
    view[...] = operand
    return out, view
