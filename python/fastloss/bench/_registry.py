"""The benchmark registry: one `Case` per operation, with a setup and a function per provider."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = [
    "CASES",
    "FORWARD",
    "GRAD",
    "PROVIDERS",
    "Case",
    "embedding_pairs_and_signs",
    "grad_and_log_softmax_output",
    "grad_and_softmax_output",
    "log_probabilities_and_probabilities",
    "logits",
    "logits_and_binary_targets",
    "logits_and_class_targets",
    "probabilities_and_soft_targets",
    "register",
]

Inputs = tuple[np.ndarray, ...]
# (shape, dtype, rng) -> the positional inputs of one call, as NumPy arrays.
Setup = Callable[[tuple[int, ...], np.dtype, np.random.Generator], Inputs]
# (provider's module, *inputs converted for that provider) -> output(s).
OpFn = Callable[..., Any]

FORWARD = "forward"
GRAD = "forward+backward"

# Every provider a case may name; fastloss is the reference the others are checked against.
PROVIDERS = ("fastloss", "torch", "jax", "scipy", "numpy")

# (rtol, atol) per dtype for comparing a peer's output with fastloss's. Loose enough for a different
# summation order and a different exp/log (a few ulp), tight enough to catch a wrong formula.
DEFAULT_TOLERANCE: dict[str, tuple[float, float]] = {
    "float32": (1e-4, 1e-6),
    "float64": (1e-9, 1e-12),
    # half precision: peers round intermediates (PyTorch stores log_softmax in half before NLL)
    "float16": (4e-3, 1e-4),
    "bfloat16": (3e-2, 1e-3),
}


@dataclass(frozen=True)
class Case:
    """One benchmarked operation.

    `forward` maps a provider name to ``fn(module, *inputs)``; `grad` (optional) does the same for
    the forward+backward mode, where fastloss and numpy return ``(loss, grad)`` themselves and torch
    and jax return the scalar loss, which the harness differentiates w.r.t. the first input.
    `description` (optional, shown by --list) says what a peer's call is where that is not obvious.
    `default`: whether a run without --ops includes the case; one that is not runs only when --ops
    names it (or a pattern matches it, as ``--ops '*'``), which keeps the default run short.
    """

    op: str
    setup: Setup
    forward: dict[str, OpFn]
    grad: dict[str, OpFn] = field(default_factory=dict)
    tolerance: dict[str, tuple[float, float]] = field(default_factory=dict)
    description: str = ""
    default: bool = True

    def __post_init__(self) -> None:
        for mode, fns in ((FORWARD, self.forward), (GRAD, self.grad)):
            if fns and "fastloss" not in fns:
                raise ValueError(f"case {self.op!r} ({mode}) has no 'fastloss' provider")
            unknown = sorted(set(fns) - set(PROVIDERS))
            if unknown:
                raise ValueError(f"case {self.op!r}: unknown providers {unknown}; use {PROVIDERS}")

    def modes(self) -> list[str]:
        return [FORWARD, GRAD] if self.grad else [FORWARD]

    def functions(self, mode: str) -> dict[str, OpFn]:
        return self.forward if mode == FORWARD else self.grad

    def label(self, mode: str) -> str:
        """Name of a (case, mode) in tables, CSV and --ops: "op" or "op+grad"."""
        return self.op if mode == FORWARD else f"{self.op}+grad"

    def tolerance_for(self, dtype: np.dtype) -> tuple[float, float]:
        name = np.dtype(dtype).name
        return self.tolerance.get(name, DEFAULT_TOLERANCE.get(name, (1e-3, 1e-5)))


CASES: dict[str, Case] = {}


def register(case: Case) -> Case:
    """Add `case` to the registry (op names are unique)."""
    if case.op in CASES:
        raise ValueError(f"a benchmark case named {case.op!r} is already registered")
    CASES[case.op] = case
    return case


# --- setups -----------------------------------------------------------------------------------


def logits(shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    """Standard-normal logits of `shape`; the class axis is the last one."""
    if dtype.itemsize == 2:  # NumPy draws float32/float64 only: round float32 draws
        return (rng.standard_normal(shape, dtype=np.float32).astype(dtype),)
    return (rng.standard_normal(shape, dtype=dtype),)


def logits_and_class_targets(
    shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator
) -> Inputs:
    """Logits (N, C) and int64 class indices (N,) in [0, C); int64 because torch requires it."""
    (x,) = logits(shape, dtype, rng)
    return x, rng.integers(0, shape[-1], size=shape[:-1], dtype=np.int64)


# --- NumPy peers: the numerically stable textbook formulas ----------------------------------------


def _row_max(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    # a row of -inf (or holding +inf) would give inf - inf = NaN; shift it by 0 instead (as SciPy)
    return np.where(np.isfinite(m), m, 0)


def numpy_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - _row_max(x, axis))
    e /= np.sum(e, axis=axis, keepdims=True)
    return e


def numpy_log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = x - _row_max(x, axis)
    shifted -= np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
    return shifted


def numpy_logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    m = _row_max(x, axis)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(x - m), axis=axis))


# --- built-in cases ---------------------------------------------------------------------------

register(
    Case(
        op="softmax",
        setup=logits,
        forward={
            "fastloss": lambda fl, x: fl.softmax(x, axis=-1),
            "torch": lambda torch, x: torch.nn.functional.softmax(x, dim=-1),
            "jax": lambda jax, x: jax.nn.softmax(x, axis=-1),
            "scipy": lambda scipy, x: scipy.special.softmax(x, axis=-1),
            "numpy": lambda np_, x: numpy_softmax(x, axis=-1),
        },
    )
)

register(
    Case(
        op="log_softmax",
        setup=logits,
        forward={
            "fastloss": lambda fl, x: fl.log_softmax(x, axis=-1),
            "torch": lambda torch, x: torch.nn.functional.log_softmax(x, dim=-1),
            "jax": lambda jax, x: jax.nn.log_softmax(x, axis=-1),
            "scipy": lambda scipy, x: scipy.special.log_softmax(x, axis=-1),
            "numpy": lambda np_, x: numpy_log_softmax(x, axis=-1),
        },
    )
)

register(
    Case(
        op="logsumexp",
        setup=logits,
        forward={
            "fastloss": lambda fl, x: fl.logsumexp(x, axis=-1),
            "torch": lambda torch, x: torch.logsumexp(x, dim=-1),
            "jax": lambda jax, x: jax.nn.logsumexp(x, axis=-1),
            "scipy": lambda scipy, x: scipy.special.logsumexp(x, axis=-1),
            "numpy": lambda np_, x: numpy_logsumexp(x, axis=-1),
        },
    )
)


# --- softmax-family gradients and entropy --------------------------------------------------------


def grad_and_softmax_output(
    shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator
) -> Inputs:
    """softmax_backward's operands: a standard-normal grad_output and softmax(logits)."""
    (g,) = logits(shape, dtype, rng)
    (x,) = logits(shape, dtype, rng)
    return g, numpy_softmax(x).astype(dtype)


