"""cross_entropy's opt-in options of large-model training: z_loss (PaLM's z_loss * lse**2 with
Liger's reduction) and return_lse (each position's log-sum-exp), against a float64 reference
written out here, a PyTorch composition, and the plain loss (which the defaults keep bit for bit),
in every layout the kernels have."""

from __future__ import annotations

import numpy as np
import pytest

import fastloss as fl
import reference as ref

Z = 1e-2


def z_loss_reference(x, target, z, reduction, axis=None, **options):
    """cross_entropy + z * lse**2 per non-ignored position, reduced as Liger reduces it: the
    z-loss sum is divided by the number of non-ignored positions under mean (not by weights)."""
    ax = (1 if np.ndim(x) >= 2 else 0) if axis is None else axis % np.ndim(x)
    ce = ref.cross_entropy(x, target, reduction=reduction, axis=ax, **options)
    lse = ref.logsumexp(x, ax)
    target = np.asarray(target)
    ignore = options.get("ignore_index", -100)
    counted = np.ones(lse.shape, bool) if target.dtype.kind == "f" else target != ignore
    with np.errstate(invalid="ignore"):
        zt = np.where(counted, z * lse**2, 0.0)
    if reduction == "none":
        return ce + zt
    return ce + (zt.sum() if reduction == "sum" else zt.sum() / counted.sum())


def _logits(shape, dtype, rng):
    return (rng.standard_normal(shape) * 3).astype(dtype)


def _targets(shape, axis, rng):
    positions = shape[:axis] + shape[axis + 1 :]
    y = rng.integers(0, shape[axis], positions)
    y.flat[1 % y.size] = -100
    return y


# (shape, axis): rows in lanes (few classes), rows, the columns layout (class axis not last),
# and a row longer than one sum block (4096 classes) with the online sweep.
LAYOUTS = [((32, 10), 1), ((9, 300), 1), ((6, 5, 7), 1), ((3, 5000), 1), ((4, 37), -1)]


