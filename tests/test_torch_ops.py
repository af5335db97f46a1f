"""fastloss.torch's custom ops under torch's own checks (opcheck, torch.compile), and the
adapter's errors, threads, copies and memory."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import tracemalloc
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch._functorch import config as aot_autograd_config  # noqa: E402

import fastloss as fl  # noqa: E402
import fastloss.torch as flt  # noqa: E402
from fastloss.torch._convert import to_numpy, to_tensor  # noqa: E402
from fastloss.torch._losses import LOSSES  # noqa: E402

F = torch.nn.functional


def _x(*shape, requires_grad=True):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=requires_grad)


def _probs(*shape):
    return torch.rand(*shape, dtype=torch.float64) * 0.8 + 0.1


def _loss_arguments(name, reduction):
    """Arguments of fastloss::<name> (tensors, options), for a small case."""
    t = torch.tensor([0, 2, 1, 2])
    w = _probs(3)
    return {
        # (..., label_smoothing, axis, z_loss, softcap)
        "cross_entropy": (_x(4, 3), t, w, -100, reduction, 0.1, None, 0.01, 5.0),
        "nll_loss": (_x(4, 3), t, w, 1, reduction, None),
        "distillation_loss": (
            _x(4, 3),
            _x(4, 3, requires_grad=False),
            t,
            None,
            2.0,
            0.5,
            -100,
            reduction,
            0.0,
            None,
            "jsd",
            0.3,
            0.01,
            5.0,
        ),
        # (student, indices, logprobs, target, weight, temperature, alpha, ignore_index,
        #  reduction, label_smoothing, axis, divergence, beta, z_loss, softcap, topk_residual)
        "distillation_loss_topk": (
            _x(4, 3),
            torch.tensor([[2, 0], [1, 2], [0, 1], [1, 0]]),
            torch.log(torch.tensor([[0.5, 0.25], [0.6, 0.3], [0.2, 0.7], [0.45, 0.45]])).double(),
            t,
            None,
            2.0,
            0.5,
            -100,
            reduction,
            0.0,
            None,
            "jsd",
            0.3,
            0.01,
            5.0,
            "tail",
        ),
        "kl_div": (
            _x(4, 3),
            _probs(4, 3),
            "batchmean" if reduction == "mean" else reduction,
            False,
        ),
        "binary_cross_entropy": (_probs(4, 3).requires_grad_(), _probs(4, 3), w, reduction),
        "binary_cross_entropy_with_logits": (_x(4, 3), _probs(4, 3), w, w, reduction),
        "cosine_embedding_loss": (_x(4, 3), _x(4, 3), torch.tensor([1, -1, 1, -1]), 0.1, reduction),
        "sigmoid_focal_loss": (_x(4, 3), _probs(4, 3), 0.25, 1.5, reduction),
        # (input, linear_weight, target, linear_bias, weight, ignore_index, reduction,
        #  label_smoothing, z_loss, softcap, chunk_size): 5 classes, strips of 3 rows
        "linear_cross_entropy": (
            _x(4, 3),
            _x(5, 3),
            torch.tensor([0, 4, -100, 2]),
            _x(5),
            _probs(5),
            -100,
            reduction,
            0.1,
            0.01,
            5.0,
            3,
        ),
    }[name]


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_opcheck_losses(name, reduction):
    loss = LOSSES[name]
    arguments = _loss_arguments(name, reduction)
    gradients = len(loss.gradients)
    torch.library.opcheck(loss.op, (*arguments, [reduction != "none"] * gradients))
    grad_output = torch.tensor(0.5, dtype=torch.float64)
    if reduction == "none":
        grad_output = torch.rand_like(loss.op(*arguments, [False] * gradients)[0])
    detached = tuple(a.detach() if torch.is_tensor(a) else a for a in arguments)
    for needs in ([True] * gradients, [k == gradients - 1 for k in range(gradients)]):
        torch.library.opcheck(loss.backward_op, (grad_output, *detached, needs))


@pytest.mark.parametrize(
    "op, arguments",
    [
        (torch.ops.fastloss.softmax.default, (_x(3, 4), 1)),
        (torch.ops.fastloss.log_softmax.default, (_x(3, 4), -1)),
        (torch.ops.fastloss.logsumexp.default, (_x(3, 4, 2), [0, 2], False)),
        (torch.ops.fastloss.logsumexp.default, (_x(3, 4), [1], True)),
        (torch.ops.fastloss.entropy.default, (_x(3, 4), -1)),
        (
            torch.ops.fastloss.softmax_backward.default,
            (_x(3, 4, requires_grad=False), torch.softmax(_x(3, 4, requires_grad=False), 0), 0),
        ),
        (
            torch.ops.fastloss.log_softmax_backward.default,
            (_x(3, 4, requires_grad=False), torch.log_softmax(_x(3, 4, requires_grad=False), 1), 1),
        ),
    ],
    ids=[
        "softmax",
        "log_softmax",
        "logsumexp-dims",
        "logsumexp-keepdim",
        "entropy",
        "softmax_backward",
        "log_softmax_backward",
    ],
)
def test_opcheck_softmax_family(op, arguments):
    torch.library.opcheck(op, arguments)


def test_compile_fullgraph_model_and_loss():
    """A small model and fastloss's loss compile into one graph, and train as in eager mode."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5))
    x, t = torch.randn(12, 8), torch.randint(0, 5, (12,))
    teacher = torch.randn(12, 5)

    def step(x, t):
        logits = model(x)
        return (
            flt.cross_entropy(logits, t, label_smoothing=0.1)
            + flt.distillation_loss(logits, teacher, t)
            + flt.log_softmax(logits, 1).mean()
        )

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    got = compiled(x, t)
    got.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    want = step(x, t)
    want.backward()
    torch.testing.assert_close(got, want)
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad)


