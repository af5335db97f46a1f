"""float16 and bfloat16 inputs, computed in float32 (issue #8).

Every public function takes float16 (NumPy) and bfloat16 (``ml_dtypes``) arrays and returns its
results (arrays, reduced NumPy scalars, gradients) in that dtype, computed and accumulated in
float32 (float64 across samples) and rounded once. The expected value is therefore the float64
reference (tests/reference.py, on the half input upcast to float64) rounded to the half dtype.
Gradients are checked against fastloss's own float64 gradients, rounded the same way (those are
checked against torch autograd and finite differences in tests/test_*_grad.py). PyTorch's half
CPU results are compared too, more loosely: it rounds intermediates to half.

Mixed dtypes follow NumPy's promotion (``np.result_type``); a pair NumPy refuses (bfloat16 with
float16) is a TypeError.
"""

from __future__ import annotations

import tracemalloc
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import pytest

import fastloss as fl
import reference as ref

# Tolerances against the float64 reference rounded once to the half dtype. float32's own error
# (a few 2**-24 of the value) is far below the half spacing, so our single rounding and the
# reference's agree, or fall on the two neighbours of a rounding boundary: one unit in the last
# place (ULP). float16 keeps 11 significant bits, so 1 ULP <= 2**-10 of the value; bfloat16 keeps
# 8, 2**-7. A reduced loss (a sum or mean over many elements) is rounded once as well, so the same
# rtol holds for it (and rtol cannot be smaller: 1 ULP is 2**-10 of a float16 value just above 1).
# atol covers results near 0: float16's subnormals (below 2**-14) are spaced 2**-24 apart, where
# rtol is no help, and some results are float32 differences of O(1) terms (p - 1, g - sum(g * y),
# the log-softmax of a dominant logit) times weights and grad_output, absolutely off by a few
# 2**-24: up to 6 * 2**-24 measured over 20 seeds, every ISA. 2**-22 is too tight, 2**-21 holds.
TOL = {
    "float16": dict(rtol=2**-10, atol=2**-21),
    "bfloat16": dict(rtol=2**-7, atol=2**-21),
}
# PyTorch rounds intermediates to half (log_softmax before nll, each pointwise KL / BCE term
# before the sum, s / T before softmax in distillation), so it may be a few half ULPs away: rtol
# 4 ULPs. Where its rounded terms of size ~1 cancel (p - onehot in gradients, p log p - p log q
# in KL, the two terms of the cosine gradient) its error is a few ULPs of 1, not of the result:
# atol 4 ULPs of 1. Case.torch_scale widens atol where the cancelling terms are larger. Measured
# over 60 seeds: at most half of these; rtol of 2 ULPs is too tight (torch's float16 nll_loss).
TORCH_TOL = {
    "float16": dict(rtol=2**-8, atol=2**-8),
    "bfloat16": dict(rtol=2**-5, atol=2**-5),
}
# float32 / float64 results of mixed-dtype calls (as tests/test_softmax.py).
NATIVE_TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-12, atol=1e-13)}

# Rows of 1..17 classes hit every vector tail (up to 16 float32 lanes); 1000 and 4099 are long
# rows, 4099 with a tail after several full vectors.
SHAPES = [(3, c) for c in range(1, 18)] + [(33, 10), (4, 1000), (2, 4099)]
LARGE = (128, 1000)  # 128k elements: kernels go parallel from 2**16, in chunks of 2**15
REDUCTIONS = ("mean", "sum", "none")
KL_REDUCTIONS = ("batchmean", "sum", "none")


@pytest.fixture(params=["float16", "bfloat16"])
def half(request: pytest.FixtureRequest) -> np.dtype:
    if request.param == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(np.float16)


def _dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _is_half(dtype: np.dtype) -> bool:
    return dtype.name in TOL


def _tol(dtype: np.dtype) -> dict:
    return TOL[dtype.name] if _is_half(dtype) else NATIVE_TOL[dtype.name]


def assert_rounded_close(got: Any, want: Any, dtype: np.dtype, tol: Optional[dict] = None, msg=""):
    """`got` has `dtype` and is within `tol` of the float64 `want` rounded once to `dtype`."""
    got = np.asarray(got)
    assert got.dtype == dtype, f"{msg}: dtype {got.dtype}, expected {dtype}"
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{msg}: shape {got.shape}, expected {want.shape}"
    with np.errstate(over="ignore"):  # rounding overflows to inf, as it should
        rounded = want.astype(dtype).astype(np.float64)
    np.testing.assert_allclose(
        got.astype(np.float64), rounded, equal_nan=True, err_msg=msg, **(tol or _tol(dtype))
    )


def assert_same_bits(a: Any, b: Any, msg: str = ""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, msg
    assert a.tobytes() == b.tobytes(), msg


def _upcast(arrays) -> tuple:
    return tuple(a.astype(np.float64) if a.dtype.kind in "fV" else a for a in arrays)


# ---------------------------------------------------------------------------------------------
# The functions, as one table. `make(rng, n, c)` gives the arrays (float64, or int64 class
# targets); floating ones are cast to the dtype under test. The gradient is taken with respect to
# the first array.


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[np.random.Generator, int, int], tuple]
    ours: Callable[..., Any]
    reference: Callable[..., Any]
    torch: Callable[..., Any]  # (torch, *tensors, **options) -> tensor
    reductions: tuple = ()  # empty: not a loss (no reduction=, no return_grad=)
    torch_scale: float = 1.0  # size of the terms that cancel in torch's half computation

    def __repr__(self) -> str:
        return self.name


def _logits(rng, n, c):
    return rng.standard_normal((n, c)) * 3


def _probabilities(rng, n, c):
    return ref.softmax(rng.standard_normal((n, c)))


def _targets(rng, n, c, ignored=False):
    t = rng.integers(0, c, n)
    if ignored:
        t[1::4] = -100  # some positions ignored, never all
    return t


