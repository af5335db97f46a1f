"""fastloss.torch.linear_cross_entropy and flt.nn.LinearCrossEntropyLoss beyond the shared cases
of torch_cases.py (values, three gradients, gradcheck, half precision, strides): the NumPy API's
bits, gradients for any subset of the three tensors, the module against torch.nn's, the gradient
buffer pool, torch.compile, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ml_dtypes")  # bfloat16 tensors are viewed as ml_dtypes arrays

import fastloss as fl  # noqa: E402
import fastloss.torch as flt  # noqa: E402
from fastloss.torch._convert import to_numpy  # noqa: E402

F = torch.nn.functional


def _head(dtype=torch.float32, rows=6, features=5, classes=7, bias=True):
    """(input, linear_weight, linear_bias or None, target), all leaves that require grad."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, features, generator=gen).to(dtype).requires_grad_()
    w = torch.randn(classes, features, generator=gen).to(dtype).requires_grad_()
    b = torch.randn(classes, generator=gen).to(dtype).requires_grad_() if bias else None
    t = torch.randint(0, classes, (rows,), generator=gen)
    t[1] = -100
    return x, w, b, t


def _grads(*tensors):
    return [t.grad for t in tensors]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_equals_numpy_api_bit_for_bit(dtype, reduction):
    """The loss and the three gradients are the NumPy API's arrays (backward scales by 1 without
    a pass; reduction="none" hands grad_output to the NumPy function)."""
    x, w, b, t = _head(dtype)
    weight = torch.rand(7, generator=torch.Generator().manual_seed(1)).to(dtype) + 0.5
    options = {"weight": weight, "reduction": reduction, "label_smoothing": 0.1, "z_loss": 1e-3}
    loss = flt.linear_cross_entropy(x, w, t, linear_bias=b, **options)
    grad_output = None
    if reduction == "none":
        grad_output = torch.linspace(0.5, 1.5, 6).to(dtype)
    loss.backward(grad_output)
    want = fl.linear_cross_entropy(
        to_numpy(x),
        to_numpy(w),
        t.numpy(),
        linear_bias=to_numpy(b),
        return_grad=True,
        grad_output=to_numpy(grad_output),
        **{k: to_numpy(v) if torch.is_tensor(v) else v for k, v in options.items()},
    )
    np.testing.assert_array_equal(to_numpy(loss.detach()), np.asarray(want.loss))
    for got, expected in zip(_grads(x, w, b), want[1:]):
        assert got.dtype == dtype
        np.testing.assert_array_equal(to_numpy(got), expected)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_every_position_ignored(reduction):
    """torch's values: the mean is NaN (0 / 0), and every gradient is 0, not NaN."""
    x, w, b, t = _head()
    t[:] = -100
    for f in (flt.linear_cross_entropy, F.linear_cross_entropy):
        loss = f(x, w, t, linear_bias=b, reduction=reduction, label_smoothing=0.1)
        loss.sum().backward()
        if reduction == "mean":
            assert loss.isnan()
        else:
            assert (loss == 0).all()
        for g in _grads(x, w, b):
            assert torch.equal(g, torch.zeros_like(g))
        x.grad = w.grad = b.grad = None