# Inductor's own imports warn (torch.jit.script_method) on some torch versions
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_compile_inductor_with_reduction_none():
    x = torch.randn(6, 4, requires_grad=True)
    t = torch.randint(0, 4, (6,))

    def f(x, t):
        return (flt.cross_entropy(x * 2, t, reduction="none") * torch.arange(6.0)).sum()

    compiled = torch.compile(f, fullgraph=True)
    # AOTAutograd's disk cache is keyed by the forward graph alone: an entry written before a
    # change of a fastloss op's backward would be used after it (pytorch/pytorch#144344; it was,
    # when fastloss::*_backward changed schema). Tracing backward afresh costs about 1 s here.
    with aot_autograd_config.patch(enable_autograd_cache=False):
        compiled(x, t).backward()
    got = x.grad.clone()
    x.grad = None
    (F.cross_entropy(x * 2, t, reduction="none") * torch.arange(6.0)).sum().backward()
    torch.testing.assert_close(got, x.grad)


def test_double_backward_is_a_clear_error():
    x = torch.randn(4, 3, requires_grad=True)
    t = torch.randint(0, 3, (4,))
    for loss in (flt.cross_entropy(x, t), flt.softmax(x, 1).pow(2).sum(), flt.entropy(x).sum()):
        with pytest.raises(RuntimeError, match="double backward"):
            torch.autograd.grad(loss, x, create_graph=True)