def _cosine_inputs(rng, n, c):
    """Entries bounded away from 0: the gradient is the difference of two terms of size 1 / |x1|,
    computed in float32, which must stay O(1) for TOL's atol. No cosine near the margin (0.1),
    where the gradient of max(cos - margin, 0) jumps and a rounding decides the side."""
    a, b = (rng.uniform(0.5, 2.0, (n, c)) * rng.choice([-1.0, 1.0], (n, c)) for _ in range(2))
    cos = np.sum(a * b, -1) / np.sqrt(np.sum(a * a, -1) * np.sum(b * b, -1))
    b[np.abs(cos - 0.1) < 0.05] *= -1
    return a, b, rng.choice(np.array([-1, 1]), n)


def _softmax_backward_ref(g, y):
    return y * (g - np.sum(g * y, axis=-1, keepdims=True))


def _log_softmax_backward_ref(g, y):
    return g - np.exp(y) * np.sum(g, axis=-1, keepdims=True)


def _torch_distillation(torch, s, t, y, reduction, temperature=2.0, alpha=0.5):
    F = torch.nn.functional
    ce = F.cross_entropy(s, y, reduction=reduction)
    kl = F.kl_div(
        F.log_softmax(s / temperature, 1),
        F.softmax(t / temperature, 1),
        reduction="batchmean" if reduction == "mean" else reduction,
    )
    if reduction == "none":
        kl = kl.sum(1)
    return alpha * ce + (1 - alpha) * temperature**2 * kl


def _F(torch):
    return torch.nn.functional


CASES = [
    Case(
        "softmax",
        lambda r, n, c: (_logits(r, n, c),),
        lambda x: fl.softmax(x),
        lambda x: ref.softmax(x),
        lambda torch, x: torch.softmax(x, -1),
    ),
    Case(
        "log_softmax",
        lambda r, n, c: (_logits(r, n, c),),
        lambda x: fl.log_softmax(x),
        lambda x: ref.log_softmax(x),
        lambda torch, x: torch.log_softmax(x, -1),
    ),
    Case(
        "logsumexp",
        lambda r, n, c: (_logits(r, n, c),),
        lambda x: fl.logsumexp(x),
        lambda x: ref.logsumexp(x),
        lambda torch, x: torch.logsumexp(x, -1),
    ),
    Case(
        "softmax_backward",
        lambda r, n, c: (r.standard_normal((n, c)), _probabilities(r, n, c)),
        lambda g, y: fl.softmax_backward(g, y),
        _softmax_backward_ref,
        lambda torch, g, y: torch._softmax_backward_data(g, y, -1, g.dtype),
    ),
    Case(
        "log_softmax_backward",
        lambda r, n, c: (r.standard_normal((n, c)), ref.log_softmax(_logits(r, n, c))),
        lambda g, y: fl.log_softmax_backward(g, y),
        _log_softmax_backward_ref,
        lambda torch, g, y: torch._log_softmax_backward_data(g, y, -1, g.dtype),
    ),
    Case(
        "entropy",
        lambda r, n, c: (_logits(r, n, c),),
        lambda x: fl.entropy(x),
        lambda x: ref.entropy_from_logits(x),
        lambda torch, x: torch.distributions.Categorical(logits=x).entropy(),
        # torch: -sum(p * (x - logsumexp(x))) with x - logsumexp(x) rounded to half (|x| ~ 10)
        torch_scale=8.0,
    ),
    Case(
        "entropy_probs",
        lambda r, n, c: (_probabilities(r, n, c),),
        lambda p: fl.entropy(probs=p),
        lambda p: ref.entropy_from_probs(p),
        lambda torch, p: torch.special.entr(p).sum(-1),
    ),
    Case(
        "cross_entropy",
        lambda r, n, c: (_logits(r, n, c), _targets(r, n, c)),
        lambda x, t, **kw: fl.cross_entropy(x, t, **kw),
        lambda x, t, **kw: ref.cross_entropy(x, t, **kw),
        lambda torch, x, t, **kw: _F(torch).cross_entropy(x, t, **kw),
        REDUCTIONS,
    ),
    Case(
        "cross_entropy_weight_smoothing_ignore",
        lambda r, n, c: (_logits(r, n, c), _targets(r, n, c, True), r.uniform(0.5, 2.0, c)),
        lambda x, t, w, **kw: fl.cross_entropy(x, t, weight=w, label_smoothing=0.1, **kw),
        lambda x, t, w, **kw: ref.cross_entropy(x, t, weight=w, label_smoothing=0.1, **kw),
        lambda torch, x, t, w, **kw: _F(torch).cross_entropy(
            x, t, weight=w, label_smoothing=0.1, **kw
        ),
        REDUCTIONS,
    ),
    Case(
        "cross_entropy_probs",
        lambda r, n, c: (_logits(r, n, c), _probabilities(r, n, c)),
        lambda x, q, **kw: fl.cross_entropy(x, q, **kw),
        lambda x, q, **kw: ref.cross_entropy(x, q, **kw),
        lambda torch, x, q, **kw: _F(torch).cross_entropy(x, q, **kw),
        REDUCTIONS,
    ),
    Case(
        "nll_loss",
        lambda r, n, c: (
            ref.log_softmax(_logits(r, n, c)),
            _targets(r, n, c, True),
            r.uniform(0.5, 2.0, c),
        ),
        lambda x, t, w, **kw: fl.nll_loss(x, t, weight=w, **kw),
        lambda x, t, w, **kw: ref.nll_loss(x, t, weight=w, **kw),
        lambda torch, x, t, w, **kw: _F(torch).nll_loss(x, t, weight=w, **kw),
        REDUCTIONS,
    ),
    Case(
        "kl_div",
        lambda r, n, c: (ref.log_softmax(_logits(r, n, c)), _probabilities(r, n, c)),
        lambda x, p, **kw: fl.kl_div(x, p, **kw),
        lambda x, p, **kw: ref.kl_div(x, p, **kw),
        lambda torch, x, p, **kw: _F(torch).kl_div(x, p, **kw),
        KL_REDUCTIONS,
    ),
    Case(
        "kl_div_log_target",
        lambda r, n, c: (ref.log_softmax(_logits(r, n, c)), ref.log_softmax(_logits(r, n, c))),
        lambda x, lp, **kw: fl.kl_div(x, lp, log_target=True, **kw),
        lambda x, lp, **kw: ref.kl_div(x, lp, log_target=True, **kw),
        lambda torch, x, lp, **kw: _F(torch).kl_div(x, lp, log_target=True, **kw),
        KL_REDUCTIONS,
    ),
    Case(
        "binary_cross_entropy",
        lambda r, n, c: (
            r.uniform(0.02, 0.98, (n, c)),
            r.uniform(0.0, 1.0, (n, c)),
            r.uniform(0.5, 2.0, c),
        ),
        lambda p, y, w, **kw: fl.binary_cross_entropy(p, y, weight=w, **kw),
        lambda p, y, w, **kw: ref.binary_cross_entropy(p, y, weight=w, **kw),
        lambda torch, p, y, w, **kw: _F(torch).binary_cross_entropy(p, y, weight=w, **kw),
        REDUCTIONS,
    ),
    Case(
        "binary_cross_entropy_with_logits",
        lambda r, n, c: (
            _logits(r, n, c),
            r.uniform(0.0, 1.0, (n, c)),
            r.uniform(0.5, 2.0, c),
            r.uniform(0.5, 3.0, c),
        ),
        lambda x, y, w, pw, **kw: fl.binary_cross_entropy_with_logits(
            x, y, weight=w, pos_weight=pw, **kw
        ),
        lambda x, y, w, pw, **kw: ref.binary_cross_entropy_with_logits(
            x, y, weight=w, pos_weight=pw, **kw
        ),
        lambda torch, x, y, w, pw, **kw: _F(torch).binary_cross_entropy_with_logits(
            x, y, weight=w, pos_weight=pw, **kw
        ),
        REDUCTIONS,
        # torch: (1 - y) x + pos_weight-scaled softplus(-x), both ~|x| (up to ~10), in half
        torch_scale=8.0,
    ),
    Case(
        "distillation_loss",
        lambda r, n, c: (_logits(r, n, c), _logits(r, n, c), _targets(r, n, c, True)),
        lambda s, t, y, **kw: fl.distillation_loss(s, t, y, **kw),
        lambda s, t, y, **kw: ref.distillation_loss(s, t, y, **kw),
        _torch_distillation,
        REDUCTIONS,
    ),
    Case(
        "cosine_embedding_loss",
        _cosine_inputs,
        lambda a, b, y, **kw: fl.cosine_embedding_loss(a, b, y, margin=0.1, **kw),
        lambda a, b, y, **kw: ref.cosine_embedding_loss(a, b, y, margin=0.1, **kw),
        lambda torch, a, b, y, **kw: _F(torch).cosine_embedding_loss(
            a, b, y.to(a.dtype), margin=0.1, **kw
        ),
        REDUCTIONS,
    ),
]
CASE_BY_NAME = {case.name: case for case in CASES}
CALLS = [
    pytest.param(case, reduction, id=f"{case.name}-{reduction}" if reduction else case.name)
    for case in CASES
    for reduction in (case.reductions or (None,))
]
LOSS_CALLS = [call for call in CALLS if call.values[1] is not None]
# one reduction per loss for the large inputs: mean (batchmean) sums across threads' chunks
LARGE_CALLS = [call for call in CALLS if call.values[1] in (None, "mean", "batchmean")]