def grad_and_log_softmax_output(
    shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator
) -> Inputs:
    """log_softmax_backward's operands: a standard-normal grad_output and log_softmax(logits)."""
    (g,) = logits(shape, dtype, rng)
    (x,) = logits(shape, dtype, rng)
    return g, numpy_log_softmax(x).astype(dtype)


def numpy_softmax_backward(g: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return y * (g - np.sum(g * y, axis=axis, keepdims=True))


def numpy_log_softmax_backward(g: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return g - np.exp(y) * np.sum(g, axis=axis, keepdims=True)


def numpy_entropy(x: np.ndarray, axis: int = -1) -> np.ndarray:
    # H = logsumexp(x) - sum(softmax(x) * x), from shifted logits (the shift cancels)
    shifted = x - _row_max(x, axis)
    e = np.exp(shifted)
    total = np.sum(e, axis=axis)
    return np.log(total) - np.sum(e * shifted, axis=axis) / total


register(
    Case(
        op="softmax_backward",
        setup=grad_and_softmax_output,
        forward={
            "fastloss": lambda fl, g, y: fl.softmax_backward(g, y, axis=-1),
            "torch": lambda torch, g, y: torch._softmax_backward_data(g, y, -1, y.dtype),
            "numpy": lambda np_, g, y: numpy_softmax_backward(g, y, axis=-1),
        },
        description="torch: torch._softmax_backward_data(grad_output, output, -1, output.dtype)",
        # Not in the default run, nor are the other cases with default=False: together they would
        # make it ~70% longer (~4 more minutes on 2 cores, mostly 4096x32000); --ops names them.
        default=False,
    )
)

register(
    Case(
        op="log_softmax_backward",
        setup=grad_and_log_softmax_output,
        forward={
            "fastloss": lambda fl, g, y: fl.log_softmax_backward(g, y, axis=-1),
            "torch": lambda torch, g, y: torch._log_softmax_backward_data(g, y, -1, y.dtype),
            "numpy": lambda np_, g, y: numpy_log_softmax_backward(g, y, axis=-1),
        },
        description="torch: "
        "torch._log_softmax_backward_data(grad_output, output, -1, output.dtype)",
        default=False,
    )
)

register(
    Case(
        op="entropy",
        setup=logits,
        forward={
            "fastloss": lambda fl, x: fl.entropy(x, axis=-1),
            "torch": lambda torch, x: torch.distributions.Categorical(logits=x).entropy(),
            "numpy": lambda np_, x: numpy_entropy(x, axis=-1),
        },
        description="entropy of softmax(logits) per row; torch: "
        "torch.distributions.Categorical(logits=x).entropy() (argument validation on, the default)",
        default=False,
    )
)


def numpy_cross_entropy(x: np.ndarray, t: np.ndarray) -> np.floating:
    lp = numpy_log_softmax(x, axis=-1)
    return -np.mean(np.take_along_axis(lp, t[..., None], axis=-1))


def _jax_cross_entropy(jax: Any, x: Any, t: Any) -> Any:
    lp = jax.nn.log_softmax(x, axis=-1)
    return -jax.numpy.mean(jax.numpy.take_along_axis(lp, t[..., None], axis=-1))


def student_teacher_and_class_targets(
    shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator
) -> Inputs:
    """Student and teacher logits (N, C) and int64 class indices (N,) in [0, C)."""
    (s,) = logits(shape, dtype, rng)
    (t,) = logits(shape, dtype, rng)
    return s, t, rng.integers(0, shape[-1], size=shape[:-1], dtype=np.int64)


_KD_TEMPERATURE = 2.0
_KD_ALPHA = 0.5


def _torch_distillation(torch: Any, s: Any, t: Any, y: Any) -> Any:
    """The knowledge-distillation loss as PyTorch users write it."""
    F = torch.nn.functional
    T, alpha = _KD_TEMPERATURE, _KD_ALPHA
    soft = F.kl_div(F.log_softmax(s / T, dim=-1), F.softmax(t / T, dim=-1), reduction="batchmean")
    return alpha * F.cross_entropy(s, y) + (1 - alpha) * T * T * soft


_KD_BETA = 0.5


def _torch_jsd(torch: Any, log_q: Any, log_p: Any, beta: float) -> Any:
    """Liger's generalized JSD, batchmean, from log-probabilities as PyTorch users write it:
    log M by logsumexp, then the two KL terms against M."""
    F = torch.nn.functional
    log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log(1 - beta)]), 0)
    return beta * F.kl_div(log_m, log_p, reduction="batchmean", log_target=True) + (
        1 - beta
    ) * F.kl_div(log_m, log_q, reduction="batchmean", log_target=True)