@pytest.mark.parametrize("which", [(True, False, False), (False, True, True), (False, False, True)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradients_of_a_subset(which, reduction):
    """Only the tensors that require grad get one (a frozen head, a frozen input), as torch's."""
    x, w, b, t = _head(torch.float64)
    for tensor, wanted in zip((x, w, b), which):
        tensor.requires_grad_(wanted)
    leaves = [v for v, wanted in zip((x, w, b), which) if wanted]
    ours = flt.linear_cross_entropy(x, w, t, linear_bias=b, reduction=reduction)
    theirs = F.linear_cross_entropy(x, w, t, linear_bias=b, reduction=reduction)
    scale = torch.linspace(0.5, 1.5, ours.numel(), dtype=torch.float64).reshape(ours.shape)
    got = torch.autograd.grad((ours * scale).sum(), leaves)
    want = torch.autograd.grad((theirs * scale).sum(), leaves)
    for g, expected in zip(got, want):
        torch.testing.assert_close(g, expected)


def test_retain_graph_recomputes_all_three_gradients():
    x, w, b, t = _head(torch.float64)
    loss = flt.linear_cross_entropy(x, w, t, linear_bias=b, label_smoothing=0.2) * 3.0
    loss.backward(retain_graph=True)
    first = [g.clone() for g in _grads(x, w, b)]
    loss.backward()  # the precomputed gradients were taken: fastloss::..._backward computes them
    for g, once in zip(_grads(x, w, b), first):
        torch.testing.assert_close(g, 2 * once)


def test_chunk_size_and_torch_options():
    """chunk_size (rows per strip) changes nothing but the summation order; torch's options
    (its own chunking strategy) are accepted and change nothing."""
    x, w, b, t = _head(torch.float64, rows=9)
    want = F.linear_cross_entropy(x, w, t, linear_bias=b)
    want_grads = torch.autograd.grad(want, (x, w, b))
    for extra in ({"chunk_size": 2}, {"options": torch.nn.LinearCrossEntropyOptions()}):
        got = flt.linear_cross_entropy(x, w, t, linear_bias=b, **extra)
        torch.testing.assert_close(got, want)
        for g, expected in zip(torch.autograd.grad(got, (x, w, b)), want_grads):
            torch.testing.assert_close(g, expected)


def test_module_matches_torch_nn():
    """Same constructor, parameter and buffer names (a state dict loads either way), values
    and gradients."""
    torch.manual_seed(0)
    weight = torch.rand(7) + 0.5
    options = {"bias": True, "weight": weight, "label_smoothing": 0.1, "reduction": "sum"}
    theirs = torch.nn.LinearCrossEntropyLoss(5, 7, **options)
    ours = flt.nn.LinearCrossEntropyLoss(5, 7, **options)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(6, 5)
    t = torch.randint(0, 7, (6,))
    got, want = ours(x, t), theirs(x, t)
    torch.testing.assert_close(got, want)
    got.backward()
    want.backward()
    for p, q in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    assert repr(ours).startswith(
        "LinearCrossEntropyLoss(\n  in_features=5, num_classes=7, out_features=(), bias=True, "
        "reduction=sum, ignore_index=None, label_smoothing=0.1, options=None, z_loss=0.0, "
        "softcap=None, chunk_size=None\n  (linear): Linear(in_features=5, out_features=7, bias=True)"
    )
    z = flt.nn.LinearCrossEntropyLoss(5, 7, z_loss=0.01)
    z.load_state_dict({"linear.weight": theirs.linear.weight})
    want = flt.linear_cross_entropy(x, theirs.linear.weight, t, z_loss=0.01)
    torch.testing.assert_close(z(x, t), want)
    with pytest.raises(ValueError, match=r"out_features must be \(\).*got \(2, 3\)"):
        flt.nn.LinearCrossEntropyLoss(5, 7, out_features=(2, 3))


def test_large_gradient_buffers_are_reused_once_free(monkeypatch):
    """The pool keeps the largest of the three gradients (linear_weight's here) and hands it to
    the next call's grad_weight_out once no tensor refers to it."""
    from fastloss.torch import _gradient_pool

    monkeypatch.setattr(_gradient_pool, "_MIN_BYTES", 0)  # every gradient counts as large
    x, w, b, t = _head(rows=4, classes=9)
    flt.linear_cross_entropy(x, w, t, linear_bias=b).backward()
    first = w.grad.clone()
    pointer = w.grad.data_ptr()
    held = w.grad
    x.grad = w.grad = b.grad = None
    flt.linear_cross_entropy(x, w, t, linear_bias=b).backward()  # `held` keeps it in use
    assert w.grad.data_ptr() != pointer
    torch.testing.assert_close(held, first)
    pointer = w.grad.data_ptr()
    del held
    x.grad = w.grad = b.grad = None
    flt.linear_cross_entropy(x, w, t, linear_bias=b).backward()
    assert w.grad.data_ptr() == pointer
    torch.testing.assert_close(w.grad, first)
    flt.empty_cache()


def test_compile_fullgraph_head():
    """An nn.Linear head through flt.linear_cross_entropy (mean, and "none" weighted per
    position) compiles into one graph and gives eager mode's loss and gradients."""
    torch.manual_seed(0)
    body, head = torch.nn.Linear(8, 16), torch.nn.Linear(16, 11)
    x, t = torch.randn(12, 8), torch.randint(0, 11, (12,))
    parameters = [*body.parameters(), *head.parameters()]

    def step(x, t):
        hidden = torch.tanh(body(x))
        mean = flt.linear_cross_entropy(
            hidden, head.weight, t, linear_bias=head.bias, label_smoothing=0.1, z_loss=1e-3
        )
        rows = flt.linear_cross_entropy(hidden, head.weight, t, reduction="none")
        return mean + (rows * torch.arange(12.0)).sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    got = compiled(x, t)
    got.backward()
    grads = [p.grad.clone() for p in parameters]
    for p in parameters:
        p.grad = None
    want = step(x, t)
    want.backward()
    torch.testing.assert_close(got, want)
    for g, p in zip(grads, parameters):
        torch.testing.assert_close(g, p.grad)


def test_errors_name_the_argument():
    x, w, b, t = _head()
    q = torch.softmax(torch.randn(6, 7), 1)
    with pytest.raises(NotImplementedError, match=r"target requires grad.*input, linear_weight"):
        flt.linear_cross_entropy(x, w, q.requires_grad_())
    with pytest.raises(NotImplementedError, match="weight requires grad"):
        flt.linear_cross_entropy(x, w, t, weight=torch.rand(7, requires_grad=True))
    for name in ("input", "linear_weight", "linear_bias"):
        args = {"input": x, "linear_weight": w, "linear_bias": b}
        args[name] = args[name].detach().to("meta")
        with pytest.raises(ValueError, match=f"{name} is on device meta"):
            flt.linear_cross_entropy(
                args["input"], args["linear_weight"], t, linear_bias=args["linear_bias"]
            )
    with pytest.raises(ValueError, match="ignore_index must be None when target holds class"):
        flt.linear_cross_entropy(x, w, q.detach(), ignore_index=-100)
    with pytest.raises(TypeError, match=r"options must be None or a torch\.nn\.LinearCross"):
        flt.linear_cross_entropy(x, w, t, options={"batch_chunk_size": 2})
    with pytest.raises(TypeError, match=r"linear_weight has dtype torch\.float64"):
        flt.linear_cross_entropy(x, w.double(), t)
    with pytest.raises(ValueError, match=r"linear_weight must have shape \(V, 5\)"):
        flt.linear_cross_entropy(x, w.detach().reshape(7, 1, 5), t)
    with pytest.raises(TypeError, match="chunk_size must be an integer, got tuple"):
        flt.linear_cross_entropy(x, w, t, chunk_size=(2, 3))
    with pytest.raises(RuntimeError, match="double backward"):
        loss = flt.linear_cross_entropy(x, w, t, linear_bias=b)
        torch.autograd.grad(loss, (x, w, b), create_graph=True)