def _inputs(case: Case, rng, n: int, c: int, dtype: np.dtype, read_only: bool = True) -> tuple:
    arrays = tuple(a.astype(dtype) if a.dtype.kind == "f" else a for a in case.make(rng, n, c))
    for a in arrays:
        a.flags.writeable = not read_only
    return arrays


def _options(reduction: Optional[str]) -> dict:
    return {} if reduction is None else {"reduction": reduction}


def _grad_output(case: Case, arrays: tuple, reduction: str, rng, dtype) -> Optional[np.ndarray]:
    """A random grad_output of the loss's shape for reduction="none": values of `dtype`, held in
    float32 (a half-precision grad_output is test_half_gradient_arguments's)."""
    if reduction != "none":
        return None
    shape = np.shape(case.reference(*_upcast(arrays), reduction="none"))
    return rng.standard_normal(shape).astype(dtype).astype(np.float32)


def _check_call(case, arrays, reduction, dtype, rng, msg):
    """The forward result and, for a loss, the gradient, against the float64 results rounded
    once."""
    kw = _options(reduction)
    got = case.ours(*arrays, **kw)
    assert_rounded_close(got, case.reference(*_upcast(arrays), **kw), dtype, msg=msg)
    if reduction not in (None, "none"):
        assert isinstance(got, np.generic), f"{msg}: a reduced loss is a NumPy scalar"
    if reduction is None:
        return
    go = _grad_output(case, arrays, reduction, rng, dtype)
    r = case.ours(*arrays, return_grad=True, grad_output=go, **kw)
    # (the fused forward + gradient kernel may round differently in float32: not bit-identical)
    assert_rounded_close(r.loss, case.reference(*_upcast(arrays), **kw), dtype, msg=msg)
    go64 = None if go is None else go.astype(np.float64)
    want = case.ours(*_upcast(arrays), return_grad=True, grad_output=go64, **kw)
    assert_rounded_close(r.grad, want.grad, dtype, msg=f"{msg}: gradient")


