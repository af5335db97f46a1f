"""fastloss.torch against torch: values and gradients for every function and option, in float64
(gradcheck), float32, float16 and bfloat16; strided, expanded and empty tensors."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ml_dtypes")  # bfloat16 tensors are viewed as ml_dtypes arrays

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import fastloss.torch as flt  # noqa: E402
from torch_cases import CASES  # noqa: E402

F = torch.nn.functional
_IDS = [c.id for c in CASES]

# (rtol, atol) of each dtype's comparison; half precision is computed in float32 by fastloss
# and in the dtype itself (or float32) by torch, so both round differently.
_TOLERANCE = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-6),
    torch.float16: (1e-2, 2e-3),
    torch.bfloat16: (4e-2, 2e-2),
}


def _leaves(tensors):
    return [t.detach().clone().requires_grad_() for t in tensors]


def _run(f, tensors, others):
    leaves = _leaves(tensors)
    out = f(*leaves, **others)
    # a fixed, non-uniform grad_output: "none" gradients depend on it per position
    go = torch.linspace(0.5, 1.5, out.numel(), dtype=torch.float64).reshape(out.shape)
    out.backward(go.to(out.dtype))
    return out.detach(), [t.grad for t in leaves]


def _float32(v):
    return v.float() if torch.is_tensor(v) and v.is_floating_point() else v


def _theirs(case, dtype, tensors, others):
    """torch's value and gradients, in `dtype` where torch implements it, else from float32."""
    try:
        return _run(case.theirs, tensors, others)
    except RuntimeError:
        if dtype not in (torch.float16, torch.bfloat16):
            raise
    up = {k: _float32(v) for k, v in others.items()}
    out, grads = _run(case.theirs, [t.float() for t in tensors], up)
    return out.to(dtype), [g.to(dtype) for g in grads]


# (float64 is gradcheck's, below)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", CASES, ids=_IDS)
def test_values_and_gradients_equal_torch(case, dtype):
    tensors, others = case.make(dtype)
    out, grads = _run(case.ours, tensors, others)
    want, want_grads = _theirs(case, dtype, tensors, others)
    rtol, atol = _TOLERANCE[dtype]
    assert out.dtype == want.dtype
    torch.testing.assert_close(out, want, rtol=rtol, atol=atol)
    for got, expected in zip(grads, want_grads):
        assert got.dtype == expected.dtype and got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("case", CASES, ids=_IDS)
def test_gradcheck_float64(case):
    tensors, others = case.make(torch.float64)
    leaves = _leaves(tensors)
    assert torch.autograd.gradcheck(lambda *xs: case.ours(*xs, **others), leaves)


@pytest.mark.parametrize("case", CASES, ids=_IDS)
def test_strided_inputs(case):
    """Inputs read through a stride of 2 elements give torch's results and are not modified."""
    tensors, others = case.make(torch.float32)
    strided = [torch.stack([t, t], -1)[..., 0] for t in tensors]
    assert all(not t.is_contiguous() for t in strided)
    before = [t.clone() for t in strided]
    out, grads = _run(case.ours, strided, others)
    want, want_grads = _run(case.theirs, tensors, others)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
    for got, expected in zip(grads, want_grads):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    for t, b in zip(strided, before):
        assert torch.equal(t, b)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_backward_is_fastloss_kernel(name):
    """softmax's and log_softmax's backward run fastloss::<name>_backward (not torch's kernel),
    also on the zero-stride grad_output of ``.sum()``, with torch's gradient."""
    seen = []

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(func.name())
            return func(*args, **(kwargs or {}))

    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    y = getattr(flt, name)(x, 1)
    with Recorder():
        (got,) = torch.autograd.grad(y.sum(), x)
    assert f"fastloss::{name}_backward" in seen
    assert not any("_backward_data" in op for op in seen), seen
    (want,) = torch.autograd.grad(getattr(F, name)(x, 1).sum(), x)
    torch.testing.assert_close(got, want)


def test_expanded_logits():
    row = torch.randn(1, 7, dtype=torch.float64)
    target = torch.tensor([1, 3, 6, 0])
    expanded = row.expand(4, 7).requires_grad_()  # stride 0 along the batch
    assert expanded.stride() == (0, 1)
    dense = row.repeat(4, 1).requires_grad_()
    flt.cross_entropy(expanded, target).backward()
    F.cross_entropy(dense, target).backward()
    torch.testing.assert_close(expanded.grad, dense.grad)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_zero_size_batches(reduction):
    x = torch.empty(0, 5, requires_grad=True)
    target = torch.empty(0, dtype=torch.int64)
    ours = flt.cross_entropy(x, target, reduction=reduction)
    theirs = F.cross_entropy(x.detach(), target, reduction=reduction)
    torch.testing.assert_close(ours, theirs, equal_nan=True)
    ours.sum().backward()
    assert x.grad.shape == (0, 5)
    y = torch.empty(0, 3, requires_grad=True)
    assert flt.softmax(y, 1).shape == (0, 3)
    assert flt.binary_cross_entropy_with_logits(y, torch.empty(0, 3), reduction="sum") == 0