def test_errors_name_the_argument():
    x = torch.randn(4, 3, requires_grad=True)
    t = torch.randint(0, 3, (4,))
    with pytest.raises(NotImplementedError, match="target requires grad"):
        flt.cross_entropy(x, torch.rand(4, 3, requires_grad=True))
    with pytest.raises(NotImplementedError, match="target requires grad"):
        flt.kl_div(x, torch.rand(4, 3, requires_grad=True), reduction="sum")
    with pytest.raises(NotImplementedError, match="teacher_logits requires grad"):
        flt.distillation_loss(x, torch.randn(4, 3, requires_grad=True), t)
    with pytest.raises(NotImplementedError, match="weight requires grad"):
        flt.cross_entropy(x, t, weight=torch.rand(3, requires_grad=True))
    with pytest.raises(TypeError, match="size_average and reduce are deprecated"):
        flt.cross_entropy(x, t, size_average=True)
    with pytest.raises(TypeError, match="size_average"):
        flt.nn.NLLLoss(reduce=False)
    with pytest.raises(TypeError, match=r"target must be a torch.Tensor"):
        flt.cross_entropy(x, np.array([0, 1, 2, 0]))
    with pytest.raises(TypeError, match=r"weight has dtype torch.float64"):
        flt.cross_entropy(x, t, weight=torch.rand(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="on device meta"):
        flt.cross_entropy(x.to("meta"), t)
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        flt.cross_entropy(x, t, reduction="avg")
    with pytest.raises(TypeError, match="label_smoothing must be a real number"):
        flt.cross_entropy(x, t, label_smoothing="a")
    with pytest.raises(IndexError, match="Target 7 is out of bounds"):
        flt.cross_entropy(x, torch.tensor([0, 7, 1, 1]))
    with pytest.raises(ValueError, match="shape"):
        flt.cross_entropy(x, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="dim must be given"):
        flt.softmax(x)
    with pytest.raises(ValueError, match=r"between 0 and 1|outside"):
        flt.binary_cross_entropy(x.detach() + 2, torch.rand(4, 3))


def test_numpy_api_takes_dlpack_producers_and_points_to_fastloss_torch():
    x = torch.randn(5, 4)
    t = torch.randint(0, 4, (5,))
    got = fl.cross_entropy(x, t, return_grad=True)  # a tensor in the NumPy API: a view, no copy
    want = fl.cross_entropy(x.numpy(), t.numpy(), return_grad=True)
    assert got.loss == want.loss
    np.testing.assert_array_equal(got.grad, want.grad)
    np.testing.assert_array_equal(fl.softmax(x.t(), 0), fl.softmax(x.numpy().T, 0))
    with pytest.raises(TypeError, match=r"fastloss.torch"):
        fl.cross_entropy(x.requires_grad_(), t)


def test_conversions_share_memory_and_keep_strides():
    x = torch.randn(6, 5)
    for t in (x, x.t(), x[:, ::2], x[:1].expand(4, 5)):
        a = to_numpy(t)
        assert a.ctypes.data == t.data_ptr()
        assert a.strides == tuple(s * t.element_size() for s in t.stride())
    b = torch.randn(3, 4).bfloat16()
    a = to_numpy(b.t())
    assert a.dtype.name == "bfloat16" and a.ctypes.data == b.data_ptr()
    back = to_tensor(a.copy())
    assert back.dtype == torch.bfloat16 and torch.equal(back, b.t())
    r = np.arange(6.0)
    assert to_tensor(r).data_ptr() == r.ctypes.data
    r.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's non-writable-array warning
        assert torch.equal(to_tensor(r), torch.arange(6.0, dtype=torch.float64))


def test_threads_follow_torch_unless_set():
    """Inside the adapter fastloss uses torch's thread count, until fl.set_num_threads."""
    code = textwrap.dedent("""
        import torch, fastloss as fl
        from fastloss.torch._threads import call_with_torch_threads
        inside = lambda: call_with_torch_threads(fl.get_num_threads)
        seen = []
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            seen.append(inside())
        fl.set_num_threads(2)
        torch.set_num_threads(1)
        seen.append(inside())
        print(seen)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[1, 2, 1, 2]"


def test_no_leaks_or_cycles_over_many_steps():
    """10,000 training steps on a tiny tensor leave nothing behind per step, and nothing in
    reference cycles (the garbage collector is off meanwhile): Python's allocated blocks over
    the first 8,000, tracemalloc over the last 2,000 (its first 1,500 refill torch's bounded
    per-call caches with traced entries: traced memory grows until they are full, as it does
    for torch's own losses)."""
    x = torch.randn(4, 3, requires_grad=True)
    t = torch.randint(0, 3, (4,))

    def step():
        flt.cross_entropy(x, t).backward()
        x.grad = None

    for _ in range(200):  # first calls fill torch's dispatch caches (with cycles of their own)
        step()
    gc.collect()
    gc.disable()
    try:
        blocks = sys.getallocatedblocks()
        for _ in range(8_000):
            step()
        grown = sys.getallocatedblocks() - blocks
        tracemalloc.start(1)
        try:
            for _ in range(1_500):
                step()
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(500):
                step()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        cycles = gc.collect()
    finally:
        gc.enable()
    # torch's own F.cross_entropy grows by ~2,000 blocks here, whatever the number of steps
    # (caches filled once); anything kept per step would be at least one block per step.
    assert cycles == 0 and grown < 8_000, (cycles, grown)
    assert after - before < 4 * 1024, after - before


def test_large_gradient_buffer_is_reused_only_once_free(monkeypatch):
    """The pool hands a large gradient's buffer to the next call only after its tensor is gone."""
    from fastloss.torch import _gradient_pool

    monkeypatch.setattr(_gradient_pool, "_MIN_BYTES", 0)  # every gradient counts as large
    x = torch.randn(64, 33, requires_grad=True)
    t = torch.randint(0, 33, (64,))
    flt.cross_entropy(x, t).backward()
    first = x.grad
    flt.cross_entropy(x, t).backward()  # first is still .grad: accumulated into, not reused
    second = x.grad
    assert second.data_ptr() == first.data_ptr()
    held = x.grad.clone()
    x.grad = None
    flt.cross_entropy(x, t).backward()  # first's tensor is still held by `first` and `second`
    assert x.grad.data_ptr() != first.data_ptr()
    torch.testing.assert_close(first, held)  # untouched
    pointer = x.grad.data_ptr()
    del first, second
    x.grad = None
    flt.cross_entropy(x, t).backward()  # the previous gradient was freed: its buffer comes back
    assert x.grad.data_ptr() == pointer
    torch.testing.assert_close(2 * x.grad, held)
    view = x.grad.numpy()  # a NumPy view keeps the tensor, so the buffer, in use
    x.grad = None
    flt.cross_entropy(x, t).backward()
    assert x.grad.data_ptr() != view.ctypes.data
    torch.testing.assert_close(torch.from_numpy(view), held / 2)
    flt.empty_cache()