@pytest.mark.parametrize("case, reduction", CALLS)
def test_matches_float64_reference_rounded_once(isa, half, case, reduction, rng):
    for n, c in SHAPES:
        arrays = _inputs(case, rng, n, c, half)
        before = [a.copy() for a in arrays]
        _check_call(case, arrays, reduction, half, rng, f"{case.name} {(n, c)} {reduction}")
        for a, b in zip(arrays, before):  # read-only inputs, never written
            assert_same_bits(a, b, f"{case.name}: an input changed")


@pytest.mark.parametrize("case, reduction", LOSS_CALLS)
def test_half_gradient_arguments(isa, half, case, reduction, rng):
    """A grad_output of the half dtype is taken as its values; grad_out of the input's (half)
    dtype receives the gradient, and may be the input itself."""
    arrays = _inputs(case, rng, 9, 19, half)
    go32 = _grad_output(case, arrays, reduction, rng, half)
    want = case.ours(*arrays, reduction=reduction, return_grad=True, grad_output=go32)
    go = None if go32 is None else go32.astype(half)
    kw = dict(reduction=reduction, return_grad=True, grad_output=go)
    r = case.ours(*arrays, **kw)
    assert_same_bits(r.grad, want.grad, "half grad_output")
    buffer = np.empty_like(arrays[0])
    r2 = case.ours(*arrays, grad_out=buffer, **kw)
    assert r2.grad is buffer
    assert_same_bits(r2.grad, r.grad, "gradient into grad_out")
    assert_same_bits(r2.loss, r.loss, "loss with grad_out")
    x = arrays[0].copy()
    r3 = case.ours(x, *arrays[1:], grad_out=x, **kw)
    assert r3.grad is x
    assert_same_bits(r3.grad, r.grad, "gradient over the input")
    assert_same_bits(r3.loss, r.loss, "loss with grad_out=input")


def _results(case: Case, arrays: tuple, reduction: Optional[str]) -> list:
    """The forward result, and for a loss the gradient, as a list."""
    if reduction is None:
        return [case.ours(*arrays)]
    r = case.ours(*arrays, return_grad=True, reduction=reduction)
    return [r.loss, r.grad]


@pytest.mark.parametrize("case, reduction", LARGE_CALLS)
def test_large_inputs_are_bit_identical_across_threads(isa, threads, half, case, reduction, rng):
    arrays = _inputs(case, rng, *LARGE, half)
    got = _results(case, arrays, reduction)
    want = _results(case, _upcast(arrays), reduction)  # the float64 gradient
    want[0] = case.reference(*_upcast(arrays), **_options(reduction))
    for g, w in zip(got, want):
        assert_rounded_close(g, w, half, msg=case.name)
    fl.set_num_threads(1)
    try:
        single = _results(case, arrays, reduction)
    finally:
        fl.set_num_threads(threads)
    for g, s in zip(got, single):
        assert_same_bits(g, s, f"{case.name}: {threads} threads vs 1")


LAYOUTS = {
    # the same values in other layouts: a strided view, negative strides, column-major
    "every_other": lambda a: _every_other(a),
    "negative_strides": lambda a: a[::-1, ::-1].copy()[::-1, ::-1],
    "transposed": lambda a: a.T.copy().T,
}


def _every_other(a: np.ndarray) -> np.ndarray:
    big = np.zeros((2 * a.shape[0], 2 * a.shape[1]), a.dtype)
    big[::2, ::2] = a
    return big[::2, ::2]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case, reduction", CALLS)
def test_strided_inputs(isa, half, case, reduction, layout, rng):
    arrays = tuple(
        LAYOUTS[layout](a) if a.ndim == 2 else a
        for a in _inputs(case, rng, 9, 19, half, read_only=False)
    )
    assert not arrays[0].flags.c_contiguous
    for a in arrays:
        a.flags.writeable = False
    _check_call(case, arrays, reduction, half, rng, f"{case.name} {layout}")


# ---------------------------------------------------------------------------------------------
# PyTorch's half-precision CPU results


def _to_torch(torch, a: np.ndarray, dtype: Any):
    if a.dtype.kind in "iu":
        return torch.from_numpy(np.array(a, dtype=np.int64))  # a copy: `a` may be read-only
    return torch.from_numpy(np.array(a, dtype=np.float32)).to(dtype)


def _torch_results(torch, case, arrays, reduction, go, dtype):
    tensors = [_to_torch(torch, a, dtype) for a in arrays]
    if reduction is None:
        return [case.torch(torch, *tensors)]
    tensors[0].requires_grad_(True)
    loss = case.torch(torch, *tensors, reduction=reduction)
    loss.backward(None if go is None else _to_torch(torch, go, dtype))
    return [loss, tensors[0].grad]


@pytest.mark.parametrize("case, reduction", CALLS)
def test_matches_torch(half, case, reduction, rng):
    torch = pytest.importorskip("torch")
    arrays = _inputs(case, rng, 24, 37, half)
    go = None if reduction is None else _grad_output(case, arrays, reduction, rng, half)
    if reduction is None:
        ours = [case.ours(*arrays)]
    else:
        r = case.ours(*arrays, return_grad=True, grad_output=go, reduction=reduction)
        ours = [r.loss, r.grad]
    try:
        theirs = _torch_results(torch, case, arrays, reduction, go, getattr(torch, half.name))
    except RuntimeError as e:  # no half CPU kernel in this torch (2.13 has them all):
        if "not implemented for" not in str(e):  # its float32 result, rounded to half
            raise
        theirs = _torch_results(torch, case, arrays, reduction, go, torch.float32)
    tol = dict(TORCH_TOL[half.name])
    tol["atol"] *= case.torch_scale
    for got, want in zip(ours, theirs):
        want = want.detach().float().numpy().astype(np.float64)
        assert_rounded_close(got, want, half, tol, msg=case.name)


# ---------------------------------------------------------------------------------------------
# Edge cases