def test_kl_div_mean_warns_as_torch():
    x = torch.log_softmax(torch.randn(3, 4), 1)
    t = torch.softmax(torch.randn(3, 4), 1)
    with pytest.warns(UserWarning, match="batchmean"):
        ours = flt.kl_div(x, t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = F.kl_div(x, t)
    torch.testing.assert_close(ours, theirs)


def test_retain_graph_gives_the_same_gradient_twice():
    """The first backward takes the gradient precomputed in forward; a second backward through
    the retained graph recomputes it."""
    x = torch.randn(6, 5, requires_grad=True)
    t = torch.randint(0, 5, (6,))
    loss = flt.cross_entropy(x, t) * 3.0
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward()
    torch.testing.assert_close(x.grad, 2 * first)


def test_no_gradient_without_grad_mode():
    x = torch.randn(4, 3, requires_grad=True)
    t = torch.randint(0, 3, (4,))
    with torch.no_grad():
        loss = flt.cross_entropy(x, t)
    assert loss.grad_fn is None and not loss.requires_grad
    with torch.inference_mode():
        loss = flt.cross_entropy(x, t)
    torch.testing.assert_close(loss, F.cross_entropy(x.detach(), t))


def test_modules_match_torch_nn():
    x = torch.randn(5, 4, requires_grad=True)
    t = torch.randint(0, 4, (5,))
    w = torch.rand(4) + 0.5
    pairs = [
        (
            flt.nn.CrossEntropyLoss(w, ignore_index=1, label_smoothing=0.1),
            torch.nn.CrossEntropyLoss(w, ignore_index=1, label_smoothing=0.1),
            (x, t),
        ),
        (flt.nn.NLLLoss(w, reduction="sum"), torch.nn.NLLLoss(w, reduction="sum"), (x, t)),
        (
            flt.nn.KLDivLoss(reduction="batchmean"),
            torch.nn.KLDivLoss(reduction="batchmean"),
            (x.log_softmax(1), x.detach().softmax(1)),
        ),
        (
            flt.nn.BCEWithLogitsLoss(w, pos_weight=w),
            torch.nn.BCEWithLogitsLoss(w, pos_weight=w),
            (x, torch.rand(5, 4)),
        ),
        (flt.nn.BCELoss(w), torch.nn.BCELoss(w), (x.sigmoid(), torch.rand(5, 4))),
        (
            flt.nn.CosineEmbeddingLoss(0.1),
            torch.nn.CosineEmbeddingLoss(0.1),
            (x, x.detach() + 1, torch.tensor([1, -1, 1, -1, 1])),
        ),
        (flt.nn.Softmax(1), torch.nn.Softmax(1), (x,)),
        (flt.nn.LogSoftmax(-1), torch.nn.LogSoftmax(-1), (x,)),
    ]
    for ours, theirs, args in pairs:
        got, want = ours(*args), theirs(*args)
        torch.testing.assert_close(got, want)
        (g1,) = torch.autograd.grad(got.sum(), x, retain_graph=True)
        (g2,) = torch.autograd.grad(want.sum(), x)
        torch.testing.assert_close(g1, g2)
    module = flt.nn.CrossEntropyLoss(w)
    assert "weight" in dict(module.named_buffers())
    assert isinstance(module, torch.nn.Module)
    entropy = flt.nn.Entropy()(x)
    torch.testing.assert_close(entropy, torch.distributions.Categorical(logits=x).entropy())
    teacher = torch.randn(5, 4)
    got = flt.nn.DistillationLoss(temperature=3.0, alpha=0.25)(x, teacher, t)
    want = flt.distillation_loss(x, teacher, t, temperature=3.0, alpha=0.25)
    torch.testing.assert_close(got, want)
    focal = flt.nn.SigmoidFocalLoss(alpha=-1, gamma=1.5, reduction="sum")  # no torch.nn module
    assert repr(focal) == "SigmoidFocalLoss(alpha=-1, gamma=1.5, reduction='sum')"
    soft = torch.rand(5, 4)
    torch.testing.assert_close(focal(x, soft), flt.sigmoid_focal_loss(x, soft, -1, 1.5, "sum"))