@pytest.mark.parametrize("shape,axis", LAYOUTS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing,weighted", [(0.0, False), (0.1, True)])
def test_z_loss_and_lse_against_the_float64_reference(
    shape, axis, reduction, smoothing, weighted, rng, isa
):
    x = _logits(shape, np.float64, rng)
    y = _targets(shape, axis % len(shape), rng)
    w = rng.uniform(0.5, 2.0, shape[axis]) if weighted else None
    options = dict(weight=w, label_smoothing=smoothing, reduction=reduction, axis=axis)
    got = fl.cross_entropy(x, y, z_loss=Z, return_lse=True, **options)
    assert type(got) is fl.LossAndLse
    want = z_loss_reference(x, y, Z, **options)
    np.testing.assert_allclose(got.loss, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.lse, ref.logsumexp(x, axis), rtol=1e-13)
    assert got.lse.shape == y.shape and got.lse.dtype == x.dtype
    # float32: within float32 roundings of the same reference
    x32 = x.astype(np.float32)
    got32 = fl.cross_entropy(x32, y, z_loss=Z, return_lse=True, **options)
    want32 = z_loss_reference(x32, y, Z, **options)
    np.testing.assert_allclose(got32.loss, want32, rtol=3e-5, atol=1e-5)
    np.testing.assert_allclose(got32.lse, ref.logsumexp(x32, axis), rtol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_z_loss_with_probability_targets_counts_every_position(reduction, rng):
    x = _logits((7, 30), np.float64, rng)
    q = rng.dirichlet(np.ones(30), 7)
    got = fl.cross_entropy(x, q, z_loss=Z, reduction=reduction, label_smoothing=0.05)
    want = z_loss_reference(x, q, Z, reduction=reduction, label_smoothing=0.05)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    xc = np.ascontiguousarray(np.moveaxis(x, 1, 0))  # the columns layout
    got_columns = fl.cross_entropy(xc, np.moveaxis(q, 1, 0), z_loss=Z, reduction=reduction,
                                   label_smoothing=0.05, axis=0)
    np.testing.assert_allclose(got_columns, want, rtol=1e-12, atol=1e-12)


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("shape,axis", LAYOUTS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_z_loss_gradient_is_autograds_of_the_torch_composition(shape, axis, reduction, dtype, rng):
    torch = _torch()
    ax = axis % len(shape)
    x = _logits(shape, dtype, rng)
    y = _targets(shape, ax, rng)
    w = rng.uniform(0.5, 2.0, shape[ax]).astype(dtype)
    go = rng.standard_normal(y.shape).astype(dtype) if reduction == "none" else 0.75
    got = fl.cross_entropy(x, y, weight=w, reduction=reduction, axis=axis, z_loss=Z,
                           return_lse=True, return_grad=True, grad_output=go)
    assert type(got) is fl.LossLseAndGrad

    # The z-loss spelled in torch ops (Liger's lse_square_scale semantics).
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.tensor(y)
    moved = tx.movedim(ax, 1) if tx.ndim > 1 else tx
    ce = torch.nn.functional.cross_entropy(moved, ty, weight=torch.tensor(w), reduction=reduction)
    lse = torch.logsumexp(tx, dim=ax)
    counted = (ty != -100).to(tx.dtype)
    zt = Z * lse**2 * counted
    z_divisor = counted.sum() if reduction == "mean" else 1
    total = ce + (zt if reduction == "none" else zt.sum() / z_divisor)
    (total * torch.tensor(go, dtype=tx.dtype)).sum().backward()
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(got.loss, total.detach().numpy(), **tol)
    np.testing.assert_allclose(got.lse, lse.detach().numpy(), **tol)
    np.testing.assert_allclose(got.grad, tx.grad.numpy(), **tol)


def test_z_loss_gradcheck_in_float64(rng):
    torch = _torch()
    x = _logits((5, 7), np.float64, rng)
    y = np.array([0, 6, -100, 3, 3])

    class ZLoss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            r = fl.cross_entropy(t.detach().numpy(), y, z_loss=0.3, label_smoothing=0.2,
                                 return_grad=True)
            ctx.save_for_backward(torch.from_numpy(r.grad))
            return torch.tensor(float(r.loss), dtype=t.dtype)

        @staticmethod
        def backward(ctx, g):
            return g * ctx.saved_tensors[0]

    assert torch.autograd.gradcheck(ZLoss.apply, (torch.tensor(x, requires_grad=True),))


@pytest.mark.parametrize("shape,axis", LAYOUTS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_the_defaults_give_the_plain_loss_bit_for_bit(shape, axis, reduction, rng, isa):
    x = _logits(shape, np.float32, rng)
    y = _targets(shape, axis % len(shape), rng)
    options = dict(reduction=reduction, axis=axis, label_smoothing=0.1)
    plain = fl.cross_entropy(x, y, return_grad=True, **options)
    explicit = fl.cross_entropy(x, y, z_loss=0, return_grad=True, **options)  # the general path
    with_lse = fl.cross_entropy(x, y, return_lse=True, return_grad=True, **options)
    for other in (explicit, with_lse):
        assert np.asarray(other.loss).tobytes() == np.asarray(plain.loss).tobytes()
        assert other.grad.tobytes() == plain.grad.tobytes()
    lse_only = fl.cross_entropy(x, y, return_lse=True, **options)
    plain_loss = fl.cross_entropy(x, y, **options)  # (the loss-only kernels: their own sums)
    assert np.asarray(lse_only.loss).tobytes() == np.asarray(plain_loss).tobytes()
    np.testing.assert_allclose(lse_only.lse, with_lse.lse, rtol=1e-6)


@pytest.mark.parametrize("shape,axis", LAYOUTS)
def test_one_and_two_threads_give_the_same_bits(shape, axis, rng, threads):
    x = _logits(shape, np.float32, rng)
    y = _targets(shape, axis % len(shape), rng)
    got = fl.cross_entropy(x, y, axis=axis, z_loss=Z, return_lse=True, return_grad=True)
    fl.set_num_threads(1)
    one = fl.cross_entropy(x, y, axis=axis, z_loss=Z, return_lse=True, return_grad=True)
    fl.set_num_threads(threads)
    assert np.asarray(got.loss).tobytes() == np.asarray(one.loss).tobytes()
    assert got.lse.tobytes() == one.lse.tobytes() and got.grad.tobytes() == one.grad.tobytes()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_inputs_compute_in_float32(dtype, rng):
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    x = _logits((12, 50), np.float32, rng).astype(dtype)
    y = _targets((12, 50), 1, rng)
    got = fl.cross_entropy(x, y, z_loss=Z, return_lse=True, return_grad=True, reduction="sum")
    want = fl.cross_entropy(x.astype(np.float32), y, z_loss=Z, return_lse=True, return_grad=True,
                            reduction="sum")
    assert got.lse.dtype == x.dtype and got.grad.dtype == x.dtype
    eps = ref.half_epsilon(x.dtype)  # each result is rounded once to the half type
    np.testing.assert_allclose(float(got.loss), float(want.loss), rtol=eps)
    np.testing.assert_allclose(got.lse.astype(np.float32), want.lse, rtol=eps)
    np.testing.assert_allclose(got.grad.astype(np.float32), want.grad, rtol=eps, atol=1e-6)


def test_lse_of_special_rows_and_every_ignored_target(isa):
    inf, nan = np.inf, np.nan
    x = np.array([[-inf, -inf, -inf], [0.0, inf, 1.0], [nan, 0.0, 1.0], [1.0, 2.0, 3.0]])
    for layout in ("rows", "columns"):
        xs = x if layout == "rows" else np.ascontiguousarray(x.T)
        axis = 1 if layout == "rows" else 0
        got = fl.cross_entropy(xs, np.full(4, -100), axis=axis, reduction="none", return_lse=True,
                               z_loss=Z)
        np.testing.assert_array_equal(got.loss, np.zeros(4))  # every target ignored: no z-loss
        np.testing.assert_array_equal(got.lse[[0, 1, 2]], [-inf, nan, nan])
        np.testing.assert_allclose(got.lse[3], ref.logsumexp(x[3]), rtol=1e-15)
    mean = fl.cross_entropy(x[3:], np.array([-100]), z_loss=Z)
    assert np.isnan(mean)  # 0/0, as cross_entropy's mean over no target
    empty = fl.cross_entropy(np.zeros((0, 3)), np.zeros(0, np.int64), z_loss=Z, return_lse=True)
    assert empty.lse.shape == (0,) and np.isnan(empty.loss)


def test_errors_name_the_option():
    x, y = np.zeros((2, 3)), np.array([0, 1])
    for bad in (-1e-4, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="z_loss must be a finite number >= 0"):
            fl.cross_entropy(x, y, z_loss=bad)
    with pytest.raises(TypeError, match="z_loss must be a real number"):
        fl.cross_entropy(x, y, z_loss="big")
    with pytest.raises(TypeError, match="return_lse must be True or False"):
        fl.cross_entropy(x, y, return_lse="yes")


def test_the_loss_class_takes_z_loss(rng):
    x = _logits((6, 9), np.float32, rng)
    y = _targets((6, 9), 1, rng)
    loss = fl.CrossEntropyLoss(label_smoothing=0.1, z_loss=Z)
    assert loss(x, y) == fl.cross_entropy(x, y, label_smoothing=0.1, z_loss=Z)
    assert repr(loss).endswith("axis=None, z_loss=0.01)")
    assert "z_loss" not in repr(fl.CrossEntropyLoss())


# linear_cross_entropy takes the same options: its values are cross_entropy's on the logits.


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("chunk_size", [None, 3, (4, 7)])  # whole-vocabulary strips, tiles
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_cross_entropy_options_are_cross_entropys(reduction, chunk_size, dtype, rng):
    x = rng.standard_normal((2, 5, 16)).astype(dtype)
    w = rng.standard_normal((40, 16)).astype(dtype)
    b = rng.standard_normal(40).astype(dtype)
    y = _targets((2, 5, 40), 2, rng)
    go = rng.standard_normal(y.shape).astype(dtype) if reduction == "none" else 0.5
    options = dict(reduction=reduction, label_smoothing=0.1, z_loss=Z, return_lse=True,
                   return_grad=True, grad_output=go)
    got = fl.linear_cross_entropy(x, w, y, linear_bias=b, chunk_size=chunk_size, **options)
    assert type(got) is fl.LinearLossLseAndGrad
    logits = x @ w.T + b
    want = fl.cross_entropy(logits, y, axis=-1, **options)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.loss, want.loss, **tol)
    np.testing.assert_allclose(got.lse, want.lse, **tol)
    np.testing.assert_allclose(got.grad_input, want.grad @ w, **tol)
    np.testing.assert_allclose(got.grad_weight, np.einsum("btv,btd->vd", want.grad, x), **tol)
    np.testing.assert_allclose(got.grad_bias, want.grad.sum((0, 1)), **tol)
    lse_only = fl.linear_cross_entropy(x, w, y, linear_bias=b, return_lse=True, z_loss=Z,
                                       reduction=reduction, label_smoothing=0.1)
    assert type(lse_only) is fl.LossAndLse
    np.testing.assert_allclose(lse_only.lse, want.lse, **tol)


def test_linear_cross_entropy_defaults_keep_its_bits(rng):
    x = rng.standard_normal((6, 8)).astype(np.float32)
    w = rng.standard_normal((30, 8)).astype(np.float32)
    y = _targets((6, 30), 1, rng)
    plain = fl.linear_cross_entropy(x, w, y, return_grad=True)
    for other in (fl.linear_cross_entropy(x, w, y, return_grad=True, z_loss=0),
                  fl.linear_cross_entropy(x, w, y, return_grad=True, return_lse=True)):
        assert np.asarray(other.loss).tobytes() == np.asarray(plain.loss).tobytes()
        assert other.grad_input.tobytes() == plain.grad_input.tobytes()
        assert other.grad_weight.tobytes() == plain.grad_weight.tobytes()
    loss = fl.LinearCrossEntropyLoss(z_loss=Z)
    assert loss(x, w, y) == fl.linear_cross_entropy(x, w, y, z_loss=Z)
    assert repr(loss).endswith("chunk_size=None, z_loss=0.01)")
    with pytest.raises(ValueError, match="z_loss must be a finite number >= 0"):
        fl.linear_cross_entropy(x, w, y, z_loss=-1.0)
    with pytest.raises(TypeError, match="return_lse must be True or False"):
        fl.linear_cross_entropy(x, w, y, return_lse=None)


# softcap: the loss of softcap * tanh(x / softcap), fused.

CAP = 15.0


def _capped(x, cap=CAP):
    return cap * np.tanh(np.asarray(x, np.float64) / cap)


@pytest.mark.parametrize("shape,axis", LAYOUTS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_softcap_against_the_float64_reference(shape, axis, reduction, rng, isa):
    x = _logits(shape, np.float64, rng) * 8  # well into the tanh's saturation
    y = _targets(shape, axis % len(shape), rng)
    options = dict(reduction=reduction, axis=axis, label_smoothing=0.1)
    got = fl.cross_entropy(x, y, softcap=CAP, return_lse=True, **options)
    want = ref.cross_entropy(_capped(x), y, **options)
    np.testing.assert_allclose(got.loss, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.lse, ref.logsumexp(_capped(x), axis), rtol=1e-13)
    x32 = x.astype(np.float32)
    got32 = fl.cross_entropy(x32, y, softcap=CAP, **options)
    np.testing.assert_allclose(got32, ref.cross_entropy(_capped(x32), y, **options),
                               rtol=3e-5, atol=1e-5)


@pytest.mark.parametrize("shape,axis", LAYOUTS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("targets", ["index", "probabilities"])
def test_softcap_gradient_is_autograds_of_the_torch_composition(
    shape, axis, reduction, dtype, targets, rng
):
    torch = _torch()
    ax = axis % len(shape)
    x = _logits(shape, dtype, rng) * 8
    if targets == "index":
        y = _targets(shape, ax, rng)
        positions = y.shape
    else:
        y = rng.dirichlet(np.ones(shape[ax]), x.size // shape[ax]).astype(dtype)
        y = np.moveaxis(y.reshape(*np.delete(shape, ax), shape[ax]), -1, ax)
        positions = tuple(np.delete(shape, ax))
    go = rng.standard_normal(positions).astype(dtype) if reduction == "none" else 0.75
    got = fl.cross_entropy(x, y, reduction=reduction, axis=axis, softcap=CAP, z_loss=Z,
                           return_grad=True, grad_output=go)

    tx = torch.tensor(x, requires_grad=True)
    capped = CAP * torch.tanh(tx / CAP)  # Gemma 2's soft-capping, spelled in torch ops
    moved = capped.movedim(ax, 1) if capped.ndim > 1 else capped
    ty = torch.tensor(y)
    ce = torch.nn.functional.cross_entropy(
        moved, ty if targets == "index" else ty.movedim(ax, 1), reduction=reduction
    )
    lse = torch.logsumexp(capped, dim=ax)
    counted = (ty != -100).to(tx.dtype) if targets == "index" else torch.ones_like(lse)
    zt = Z * lse**2 * counted
    z_divisor = counted.sum() if reduction == "mean" else 1
    total = ce + (zt if reduction == "none" else zt.sum() / z_divisor)
    (total * torch.tensor(go, dtype=tx.dtype)).sum().backward()
    tol = dict(rtol=3e-5, atol=3e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(got.loss, total.detach().numpy(), **tol)
    np.testing.assert_allclose(got.grad, tx.grad.numpy(), **tol)


def test_softcap_gradcheck_in_float64(rng):
    torch = _torch()
    y = np.array([0, 6, -100, 3, 3])

    class Capped(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            r = fl.cross_entropy(t.detach().numpy(), y, softcap=2.0, z_loss=0.1,
                                 label_smoothing=0.2, return_grad=True)
            ctx.save_for_backward(torch.from_numpy(r.grad))
            return torch.tensor(float(r.loss), dtype=t.dtype)

        @staticmethod
        def backward(ctx, g):
            return g * ctx.saved_tensors[0]

    x = torch.tensor(_logits((5, 7), np.float64, rng), requires_grad=True)
    assert torch.autograd.gradcheck(Capped.apply, (x,))


def test_softcap_is_fused_over_strided_and_aliased_operands(rng, threads):
    x = _logits((40, 30), np.float32, rng) * 8
    y = _targets((40, 30), 1, rng)
    want = fl.cross_entropy(x, y, softcap=CAP, return_grad=True)
    strided = np.asfortranarray(x)  # class stride 40: a gathered row
    got = fl.cross_entropy(strided, y, softcap=CAP, return_grad=True)
    assert np.asarray(got.loss).tobytes() == np.asarray(want.loss).tobytes()
    assert got.grad.tobytes() == want.grad.tobytes()
    in_place = x.copy()
    got = fl.cross_entropy(in_place, y, softcap=CAP, return_grad=True, grad_out=in_place)
    assert got.grad is in_place and in_place.tobytes() == want.grad.tobytes()
    fl.set_num_threads(1)
    one = fl.cross_entropy(x, y, softcap=CAP, return_grad=True)
    assert one.grad.tobytes() == want.grad.tobytes()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_softcap_of_half_precision_computes_in_float32(dtype, rng):
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    x = (_logits((12, 50), np.float32, rng) * 8).astype(dtype)
    y = _targets((12, 50), 1, rng)
    got = fl.cross_entropy(x, y, softcap=CAP, return_grad=True, reduction="sum")
    want = fl.cross_entropy(x.astype(np.float32), y, softcap=CAP, return_grad=True,
                            reduction="sum")
    eps = ref.half_epsilon(x.dtype)
    np.testing.assert_allclose(float(got.loss), float(want.loss), rtol=eps)
    np.testing.assert_allclose(got.grad.astype(np.float32), want.grad, rtol=eps, atol=1e-6)


def test_softcap_of_infinite_and_nan_logits():
    inf = np.inf
    x = np.array([[-inf, 0.0, 1.0], [inf, 0.0, 1.0], [np.nan, 0.0, 1.0]])
    got = fl.cross_entropy(x, np.array([1, 1, 1]), softcap=CAP, reduction="none",
                           return_grad=True)
    want = ref.cross_entropy(_capped(x), np.array([1, 1, 1]), reduction="none")
    np.testing.assert_allclose(got.loss[:2], want[:2], rtol=1e-14)  # +-inf caps to +-CAP
    assert np.isnan(got.loss[2]) and np.isnan(got.grad[2]).all()
    assert np.isfinite(got.grad[:2]).all() and got.grad[0, 0] == 0.0  # tanh' = 0 at -inf


def test_softcap_errors():
    x, y = np.zeros((2, 3)), np.array([0, 1])
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="softcap must be None or a finite number > 0"):
            fl.cross_entropy(x, y, softcap=bad)
    with pytest.raises(TypeError, match="softcap must be a real number"):
        fl.cross_entropy(x, y, softcap="high")


# linear_cross_entropy's softcap: each tile of logits capped in place as BLAS writes it.


def _linear_problem(rng, dtype, n=(3, 5), d=16, v=40, scale=2.0):
    x = (rng.standard_normal((*n, d)) * scale).astype(dtype)  # logits well into saturation
    w = rng.standard_normal((v, d)).astype(dtype)
    b = rng.standard_normal(v).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("chunk_size", [None, 4, (4, 7), (1, 40)])  # strips, tiles, one row
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("targets", ["index", "probabilities"])
def test_linear_softcap_is_autograds_of_the_torch_composition(
    chunk_size, reduction, dtype, targets, rng
):
    torch = _torch()
    x, w, b = _linear_problem(rng, dtype)
    cw = rng.uniform(0.5, 2.0, 40).astype(dtype)
    if targets == "index":
        y = _targets((3, 5, 40), 2, rng)
    else:
        y = rng.dirichlet(np.ones(40), (3, 5)).astype(dtype)
    go = rng.standard_normal((3, 5)).astype(dtype) if reduction == "none" else 0.75
    got = fl.linear_cross_entropy(
        x, w, y, linear_bias=b, weight=cw, reduction=reduction, label_smoothing=0.1,
        softcap=CAP / 3, z_loss=Z, chunk_size=chunk_size, return_lse=True, return_grad=True,
        grad_output=go,
    )

    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    logits = torch.nn.functional.linear(tx, tw, tb)
    capped = CAP / 3 * torch.tanh(logits / (CAP / 3))
    ty = torch.tensor(y)
    ce = torch.nn.functional.cross_entropy(
        capped.movedim(-1, 1), ty if targets == "index" else ty.movedim(-1, 1),
        weight=torch.tensor(cw), reduction=reduction, label_smoothing=0.1,
    )
    lse = torch.logsumexp(capped, dim=-1)
    counted = (ty != -100).to(tx.dtype) if targets == "index" else torch.ones_like(lse)
    zt = Z * lse**2 * counted
    total = ce + (zt if reduction == "none" else zt.sum() / counted.sum()
                  if reduction == "mean" else zt.sum())
    (total * torch.tensor(go, dtype=tx.dtype)).sum().backward()
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(got.loss, total.detach().numpy(), **tol)
    np.testing.assert_allclose(got.lse, lse.detach().numpy(), **tol)
    for mine, theirs in zip(got[2:], (tx, tw, tb)):
        scale = np.abs(theirs.grad.numpy()).max()
        np.testing.assert_allclose(mine, theirs.grad.numpy(), rtol=tol["rtol"],
                                   atol=tol["rtol"] * scale)


def test_linear_softcap_gradcheck_in_float64(rng):
    torch = _torch()
    x, w, b = _linear_problem(rng, np.float64, n=(4,), d=3, v=6, scale=3.0)
    y = np.array([0, 5, -100, 2])

    class Linear(torch.autograd.Function):
        @staticmethod
        def forward(ctx, tx, tw, tb):
            r = fl.linear_cross_entropy(tx.detach().numpy(), tw.detach().numpy(), y,
                                        linear_bias=tb.detach().numpy(), softcap=1.5, z_loss=0.1,
                                        label_smoothing=0.2, chunk_size=(3, 4), return_grad=True)
            ctx.save_for_backward(*(torch.from_numpy(g) for g in r[1:]))
            return torch.tensor(float(r.loss), dtype=tx.dtype)

        @staticmethod
        def backward(ctx, g):
            return tuple(g * saved for saved in ctx.saved_tensors)

    inputs = tuple(torch.tensor(a, requires_grad=True) for a in (x, w, b))
    assert torch.autograd.gradcheck(Linear.apply, inputs)


def test_linear_softcap_equals_cross_entropys_on_the_logits(rng, isa, threads):
    x, w, b = _linear_problem(rng, np.float64, v=300)
    y = _targets((3, 5, 300), 2, rng)
    options = dict(label_smoothing=0.1, softcap=CAP / 3, return_lse=True, return_grad=True)
    got = fl.linear_cross_entropy(x, w, y, linear_bias=b, **options)
    want = fl.cross_entropy(x @ w.T + b, y, axis=-1, **options)
    np.testing.assert_allclose(got.loss, want.loss, rtol=1e-13)
    np.testing.assert_allclose(got.lse, want.lse, rtol=1e-13)
    np.testing.assert_allclose(got.grad_weight, np.einsum("btv,btd->vd", want.grad, x),
                               rtol=1e-10, atol=1e-13)
    tiled = fl.linear_cross_entropy(x.astype(np.float32), w.astype(np.float32), y,
                                    linear_bias=b.astype(np.float32), chunk_size=(2, 64), **options)
    fl.set_num_threads(1)
    one = fl.linear_cross_entropy(x.astype(np.float32), w.astype(np.float32), y,
                                  linear_bias=b.astype(np.float32), chunk_size=(2, 64), **options)
    for a, c in zip(tiled, one):  # the tile kernels' bits do not depend on the thread count
        assert np.asarray(a).tobytes() == np.asarray(c).tobytes()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_linear_softcap_of_half_precision_computes_in_float32(dtype, rng):
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    x, w, b = (a.astype(dtype) for a in _linear_problem(rng, np.float32))
    y = _targets((3, 5, 40), 2, rng)
    options = dict(linear_bias=b, softcap=CAP / 3, reduction="sum", return_grad=True)
    got = fl.linear_cross_entropy(x, w, y, **options)
    want = fl.linear_cross_entropy(x.astype(np.float32), w.astype(np.float32), y,
                                   **{**options, "linear_bias": b.astype(np.float32)})
    eps = ref.half_epsilon(x.dtype)
    np.testing.assert_allclose(float(got.loss), float(want.loss), rtol=eps)
    for mine, wide in zip(got[1:], want[1:]):
        assert mine.dtype == x.dtype
        scale = np.abs(wide).max()
        np.testing.assert_allclose(mine.astype(np.float32), wide, rtol=4 * eps,
                                   atol=4 * eps * scale)


def test_linear_softcap_of_huge_logits_saturates():
    x = np.array([[1e30, -1e30], [3.0, 1.0]])
    w = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # logits (1e30, -1e30, 0) and (3, 1, 4)
    y = np.array([1, 2])
    got = fl.linear_cross_entropy(x, w, y, softcap=2.0, reduction="none", return_grad=True)
    want = ref.cross_entropy(_capped(x @ w.T, 2.0), y, reduction="none")
    np.testing.assert_allclose(got.loss, want, rtol=1e-14)
    # d loss / d logit = (softmax - onehot) (1 - tanh^2): 0 where |logit| = 1e30 saturates
    t = np.tanh(x @ w.T / 2.0)
    p = fl.softmax(2.0 * t)
    g = (p - np.eye(3)[y]) * (1 - t * t)
    assert g[0, 0] == 0.0 and g[0, 1] == 0.0
    np.testing.assert_allclose(got.grad_input, g @ w, rtol=1e-14)
    np.testing.assert_allclose(got.grad_weight, g.T @ x, rtol=1e-14)  # 0 * 1e30 terms are 0


def test_linear_softcap_none_keeps_the_bits_and_errors(rng):
    x, w, b = _linear_problem(rng, np.float32)
    y = _targets((3, 5, 40), 2, rng)
    plain = fl.linear_cross_entropy(x, w, y, linear_bias=b, return_grad=True)
    other = fl.linear_cross_entropy(x, w, y, linear_bias=b, return_grad=True, softcap=None)
    for a, c in zip(plain, other):
        assert np.asarray(a).tobytes() == np.asarray(c).tobytes()
    loss = fl.LinearCrossEntropyLoss(softcap=CAP, z_loss=Z)
    assert loss(x, w, y) == fl.linear_cross_entropy(x, w, y, softcap=CAP, z_loss=Z)
    assert repr(loss).endswith("chunk_size=None, z_loss=0.01, softcap=15.0)")
    ce = fl.CrossEntropyLoss(axis=-1, softcap=CAP)
    logits = x @ w.T
    assert ce(logits, y) == fl.cross_entropy(logits, y, axis=-1, softcap=CAP)
    assert ce(logits, y) != fl.cross_entropy(logits, y, axis=-1)
    assert repr(ce).endswith("axis=-1, softcap=15.0)")
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="softcap must be None or a finite number > 0"):
            fl.linear_cross_entropy(x, w, y, softcap=bad)
    with pytest.raises(TypeError, match="softcap must be a real number"):
        fl.linear_cross_entropy(x, w, y, softcap="high")