NONFINITE_ROWS = np.array(
    [
        [0.5, -1.0, 2.0, 0.0, 1.5],
        [0.5, -np.inf, 2.0, -np.inf, 1.5],  # probability 0, log-probability -inf
        [-np.inf] * 5,  # softmax NaN, logsumexp -inf
        [0.5, np.inf, 2.0, 0.0, 1.5],  # softmax NaN, logsumexp +inf
        [0.5, np.nan, 2.0, 0.0, 1.5],
        [np.inf, -np.inf, 0.0, 0.0, 0.0],
    ]
)


def test_nonfinite_rows(isa, half):
    torch = None
    try:
        import torch
    except ImportError:
        pass
    x = NONFINITE_ROWS.astype(half)
    x64 = x.astype(np.float64)
    for name in ("softmax", "log_softmax", "logsumexp", "entropy"):
        case = CASE_BY_NAME[name]
        got = case.ours(x)
        assert_rounded_close(got, case.reference(x64), half, msg=name)
        if torch is not None and name != "entropy":  # Categorical rejects non-finite logits
            want = case.torch(torch, _to_torch(torch, x, getattr(torch, half.name)))
            assert_rounded_close(got, want.float().numpy(), half, msg=f"{name} vs torch")
    t = np.array([0, 2, 1, 0, 3, 2])
    for reduction in ("none", "sum"):
        got = fl.cross_entropy(x, t, reduction=reduction)
        assert_rounded_close(got, ref.cross_entropy(x64, t, reduction=reduction), half)
    # NaN and inf in ignored rows do not leak into the loss or the gradient of the others
    ignored = np.array([0, 2, -100, -100, -100, -100])
    r = fl.cross_entropy(x, ignored, return_grad=True)
    assert_rounded_close(r.loss, ref.cross_entropy(x64, ignored), half)
    assert np.isfinite(r.loss)
    np.testing.assert_array_equal(r.grad[2:].astype(np.float32), 0)
    assert_rounded_close(r.grad, fl.cross_entropy(x64, ignored, return_grad=True).grad, half)


def _big(dtype: np.dtype) -> float:
    """A logit near the dtype's largest finite value whose doubles still fit in float32."""
    return 60000.0 if dtype == np.float16 else 1e38


def test_huge_logits_do_not_overflow_the_float32_computation(isa, half):
    big = _big(half)
    top = 65504.0 if half == np.float16 else float(pytest.importorskip("ml_dtypes").finfo(half).max)
    x = np.array([[big, big], [top, top], [big, -big], [-big, big]]).astype(half)
    x64 = x.astype(np.float64)
    for name in ("softmax", "log_softmax", "logsumexp", "entropy"):
        case = CASE_BY_NAME[name]
        assert_rounded_close(case.ours(x), case.reference(x64), half, msg=name)
    lse = fl.logsumexp(x)
    # big + log 2 rounds back to big: half spacing there is far above log 2
    assert_same_bits(lse[:2], x[:2, 0], "logsumexp of two equal huge logits")
    t = np.array([0, 1, 1, 1])
    for reduction in REDUCTIONS:
        got = fl.cross_entropy(x, t, reduction=reduction)
        assert_rounded_close(got, ref.cross_entropy(x64, t, reduction=reduction), half)
    # float16: the third loss, 120000, is inf once rounded; their mean, 30000, is not (PyTorch
    # gives inf: it rounds log_softmax to half before the mean)
    assert np.isfinite(fl.cross_entropy(x, t))
    r = fl.cross_entropy(x, t, return_grad=True)
    assert_rounded_close(r.grad, fl.cross_entropy(x64, t, return_grad=True).grad, half)


def test_float16_overflow_to_inf_does_not_warn():
    """A result beyond float16's range is inf, as rounding says; no NumPy cast warning leaks out
    (the float32 and float64 paths never warn on overflow either)."""
    x = np.array([[60000.0, -60000.0]], np.float16)
    t = np.array([1])
    p, y = np.full(20000, 0.01, np.float16), np.ones(20000, np.float16)  # a sum of 20000 * 4.6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fl.log_softmax(x)[0, 1] == -np.inf
        assert fl.cross_entropy(x, t, reduction="none")[0] == np.inf
        assert fl.cross_entropy(x, t, reduction="sum") == np.inf
        assert fl.binary_cross_entropy(p, y, reduction="sum") == np.inf


def test_all_targets_ignored(isa, half):
    x = np.arange(12.0).reshape(3, 4).astype(half)
    t = np.full(3, -100)
    for f in (fl.cross_entropy, fl.nll_loss):
        r = f(x, t, return_grad=True)
        assert r.loss.dtype == half and np.isnan(r.loss)  # mean: 0 / 0
        assert r.grad.dtype == half
        np.testing.assert_array_equal(r.grad.astype(np.float32), 0)
        s = f(x, t, reduction="sum")
        assert s.dtype == half and s == 0
    # distillation: the CE mean is NaN, the gradient is the KL part alone
    s = (np.arange(12.0).reshape(3, 4) / 5).astype(half)
    r = fl.distillation_loss(s, s[::-1].copy(), t, return_grad=True)
    assert r.loss.dtype == half and np.isnan(r.loss)
    want = fl.distillation_loss(
        s.astype(np.float64), s[::-1].astype(np.float64), t, return_grad=True
    )
    assert_rounded_close(r.grad, want.grad, half)


@pytest.mark.parametrize("case, reduction", CALLS)
def test_empty_batches(isa, half, case, reduction, rng):
    arrays = _inputs(case, rng, 0, 7, half)
    kw = _options(reduction)
    got = case.ours(*arrays, **kw)
    assert_rounded_close(got, case.reference(*_upcast(arrays), **kw), half, msg=case.name)
    if reduction == "mean":
        assert np.isnan(got)
    if reduction == "sum":
        assert got == 0
    if reduction is not None:
        r = case.ours(*arrays, return_grad=True, **kw)
        assert r.grad.shape == arrays[0].shape and r.grad.dtype == half