def _torch_distillation_jsd(torch: Any, s: Any, t: Any, y: Any) -> Any:
    """The distillation loss with the JSD as its soft term (divergence="jsd")."""
    F = torch.nn.functional
    T, alpha = _KD_TEMPERATURE, _KD_ALPHA
    soft = _torch_jsd(torch, F.log_softmax(s / T, dim=-1), F.log_softmax(t / T, dim=-1), _KD_BETA)
    return alpha * F.cross_entropy(s, y) + (1 - alpha) * T * T * soft


_TOPK = 64


def student_topk_teacher_and_class_targets(
    shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator
) -> Inputs:
    """Student logits (N, C), a top-k teacher (N, 64): distinct classes and log-probabilities
    at the temperature holding 90% of the teacher's mass, and int64 class indices (N,)."""
    (s,) = logits(shape, dtype, rng)
    positions, classes = shape[:-1], shape[-1]
    k = min(_TOPK, classes)
    start = rng.integers(0, classes, size=(*positions, 1))
    indices = (start + np.arange(k) * (classes // k)) % classes  # distinct in each row
    probabilities = rng.dirichlet(np.ones(k), size=positions) * 0.9
    y = rng.integers(0, classes, size=positions, dtype=np.int64)
    return s, indices.astype(np.int64), np.log(probabilities).astype(dtype), y


def _torch_topk_distillation(torch: Any, s: Any, indices: Any, logprobs: Any, y: Any) -> Any:
    """Distillation from a top-k teacher as PyTorch users write it: the student's log_softmax
    gathered at the teacher's classes, against the renormalized teacher (KL, batchmean)."""
    F = torch.nn.functional
    T, alpha = _KD_TEMPERATURE, _KD_ALPHA
    log_q = F.log_softmax(s / T, dim=-1).gather(-1, indices)
    log_p = logprobs - torch.logsumexp(logprobs, dim=-1, keepdim=True)
    soft = (log_p.exp() * (log_p - log_q)).sum() / s.shape[0]
    return alpha * F.cross_entropy(s, y) + (1 - alpha) * T * T * soft


# --- elementwise losses -------------------------------------------------------------------------


def log_probabilities_and_probabilities(
    shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator
) -> Inputs:
    """kl_div's operands: log-probabilities log q and probabilities p, rows over the last axis."""
    (x,) = logits(shape, dtype, rng)
    (y,) = logits(shape, dtype, rng)
    return numpy_log_softmax(x).astype(dtype), numpy_softmax(y).astype(dtype)


def logits_and_binary_targets(
    shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator
) -> Inputs:
    """Logits and multi-label 0/1 targets of the same shape (floating, as torch requires)."""
    (x,) = logits(shape, dtype, rng)
    return x, (rng.random(shape, dtype=np.float32) < 0.5).astype(dtype)


def probabilities_and_soft_targets(
    shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator
) -> Inputs:
    """binary_cross_entropy's operands: probabilities sigmoid(logits), kept inside
    [2**-6, 1 - 2**-6] so that they stay strictly in (0, 1) in every dtype (bfloat16 rounds
    sigmoid(6) to 1), and soft targets uniform in [0, 1), both of `shape`."""
    (x,) = logits(shape, dtype, rng)
    p = 1 / (1 + np.exp(-x.astype(np.float32)))
    p = np.clip(p, 2.0**-6, 1 - 2.0**-6).astype(dtype)
    return p, rng.random(shape, dtype=np.float32).astype(dtype)


def numpy_kl_div_batchmean(log_q: np.ndarray, p: np.ndarray) -> np.floating:
    with np.errstate(divide="ignore", invalid="ignore"):
        pointwise = np.where(p == 0, 0, p * np.log(p)) - p * log_q
    return pointwise.sum(dtype=np.float64) / log_q.shape[0]


def numpy_kl_div_batchmean_grad(log_q: np.ndarray, p: np.ndarray) -> tuple[Any, np.ndarray]:
    return numpy_kl_div_batchmean(log_q, p), -p / log_q.shape[0]


def numpy_binary_cross_entropy_with_logits(x: np.ndarray, y: np.ndarray) -> np.floating:
    # (1 - y) x + softplus(-x), softplus(-x) = log(1 + exp(-x)) = logaddexp(0, -x)
    return ((1 - y) * x + np.logaddexp(0, -x)).mean(dtype=np.float64)


_GRAD_BUFFERS: dict[tuple[tuple[int, ...], str], np.ndarray] = {}


def reused_buffer(x: np.ndarray) -> np.ndarray:
    """The same gradient buffer call after call for inputs like `x` (a training loop keeps one)."""
    key = (x.shape, x.dtype.str)
    if key not in _GRAD_BUFFERS:
        _GRAD_BUFFERS[key] = np.empty_like(x)
    return _GRAD_BUFFERS[key]


def numpy_cross_entropy_grad(x: np.ndarray, t: np.ndarray) -> tuple[np.floating, np.ndarray]:
    p = numpy_softmax(x, axis=-1)
    loss = -np.mean(np.log(np.take_along_axis(p, t[..., None], axis=-1)))
    np.put_along_axis(p, t[..., None], np.take_along_axis(p, t[..., None], axis=-1) - 1, axis=-1)
    return loss, p / t.size


def numpy_binary_cross_entropy_with_logits_grad(
    x: np.ndarray, y: np.ndarray
) -> tuple[Any, np.ndarray]:
    sigmoid = 0.5 * (1 + np.tanh(0.5 * x))  # stable for any x
    return numpy_binary_cross_entropy_with_logits(x, y), (sigmoid - y) / x.size


def numpy_nll_loss_grad(x: np.ndarray, t: np.ndarray) -> tuple[np.floating, np.ndarray]:
    loss = -np.mean(np.take_along_axis(x, t[..., None], axis=-1))
    grad = np.zeros_like(x)
    np.put_along_axis(grad, t[..., None], -1 / t.size, axis=-1)
    return loss, grad


def numpy_binary_cross_entropy(p: np.ndarray, y: np.ndarray) -> np.floating:
    # PyTorch clamps each log at -100 and takes log(1 - p), not log1p(-p)
    log_p = np.maximum(np.log(p), -100)
    log_1mp = np.maximum(np.log(1 - p), -100)
    return -(y * log_p + (1 - y) * log_1mp).mean(dtype=np.float64)


def numpy_binary_cross_entropy_grad(p: np.ndarray, y: np.ndarray) -> tuple[Any, np.ndarray]:
    # 1/D in float32 at least: in a half-precision array's dtype, D above 65504 would be inf
    scale = np.result_type(p.dtype, np.float32).type(1 / p.size)
    grad = (p - y) / np.maximum(p * (1 - p), 1e-12) * scale
    return numpy_binary_cross_entropy(p, y), grad.astype(p.dtype, copy=False)


register(
    Case(
        op="cross_entropy",
        setup=logits_and_class_targets,
        forward={
            "fastloss": lambda fl, x, t: fl.cross_entropy(x, t, axis=-1),
            "torch": lambda torch, x, t: torch.nn.functional.cross_entropy(x, t),
            "jax": _jax_cross_entropy,
            "numpy": lambda np_, x, t: numpy_cross_entropy(x, t),
        },
        grad={
            "fastloss": lambda fl, x, t: fl.cross_entropy(
                x, t, axis=-1, return_grad=True, grad_out=reused_buffer(x)
            ),
            "torch": lambda torch, x, t: torch.nn.functional.cross_entropy(x, t),
            "jax": _jax_cross_entropy,
            "numpy": lambda np_, x, t: numpy_cross_entropy_grad(x, t),
        },
    )
)


def _torch_z_loss_cross_entropy(torch: Any, x: Any, t: Any) -> Any:
    """Liger's z-loss spelled in torch ops: mean cross-entropy + z mean(lse**2)."""
    lse = torch.logsumexp(x, dim=-1)
    return torch.nn.functional.cross_entropy(x, t) + Z_LOSS * (lse * lse).mean()


Z_LOSS = 1e-4

register(
    Case(
        op="cross_entropy_z_loss",
        setup=logits_and_class_targets,
        forward={
            "fastloss": lambda fl, x, t: fl.cross_entropy(x, t, axis=-1, z_loss=Z_LOSS),
            "torch": _torch_z_loss_cross_entropy,
        },
        grad={
            "fastloss": lambda fl, x, t: fl.cross_entropy(
                x, t, axis=-1, z_loss=Z_LOSS, return_grad=True, grad_out=reused_buffer(x)
            ),
            "torch": _torch_z_loss_cross_entropy,
        },
        description="cross_entropy(z_loss=1e-4); torch: cross_entropy + 1e-4 * mean(logsumexp**2)",
        default=False,
    )
)


def _torch_softcapped_cross_entropy(torch: Any, x: Any, t: Any) -> Any:
    """Gemma 2's soft-capping spelled in torch ops: cross_entropy(c * tanh(x / c))."""
    return torch.nn.functional.cross_entropy(SOFTCAP * torch.tanh(x / SOFTCAP), t)


SOFTCAP = 30.0

register(
    Case(
        op="cross_entropy_softcap",
        setup=logits_and_class_targets,
        forward={
            "fastloss": lambda fl, x, t: fl.cross_entropy(x, t, axis=-1, softcap=SOFTCAP),
            "torch": _torch_softcapped_cross_entropy,
        },
        grad={
            "fastloss": lambda fl, x, t: fl.cross_entropy(
                x, t, axis=-1, softcap=SOFTCAP, return_grad=True, grad_out=reused_buffer(x)
            ),
            "torch": _torch_softcapped_cross_entropy,
        },
        description="cross_entropy(softcap=30); torch: cross_entropy(30 * tanh(x / 30))",
        default=False,
    )
)

register(
    Case(
        op="kl_div",
        setup=log_probabilities_and_probabilities,
        forward={
            "fastloss": lambda fl, x, p: fl.kl_div(x, p, reduction="batchmean"),
            "torch": lambda torch, x, p: torch.nn.functional.kl_div(x, p, reduction="batchmean"),
            "numpy": lambda np_, x, p: numpy_kl_div_batchmean(x, p),
        },
        grad={
            "fastloss": lambda fl, x, p: fl.kl_div(x, p, reduction="batchmean", return_grad=True),
            "torch": lambda torch, x, p: torch.nn.functional.kl_div(x, p, reduction="batchmean"),
            "numpy": lambda np_, x, p: numpy_kl_div_batchmean_grad(x, p),
        },
    )
)

register(
    Case(
        op="nll_loss",
        setup=logits_and_class_targets,
        forward={
            "fastloss": lambda fl, x, t: fl.nll_loss(x, t, axis=-1),
            "torch": lambda torch, x, t: torch.nn.functional.nll_loss(x, t),
            "numpy": lambda np_, x, t: -np.mean(np.take_along_axis(x, t[..., None], axis=-1)),
        },
        grad={
            "fastloss": lambda fl, x, t: fl.nll_loss(
                x, t, axis=-1, return_grad=True, grad_out=reused_buffer(x)
            ),
            "torch": lambda torch, x, t: torch.nn.functional.nll_loss(x, t),
            "numpy": lambda np_, x, t: numpy_nll_loss_grad(x, t),
        },
    )
)

register(
    Case(
        op="distillation_loss",
        setup=student_teacher_and_class_targets,
        forward={
            "fastloss": lambda fl, s, t, y: fl.distillation_loss(
                s, t, y, temperature=_KD_TEMPERATURE, alpha=_KD_ALPHA, axis=-1
            ),
            "torch": _torch_distillation,
        },
        grad={
            "fastloss": lambda fl, s, t, y: fl.distillation_loss(
                s, t, y, temperature=_KD_TEMPERATURE, alpha=_KD_ALPHA, axis=-1, return_grad=True
            ),
            "torch": _torch_distillation,
        },
    )
)

register(
    Case(
        op="distillation_loss_jsd",
        setup=student_teacher_and_class_targets,
        forward={
            "fastloss": lambda fl, s, t, y: fl.distillation_loss(
                s, t, y, temperature=_KD_TEMPERATURE, alpha=_KD_ALPHA, axis=-1,
                divergence="jsd", beta=_KD_BETA,
            ),
            "torch": _torch_distillation_jsd,
        },
        grad={
            "fastloss": lambda fl, s, t, y: fl.distillation_loss(
                s, t, y, temperature=_KD_TEMPERATURE, alpha=_KD_ALPHA, axis=-1,
                divergence="jsd", beta=_KD_BETA, return_grad=True,
            ),
            "torch": _torch_distillation_jsd,
        },
        description="distillation_loss(divergence='jsd', beta=0.5) against its torch composition",
        default=False,
    )
)

register(
    Case(
        op="distillation_loss_topk",
        setup=student_topk_teacher_and_class_targets,
        forward={
            "fastloss": lambda fl, s, i, lp, y: fl.distillation_loss(
                s, None, y, temperature=_KD_TEMPERATURE, alpha=_KD_ALPHA, axis=-1,
                teacher_topk=(i, lp),
            ),
            "torch": _torch_topk_distillation,
        },
        grad={
            "fastloss": lambda fl, s, i, lp, y: fl.distillation_loss(
                s, None, y, temperature=_KD_TEMPERATURE, alpha=_KD_ALPHA, axis=-1,
                teacher_topk=(i, lp), return_grad=True, grad_out=reused_buffer(s),
            ),
            "torch": _torch_topk_distillation,
        },
        description="distillation_loss(teacher_topk=(indices, logprobs)), k = 64, against "
        "log_softmax plus gather in torch",
        default=False,
    )
)

register(
    Case(
        op="jensen_shannon_divergence",
        setup=log_probabilities_and_probabilities,
        forward={
            "fastloss": lambda fl, x, p: fl.jensen_shannon_divergence(x, p, beta=_KD_BETA),
            "torch": lambda torch, x, p: _torch_jsd(torch, x, torch.log(p), _KD_BETA),
        },
        grad={
            "fastloss": lambda fl, x, p: fl.jensen_shannon_divergence(
                x, p, beta=_KD_BETA, return_grad=True, grad_out=reused_buffer(x)
            ),
            "torch": lambda torch, x, p: _torch_jsd(torch, x, torch.log(p), _KD_BETA),
        },
        default=False,
    )
)

register(
    Case(
        op="binary_cross_entropy_with_logits",
        setup=logits_and_binary_targets,
        forward={
            "fastloss": lambda fl, x, y: fl.binary_cross_entropy_with_logits(x, y),
            "torch": lambda torch, x, y: torch.nn.functional.binary_cross_entropy_with_logits(x, y),
            "numpy": lambda np_, x, y: numpy_binary_cross_entropy_with_logits(x, y),
        },
        grad={
            "fastloss": lambda fl, x, y: fl.binary_cross_entropy_with_logits(
                x, y, return_grad=True
            ),
            "torch": lambda torch, x, y: torch.nn.functional.binary_cross_entropy_with_logits(x, y),
            "numpy": lambda np_, x, y: numpy_binary_cross_entropy_with_logits_grad(x, y),
        },
    )
)

def _torch_sigmoid_focal_loss(torch: Any, x: Any, y: Any) -> Any:
    """torchvision.ops.sigmoid_focal_loss (alpha 0.25, gamma 2), in torch ops, averaged."""
    p = torch.sigmoid(x)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * ((1 - p_t) ** 2.0)
    return ((0.25 * y + 0.75 * (1 - y)) * loss).mean()


register(
    Case(
        op="sigmoid_focal_loss",
        setup=logits_and_binary_targets,
        forward={
            "fastloss": lambda fl, x, y: fl.sigmoid_focal_loss(x, y, reduction="mean"),
            "torch": _torch_sigmoid_focal_loss,
        },
        grad={
            "fastloss": lambda fl, x, y: fl.sigmoid_focal_loss(
                x, y, reduction="mean", return_grad=True
            ),
            "torch": _torch_sigmoid_focal_loss,
        },
        description="reduction='mean'; torch: torchvision's sigmoid_focal_loss written in torch "
        "ops (torchvision is not needed)",
        default=False,
    )
)

register(
    Case(
        op="binary_cross_entropy",
        setup=probabilities_and_soft_targets,
        forward={
            "fastloss": lambda fl, p, y: fl.binary_cross_entropy(p, y),
            "torch": lambda torch, p, y: torch.nn.functional.binary_cross_entropy(p, y),
            "numpy": lambda np_, p, y: numpy_binary_cross_entropy(p, y),
        },
        grad={
            "fastloss": lambda fl, p, y: fl.binary_cross_entropy(p, y, return_grad=True),
            "torch": lambda torch, p, y: torch.nn.functional.binary_cross_entropy(p, y),
            "numpy": lambda np_, p, y: numpy_binary_cross_entropy_grad(p, y),
        },
        description="input: sigmoid(standard-normal logits) in [2**-6, 1 - 2**-6], "
        "target: uniform soft labels in [0, 1)",
        default=False,
    )
)


# --- cosine embedding loss ----------------------------------------------------------------------


def embedding_pairs_and_signs(
    shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator
) -> Inputs:
    """cosine_embedding_loss's operands: standard-normal x1 and x2 of `shape` (N, D) and a target of
    1 or -1 per row (N,), in the inputs' dtype (as ``torch.ones(N)`` is for float32 inputs)."""
    (x1,) = logits(shape, dtype, rng)
    (x2,) = logits(shape, dtype, rng)
    signs = np.where(rng.random(shape[:-1]) < 0.5, 1, -1).astype(dtype)
    return x1, x2, signs


_COSINE_EPSILON = 1e-12  # PyTorch's EPSILON in cosine_embedding_loss


def _numpy_cosine(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, ...]:
    """(cos, |x1|**2 + eps, sqrt((|x1|**2 + eps) (|x2|**2 + eps))) per row, as PyTorch's."""
    mag1 = np.sum(x1 * x1, axis=-1) + _COSINE_EPSILON
    mag2 = np.sum(x2 * x2, axis=-1) + _COSINE_EPSILON
    # (PyTorch takes sqrt(mag1 * mag2), whose product overflows float16 beyond 65504, D >~ 256)
    denom = np.sqrt(mag1) * np.sqrt(mag2)
    return np.sum(x1 * x2, axis=-1) / denom, mag1, denom


def _numpy_cosine_loss(cos: np.ndarray, y: np.ndarray) -> np.floating:
    """The mean over rows of 1 - cos where y == 1, max(0, cos) where y == -1 (margin 0)."""
    return np.where(y == 1, 1 - cos, np.where(y == -1, np.maximum(cos, 0), 0)).mean(
        dtype=np.float64
    )


def numpy_cosine_embedding_loss(x1: np.ndarray, x2: np.ndarray, y: np.ndarray) -> np.floating:
    return _numpy_cosine_loss(_numpy_cosine(x1, x2)[0], y)


def numpy_cosine_embedding_loss_grad(
    x1: np.ndarray, x2: np.ndarray, y: np.ndarray
) -> tuple[Any, np.ndarray]:
    cos, mag1, denom = _numpy_cosine(x1, x2)
    # d loss / d cos per row: -1 where y == 1, 1 where y == -1 and cos >= 0 (margin 0), else 0
    sign = np.where(y == 1, -1.0, np.where((y == -1) & (cos >= 0), 1.0, 0.0)) / y.size
    sign = sign.astype(x1.dtype)  # (N,): the (N, D) products below stay in the inputs' dtype
    d_cos = x2 / denom[..., None] - (cos / mag1)[..., None] * x1
    return _numpy_cosine_loss(cos, y), sign[..., None] * d_cos


register(
    Case(
        op="cosine_embedding_loss",
        setup=embedding_pairs_and_signs,
        forward={
            "fastloss": lambda fl, a, b, y: fl.cosine_embedding_loss(a, b, y),
            "torch": lambda torch, a, b, y: torch.nn.functional.cosine_embedding_loss(a, b, y),
            "numpy": lambda np_, a, b, y: numpy_cosine_embedding_loss(a, b, y),
        },
        grad={
            "fastloss": lambda fl, a, b, y: fl.cosine_embedding_loss(a, b, y, return_grad=True),
            "torch": lambda torch, a, b, y: torch.nn.functional.cosine_embedding_loss(a, b, y),
            "numpy": lambda np_, a, b, y: numpy_cosine_embedding_loss_grad(a, b, y),
        },
        description="x1, x2: (N, D) standard normal; target: 1 or -1 per row; margin 0; "
        "+grad differentiates w.r.t. x1. torch in float16 with D >~ 256 is flagged: it takes "
        "sqrt(|x1|^2 |x2|^2), whose product overflows to inf (cos = 0)",
        default=False,
    )
)


_LINEAR_FEATURES = 256  # d of the registry's linear_cross_entropy case (its NxC shape is (N, V))


def features_weight_and_class_targets(
    shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator
) -> Inputs:
    """For an (N, V) shape: input (N, d), linear_weight (V, d) scaled to unit-variance logits,
    and int64 class indices (N,); d = 256."""
    n, v = shape[0], shape[-1]
    (x,) = logits((n, _LINEAR_FEATURES), dtype, rng)
    (w,) = logits((v, _LINEAR_FEATURES), dtype, rng)
    w = (w.astype(np.float32) / np.sqrt(_LINEAR_FEATURES)).astype(dtype)
    return x, w, rng.integers(0, v, size=(n,), dtype=np.int64)


register(
    Case(
        op="linear_cross_entropy",
        setup=features_weight_and_class_targets,
        forward={
            "fastloss": lambda fl, x, w, t: fl.linear_cross_entropy(x, w, t),
            "torch": lambda torch, x, w, t: torch.nn.functional.linear_cross_entropy(x, w, t),
        },
        grad={
            "fastloss": lambda fl, x, w, t: fl.linear_cross_entropy(x, w, t, return_grad=True)[:2],
            "torch": lambda torch, x, w, t: torch.nn.functional.linear_cross_entropy(x, w, t),
        },
        description="input (N, 256), linear_weight (V, 256) for an NxV shape; +grad compares "
        "the gradient of the input (all three are computed). The GEMM-floor comparison of the "
        "issue's shapes is --linear",
        default=False,
    )
)