def test_class_axis_not_last(isa, half, rng):
    x = (rng.standard_normal((3, 5, 4, 2)) * 3).astype(half)  # (N, C, H, W)
    x64 = x.astype(np.float64)
    t = rng.integers(0, 5, (3, 4, 2))
    t[0, 1] = -100
    for reduction in REDUCTIONS:
        r = fl.cross_entropy(x, t, reduction=reduction, return_grad=True)
        assert_rounded_close(r.loss, ref.cross_entropy(x64, t, reduction=reduction), half)
        want = fl.cross_entropy(x64, t, reduction=reduction, return_grad=True)
        assert_rounded_close(r.grad, want.grad, half)
        s = (x[::-1] * 0.5).astype(half)
        r = fl.distillation_loss(x, s, t, reduction=reduction, return_grad=True)
        s64 = s.astype(np.float64)
        assert_rounded_close(r.loss, ref.distillation_loss(x64, s64, t, reduction=reduction), half)
        want = fl.distillation_loss(x64, s64, t, reduction=reduction, return_grad=True)
        assert_rounded_close(r.grad, want.grad, half)
    # softmax-family functions along axes 0 and 1 of (N, C, H, W), and axis 0 of a (C, N) view
    for axis in (0, 1):
        assert_rounded_close(fl.softmax(x, axis), ref.softmax(x64, axis), half)
        assert_rounded_close(fl.log_softmax(x, axis), ref.log_softmax(x64, axis), half)
        assert_rounded_close(fl.logsumexp(x, axis), ref.logsumexp(x64, axis), half)
        assert_rounded_close(fl.entropy(x, axis), ref.entropy_from_logits(x64, axis), half)
        y = ref.softmax(x64, axis).astype(half)
        g = rng.standard_normal(x.shape).astype(half)
        y64, g64 = y.astype(np.float64), g.astype(np.float64)
        want = y64 * (g64 - np.sum(g64 * y64, axis=axis, keepdims=True))
        assert_rounded_close(fl.softmax_backward(g, y, axis), want, half)
    xt = x[:, :, 0, 0].T  # (C, N), a transposed view
    assert_rounded_close(fl.softmax(xt, 0), ref.softmax(xt.astype(np.float64), 0), half)


def test_softmax_out_and_dtype_arguments(isa, half, rng):
    x = (rng.standard_normal((6, 33)) * 3).astype(half)
    for f in (fl.softmax, fl.log_softmax):
        plain = f(x)
        out = np.empty_like(x)
        assert f(x, out=out) is out
        assert_same_bits(out, plain, f.__name__)
        inplace = x.copy()
        assert f(inplace, out=inplace) is inplace
        assert_same_bits(inplace, plain, f"{f.__name__} in place")
        with pytest.raises(ValueError, match="dtype"):
            f(x, out=np.empty(x.shape, np.float32))  # out has the result's dtype
        # dtype= casts first, as torch's: the half-precision result of the rounded input
        assert_same_bits(f(x.astype(np.float64), dtype=half), plain, f"{f.__name__} dtype=")
        assert f(x, dtype=np.float32).dtype == np.float32


@pytest.mark.parametrize("classes", [1, 2, 7, 8, 9, 15, 17, 31, 1000])
def test_tail_stores_stop_at_the_row_end(isa, half, classes, rng):
    """Each row's last, partial vector is stored with its lanes masked: the half values after the
    row (here the padding of a wider buffer that `out` is a view of) keep their bits."""
    x = (rng.standard_normal((5, classes)) * 3).astype(half)
    for f in (fl.softmax, fl.log_softmax):
        padded = np.full((5, classes + 24), 7.0, dtype=half)
        out = padded[:, :classes]
        assert f(x, out=out) is out
        assert_same_bits(out, f(x), f.__name__)
        assert_same_bits(padded[:, classes:], np.full((5, 24), 7.0, dtype=half), f"{f.__name__} padding")


def test_every_half_value_is_widened_and_rounded_back_exactly(isa, half):
    """kl_div with log targets of 0 is exp(0) (0 - x) = -x, elementwise: each of the 65536 half
    bit patterns, widened to float32 and rounded back, comes out as NumPy's float32 0 - x rounded
    to the half dtype, through the vector loop and its tail (a NaN as a NaN). Every -x is a half
    value, so this checks the widening and the way back, not the rounding (see the next test)."""
    bits = np.arange(2**16, dtype=np.uint16)
    x = np.concatenate([bits, bits[:7]]).view(half)
    with np.errstate(invalid="ignore"):  # 0 - a signaling NaN in NumPy's expected value
        widened = x.astype(np.float32)
        expected = (np.float32(0) - widened).astype(half)
    out = fl.kl_div(x, np.zeros_like(x), reduction="none", log_target=True)
    nan = np.isnan(widened)
    assert np.isnan(out[nan].astype(np.float32)).all()
    assert_same_bits(out[~nan], expected[~nan], "kl_div")


def test_results_round_to_nearest_even_once(isa, half, rng):
    """softmax_backward with y = (0.5, 0.5, 0, ...) gives y_0 (g_0 - sum_c g_c y_c) =
    (g_0 - g_1) / 4, exact in float32 for these g, which then rounds once to the half dtype: the
    same bits as NumPy's (ml_dtypes') rounding of that float32, ties to even included (g_1 = +-1
    puts (g_0 - g_1) / 4 exactly halfway between two half values), and NaN as NaN."""
    n, classes = 3000, 33  # two vectors and a tail a row
    g = np.zeros((n, classes), dtype=np.float32)
    g[:, 0] = np.round(rng.uniform(256, 512, n))  # even and odd multiples of the half spacing
    g[:, 1] = rng.uniform(1, 2, n) * rng.choice([-1, 1], n)
    g[::3, 1] = rng.choice([-1, 1], len(g[::3]))  # ties
    g[5::97, 0] = np.nan
    g = g.astype(half)
    y = np.zeros((n, classes), dtype=half)
    y[:, :2] = 0.5
    out = fl.softmax_backward(g, y)
    g32 = g.astype(np.float32)
    exact = np.float32(0.25) * (g32[:, 0] - g32[:, 1])
    expected = exact.astype(half)
    nan = np.isnan(exact)
    ties = (exact.view(np.uint32) & 0xFFFF) == 0x8000 if half.name == "bfloat16" else None
    assert ties is None or ties.sum() > 100
    assert np.isnan(out[nan, 0].astype(np.float32)).all()
    assert_same_bits(out[~nan, 0], expected[~nan], "softmax_backward")


# ---------------------------------------------------------------------------------------------
# Mixed dtypes: NumPy's promotion


# (case, index of the array that gets the second dtype); the other floating arrays get the first.
MIXED = [
    ("cross_entropy_probs", 1),
    ("cross_entropy_weight_smoothing_ignore", 2),  # class weights (torch refuses mixed ones)
    ("nll_loss", 2),  # class weights
    ("kl_div", 1),
    ("binary_cross_entropy", 1),
    ("binary_cross_entropy", 2),  # weight
    ("binary_cross_entropy_with_logits", 1),
    ("binary_cross_entropy_with_logits", 2),  # weight
    ("binary_cross_entropy_with_logits", 3),  # pos_weight
    ("distillation_loss", 1),  # teacher logits
    ("cosine_embedding_loss", 1),  # x2
    ("softmax_backward", 1),  # output
]
PAIRS = [
    ("float16", "float32"),
    ("float16", "float64"),
    ("bfloat16", "float32"),
    ("bfloat16", "float64"),
    ("float32", "float16"),
    ("float64", "bfloat16"),
    ("float16", "bfloat16"),  # NumPy refuses: no common dtype
    ("bfloat16", "float16"),
]


@pytest.mark.parametrize("first, second", PAIRS)
@pytest.mark.parametrize("name, index", MIXED)
def test_mixed_dtypes_follow_numpy_promotion(name, index, first, second, rng):
    case = CASE_BY_NAME[name]
    a, b = _dtype(first), _dtype(second)
    arrays = tuple(
        x.astype(b if i == index else a) if x.dtype.kind == "f" else x
        for i, x in enumerate(case.make(rng, 5, 6))
    )
    kw = _options(case.reductions[0] if case.reductions else None)
    try:
        expected = np.result_type(a, b)
    except TypeError:  # DTypePromotionError is a TypeError
        with pytest.raises(TypeError):
            case.ours(*arrays, **kw)
        return
    got = case.ours(*arrays, **kw)
    assert_rounded_close(got, case.reference(*_upcast(arrays), **kw), expected, msg=name)
    if case.reductions:  # the gradient has the input's dtype
        r = case.ours(*arrays, return_grad=True, **kw)
        assert_rounded_close(r.loss, case.reference(*_upcast(arrays), **kw), expected, msg=name)
        want = case.ours(*_upcast(arrays), return_grad=True, **kw)
        assert_rounded_close(r.grad, want.grad, arrays[0].dtype, msg=f"{name} gradient")


def test_non_floating_operands_next_to_bfloat16_are_type_errors(rng):
    # fastloss's own rule, whatever NumPy and ml_dtypes decide to promote (ml_dtypes 0.7 made
    # bfloat16 promote with int16/int32/int64, which earlier releases refused): a second float
    # operand must be floating, and float8 is not one of the computation dtypes.
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = rng.standard_normal((3, 4)).astype(ml_dtypes.bfloat16)
    for other in (np.int8, np.uint8, np.int16, np.int32, np.int64, ml_dtypes.float8_e4m3fn):
        y = np.zeros((3, 4), other)
        name = np.dtype(other).name
        with pytest.raises(TypeError, match=f"target must be a floating-point array.*{name}"):
            fl.kl_div(x, y, reduction="sum")
        with pytest.raises(TypeError, match=f"target must be a floating-point array.*{name}"):
            fl.binary_cross_entropy_with_logits(x, y)
        with pytest.raises(TypeError, match=f"output must be a floating-point array.*{name}"):
            fl.softmax_backward(x, y)


def test_class_index_targets_of_any_integer_dtype_keep_the_half_dtype(half, rng):
    x = (rng.standard_normal((8, 5)) * 3).astype(half)
    t = rng.integers(0, 5, 8)
    want = fl.cross_entropy(x, t)
    for dtype in (np.int8, np.uint8, np.int16, np.int32, np.uint64):
        assert_same_bits(fl.cross_entropy(x, t.astype(dtype)), want, str(dtype))
        assert fl.nll_loss(x, t.astype(dtype)).dtype == half


# ---------------------------------------------------------------------------------------------
# Memory: half-precision input is read as it is, never converted to a float32 copy. NumPy reports
# its allocations to tracemalloc (see tests/test_reliability.py), so such a copy would show up.

MEMORY_SHAPE = (2048, 2048)  # 8 MiB of float16 or bfloat16

MEMORY_CASES: dict[str, Callable[[dict], Any]] = {
    "cross_entropy": lambda a: fl.cross_entropy(a["x"], a["t"]),
    "log_softmax_out": lambda a: fl.log_softmax(a["x"], out=a["out"]),
    "kl_div": lambda a: fl.kl_div(a["x"], a["log_p"], reduction="batchmean", log_target=True),
    "binary_cross_entropy_with_logits": lambda a: fl.binary_cross_entropy_with_logits(
        a["x"], a["p"]
    ),
}


def _peak_traced(f: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        f()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", MEMORY_CASES)
def test_half_input_is_not_converted_to_a_float32_copy(half, name):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(MEMORY_SHAPE, np.float32).astype(half)
    arrays = {
        "x": x,
        "t": rng.integers(0, MEMORY_SHAPE[1], MEMORY_SHAPE[0]),
        "log_p": (rng.standard_normal(MEMORY_SHAPE, np.float32) * 0.1 - 8).astype(half),
        "p": rng.random(MEMORY_SHAPE, np.float32).astype(half),
        "out": np.empty_like(x),
    }
    f = MEMORY_CASES[name]
    f(arrays)  # warm-up: first-call caches are not what this measures
    peak = _peak_traced(lambda: f(arrays))
    assert peak < x.nbytes // 4, f"{name}: peak {peak} bytes, the input is {x.nbytes}"


def test_tracemalloc_sees_a_half_gradient_allocation(half):
    """The check above would be vacuous if tracemalloc did not see NumPy's arrays."""
    x = np.zeros(MEMORY_SHAPE, half)
    t = np.zeros(MEMORY_SHAPE[0], np.int64)
    assert _peak_traced(lambda: fl.cross_entropy(x, t, return_grad=True)) >= x.nbytes


def test_torch_half_tensors_are_taken_without_a_copy(rng):
    # float16 arrives by DLPack; bfloat16, which DLPack cannot hand to NumPy, through its bits.
    torch = pytest.importorskip("torch")
    pytest.importorskip("ml_dtypes")
    x = rng.standard_normal((6, 9)).astype(np.float32)
    y = rng.integers(0, 9, 6)
    for dtype in (torch.float16, torch.bfloat16):
        t = torch.from_numpy(x).to(dtype)
        got = fl.log_softmax(t)
        assert got.dtype.name == str(dtype).removeprefix("torch."), got.dtype
        want = torch.log_softmax(t.float(), dim=-1).to(dtype).float().numpy()
        np.testing.assert_array_equal(got.astype(np.float32), want)
        loss = fl.cross_entropy(t, torch.from_numpy(y))
        assert float(loss) == pytest.approx(
            float(torch.nn.functional.cross_entropy(t, torch.from_numpy(y))), rel=2**-6
        )
    t = torch.from_numpy(x).to(torch.bfloat16)
    from fastloss._validation import as_float_array

    assert as_float_array(t, "x").ctypes.data == t.data_ptr()  # shares the tensor's memory


# Found in review: sums over broadcast axes and long staged rows must not round in half precision
# on the way (each reproducer below gave a visibly wrong value before its fix).


def test_broadcast_input_gradients_are_summed_before_rounding():
    pytest.importorskip("ml_dtypes")
    import ml_dtypes

    # kl_div: a (1,) input against 2^20 targets; mean's per-element share 1/D is a float16
    # subnormal, so scaling each term before the sum lost the gradient's precision.
    with pytest.warns(UserWarning, match="batchmean"):  # PyTorch's warning for 'mean'
        r = fl.kl_div(
            np.float16([0.0]), np.full(2**20, 0.3, np.float16), reduction="mean", return_grad=True
        )
    assert float(r.grad[0]) == pytest.approx(-float(np.float16(0.3)), rel=2**-10)
    # cosine_embedding_loss: a broadcast x1's gradient is a sum over 8192 rows (bfloat16 stops
    # growing after ~256 equal terms when summed in bfloat16).
    rng = np.random.default_rng(7)
    a = rng.standard_normal((1, 8)).astype(np.float32)
    b = rng.standard_normal((8192, 8)).astype(np.float32)
    y = np.ones(8192)
    for reduction in ("sum", "mean"):
        want = fl.cosine_embedding_loss(a, b, y, reduction=reduction, return_grad=True).grad
        got = fl.cosine_embedding_loss(
            a.astype(ml_dtypes.bfloat16),
            b.astype(ml_dtypes.bfloat16),
            y,
            reduction=reduction,
            return_grad=True,
        ).grad
        # b itself is rounded to bfloat16 first, hence more than one bfloat16 rounding of `want`
        np.testing.assert_allclose(got.astype(np.float32), want, rtol=2**-5, atol=1e-6)


def test_long_staged_rows_round_once(half):
    # A strided 1-D array is staged; rows of more than 65536 classes are reduced block by block
    # in float32, and rounded to the half dtype once at the end.
    for seed in range(4):
        x = np.random.default_rng(seed).standard_normal(6 * 2**16).astype(half)[::2]
        want = ref.logsumexp(x.astype(np.float64))
        got = float(fl.logsumexp(x))
        ulp = 2.0 ** (np.floor(np.log2(abs(want))) - (10 if half == np.float16 else 7))
        assert abs(got - want) <= 0.5 * ulp + 1e-5 * abs(want), (seed, got, want)
        p = np.abs(x.astype(np.float32))
        p = (p / p.sum()).astype(half)
        assert float(fl.entropy(x)) == pytest.approx(
            ref.entropy_from_logits(x.astype(np.float64)), rel=4 * ulp
        )
        assert float(fl.entropy(probs=p)) == pytest.approx(
            ref.entropy_from_probs(p.astype(np.float64)), rel=2**-7
        )


def test_long_zero_stride_rows_are_reduced_in_blocks():
    # 2^22 classes behind one value: staged in blocks of 65536 (bounded scratch, whatever the
    # length), the blocks combined by the chain rule of entropy.
    n = 2**22 + 3
    for dtype in (np.float32, np.float16):
        h = fl.entropy(np.broadcast_to(dtype(0.5), (n,)))
        assert float(h) == pytest.approx(np.log(n), rel=2**-10)
        hp = fl.entropy(probs=np.broadcast_to(np.float32(1.0 / n), (n,)))
        assert float(hp) == pytest.approx(np.log(n), rel=1e-4)
    x = np.broadcast_to(np.float32(-np.inf), (n,))
    assert np.isnan(fl.entropy(x)) and fl.logsumexp(x) == -np.inf
