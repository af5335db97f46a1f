"""distillation_loss's softcap: the student's logits become s' = c * tanh(s / c) before both terms
(the teacher's are not capped), fused a row at a time with the gradient through the tanh. Against
a float64 NumPy reference and the PyTorch composition written out here (autograd for gradients),
in every divergence, target kind, layout, instruction set and thread count; softcap=None keeps
the plain loss's bits."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import fastloss as fl
import reference as ref
from test_distillation_z_loss import Z, z_loss_term

CAP = 15.0
ALPHA = 0.4
# (divergence, beta): the forward and reverse KL and an asymmetric JSD.
DIVERGENCES = [("kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.3)]
# (shape, axis): rows of many classes, few classes (rows in lanes without softcap), a class axis
# of stride 7 (the columns layout without softcap), and (B, T, V) logits with axis=-1.
LAYOUTS = [((9, 300), 1), ((32, 10), 1), ((6, 5, 7), 1), ((3, 4, 50), -1)]
LAYOUT_IDS = ["rows", "few-classes", "class-stride-7", "btv"]


def capped(s, cap=CAP):
    return cap * np.tanh(np.asarray(s, np.float64) / cap)


def case(shape, axis, rng, dtype=np.float64, probabilities=False):
    """Student logits well into the tanh's saturation, teacher logits beyond the cap (so that a
    capped teacher would change the loss), and targets with one ignored position."""
    ax = axis % len(shape)
    s = (rng.standard_normal(shape) * 12).astype(dtype)
    t = (rng.standard_normal(shape) * 20).astype(dtype)
    positions = shape[:ax] + shape[ax + 1 :]
    if probabilities:
        q = rng.dirichlet(np.ones(shape[ax]), int(np.prod(positions)))
        y = np.moveaxis(q.reshape(*positions, shape[ax]), -1, ax).astype(dtype)
    else:
        y = rng.integers(0, shape[ax], positions)
        y.flat[1 % y.size] = -100
    return s, t, y, ax


def torch_loss_and_grad(
    s,
    t,
    y,
    ax,
    *,
    temperature,
    divergence,
    beta,
    reduction,
    go,
    weight=None,
    label_smoothing=0.0,
    z_loss=0.0,
    alpha=ALPHA,
):
    """The PyTorch composition with Gemma 2's soft-capping of the student applied first, and its
    autograd with respect to the raw student logits."""
    torch = pytest.importorskip("torch")
    from test_distillation_divergence import torch_divergence

    F = torch.nn.functional
    ts = torch.tensor(s, requires_grad=True)
    tt = torch.tensor(t)
    ty = torch.tensor(y)
    sc = CAP * torch.tanh(ts / CAP)  # s' = c tanh(s / c)
    probabilities = y.dtype.kind == "f"
    ce = F.cross_entropy(
        sc.movedim(ax, 1),
        ty.movedim(ax, 1) if probabilities else ty,
        reduction=reduction,
        weight=None if weight is None else torch.tensor(weight),
        label_smoothing=label_smoothing,
    )
    lse = torch.logsumexp(sc, dim=ax)
    counted = torch.ones_like(lse) if probabilities else (ty != -100).to(ts.dtype)
    zt = z_loss * lse**2 * counted
    hard = ce + (
        zt if reduction == "none" else zt.sum() / (counted.sum() if reduction == "mean" else 1)
    )
    soft = torch_divergence(sc, tt, temperature, divergence, beta, ax).sum(ax)
    if reduction != "none":
        soft = soft.sum() / (s.shape[0] if reduction == "mean" else 1)
    total = alpha * hard + (1 - alpha) * temperature**2 * soft
    (total * torch.tensor(go, dtype=ts.dtype)).sum().backward()
    return total.detach().numpy(), ts.grad.numpy()


@pytest.mark.parametrize("shape,axis", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing,weighted", [(0.0, False), (0.1, True)])
def test_against_the_float64_reference(shape, axis, reduction, smoothing, weighted, rng, isa):
    """KL with the z-loss: NumPy's cross_entropy and KL of the capped logits."""
    s, t, y, ax = case(shape, axis, rng)
    w = rng.uniform(0.5, 2.0, shape[ax]) if weighted else None
    options = dict(
        temperature=2.0,
        alpha=ALPHA,
        reduction=reduction,
        weight=w,
        label_smoothing=smoothing,
        axis=axis,
    )
    want = ref.distillation_loss(capped(s), t, y, **options)
    want = want + ALPHA * z_loss_term(capped(s), y, reduction, ax)
    got = fl.distillation_loss(s, t, y, softcap=CAP, z_loss=Z, **options)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    s32, t32 = s.astype(np.float32), t.astype(np.float32)
    got32 = fl.distillation_loss(s32, t32, y, softcap=CAP, z_loss=Z, **options)
    want32 = ref.distillation_loss(capped(s32), t32, y, **options)
    want32 = want32 + ALPHA * z_loss_term(capped(s32), y, reduction, ax)
    np.testing.assert_allclose(got32, want32, rtol=3e-5, atol=1e-5)


@pytest.mark.parametrize(
    "shape,axis", [LAYOUTS[0], LAYOUTS[2], LAYOUTS[3]], ids=["rows", "class-stride-7", "btv"]
)
@pytest.mark.parametrize("divergence,beta", DIVERGENCES)
@pytest.mark.parametrize("probabilities", [False, True], ids=["index", "probabilities"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradient_is_autograds_of_the_torch_composition(
    shape, axis, divergence, beta, probabilities, dtype, rng
):
    """Every divergence and target kind with weights, label smoothing, ignore_index (index
    targets), the z-loss, each reduction and grad_output."""
    s, t, y, ax = case(shape, axis, rng, dtype, probabilities)
    w = rng.uniform(0.5, 2.0, shape[ax]).astype(dtype)
    tol = dict(rtol=3e-5, atol=3e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
    for temperature, reduction in [(1.0, "mean"), (2.0, "sum"), (3.5, "none")]:
        go = rng.standard_normal(tuple(np.delete(shape, ax))) if reduction == "none" else 0.75
        go = np.asarray(go, dtype)
        options = dict(
            temperature=temperature,
            divergence=divergence,
            beta=beta,
            reduction=reduction,
            weight=w,
            label_smoothing=0.1,
            z_loss=Z,
        )
        got = fl.distillation_loss(
            s,
            t,
            y,
            alpha=ALPHA,
            axis=axis,
            softcap=CAP,
            return_grad=True,
            grad_output=go,
            **options,
        )
        want_loss, want_grad = torch_loss_and_grad(s, t, y, ax, go=go, **options)
        assert got.grad.dtype == dtype
        np.testing.assert_allclose(got.loss, want_loss, **tol, err_msg=reduction)
        np.testing.assert_allclose(got.grad, want_grad, **tol, err_msg=reduction)
        alone = fl.distillation_loss(s, t, y, alpha=ALPHA, axis=axis, softcap=CAP, **options)
        np.testing.assert_array_equal(alone, got.loss)  # the loss alone is the same loss


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_every_target_ignored(reduction, rng):
    """No hard term anywhere: the mean is NaN (CE's 0/0) with the soft term's gradient alone;
    'none' has the soft terms alone."""
    s, t, _, _ = case((5, 9), 1, rng)
    y = np.full(5, -100)
    go = np.linspace(-1, 1, 5) if reduction == "none" else 1.0
    kw = dict(temperature=2.0, divergence="kl", beta=0.5)
    with np.errstate(invalid="ignore"):
        got = fl.distillation_loss(
            s,
            t,
            y,
            alpha=ALPHA,
            softcap=CAP,
            z_loss=Z,
            reduction=reduction,
            return_grad=True,
            grad_output=go,
            **kw,
        )
    if reduction == "mean":
        assert np.isnan(got.loss)
        # T^2 d KL_sum / ds (alpha = 0: no hard term), then the mean's (1 - alpha) / N
        _, soft_grad = torch_loss_and_grad(s, t, y, 1, reduction="sum", go=1.0, alpha=0.0, **kw)
        want_grad = (1 - ALPHA) * soft_grad / s.shape[0]
    else:
        want_loss, want_grad = torch_loss_and_grad(
            s, t, y, 1, reduction="none", go=go, z_loss=Z, **kw
        )
        np.testing.assert_allclose(got.loss, want_loss, rtol=1e-12)
    np.testing.assert_allclose(got.grad, want_grad, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("shape,axis", LAYOUTS, ids=LAYOUT_IDS)
def test_softcap_none_keeps_the_plain_bits(shape, axis, rng, isa):
    """softcap=None with z_loss=0 as an int (the general path) gives the default call's bits."""
    s, t, y, _ = case(shape, axis, rng, np.float32)
    for reduction in ("mean", "none"):
        plain = fl.distillation_loss(s, t, y, reduction=reduction, axis=axis, return_grad=True)
        none = fl.distillation_loss(
            s, t, y, reduction=reduction, axis=axis, return_grad=True, softcap=None, z_loss=0
        )
        assert np.asarray(plain.loss).tobytes() == np.asarray(none.loss).tobytes()
        assert plain.grad.tobytes() == none.grad.tobytes()


@pytest.mark.parametrize("divergence,beta", DIVERGENCES)
def test_huge_infinite_and_nan_logits(divergence, beta, isa):
    """tanh saturates to +-c at 1e30 and +-inf, with tanh' = 0 there, as the torch composition
    gives; a NaN student logit makes its position's loss and gradient NaN. A -inf teacher logit
    stays -inf (the teacher is not capped)."""
    rng = np.random.default_rng(3)
    s, t, y, _ = case((6, 8), 1, rng)
    s[0, :3] = [1e30, -1e30, np.inf]
    s[1, 2] = -np.inf
    s[2, :] = np.inf  # every logit capped to c: a uniform softmax
    s[3, 4] = np.nan
    t[4, 5] = -np.inf
    t[5, 1] = 1e30  # not capped: the teacher puts all its mass there
    kw = dict(temperature=2.0, divergence=divergence, beta=beta, reduction="none")
    with np.errstate(all="ignore"):
        got = fl.distillation_loss(s, t, y, alpha=ALPHA, softcap=CAP, return_grad=True, **kw)
        want_loss, want_grad = torch_loss_and_grad(s, t, y, 1, go=np.ones(6), **kw)
    np.testing.assert_allclose(got.loss, want_loss, rtol=1e-12, atol=1e-12)  # inf and NaN too
    assert np.isnan(got.loss[3]) and np.isnan(got.grad[3]).all()
    finite = np.isfinite(want_grad)
    np.testing.assert_allclose(got.grad[finite], want_grad[finite], rtol=1e-11, atol=1e-13)
    assert np.isfinite(got.grad[np.isfinite(got.loss)]).all()
    assert got.grad[0, 0] == got.grad[0, 1] == got.grad[0, 2] == got.grad[1, 2] == 0.0


def test_strided_read_only_and_aliased_operands_give_the_same_bits(rng, threads):
    """A class axis of stride != 1 (Fortran order, a sliced teacher, strided probabilities),
    read-only inputs and grad_out buffers (the student itself, or a strided one) change no bit,
    and no input is modified."""
    s, t, q, _ = case((40, 30), 1, rng, np.float32, probabilities=True)
    options = dict(
        softcap=CAP, divergence="jsd", beta=0.3, label_smoothing=0.1, z_loss=Z, return_grad=True
    )
    want = fl.distillation_loss(s, t, q, **options)
    wide_t = np.zeros((40, 60), np.float32)
    wide_t[:, ::2] = t
    strided = [np.asfortranarray(s), wide_t[:, ::2], np.asfortranarray(q)]
    for a in strided:
        a.setflags(write=False)
    copies = [a.copy() for a in strided]
    got = fl.distillation_loss(*strided, **options)
    assert np.asarray(got.loss).tobytes() == np.asarray(want.loss).tobytes()
    assert got.grad.tobytes() == want.grad.tobytes()
    for a, c in zip(strided, copies):
        assert a.tobytes() == c.tobytes()
    buffer = np.asfortranarray(np.full_like(s, np.nan))
    got = fl.distillation_loss(s, t, q, grad_out=buffer, **options)
    assert got.grad is buffer and buffer.tobytes() == np.asfortranarray(want.grad).tobytes()
    in_place = s.copy()
    got = fl.distillation_loss(in_place, t, q, grad_out=in_place, **options)
    assert got.grad is in_place and in_place.tobytes() == want.grad.tobytes()


@pytest.mark.parametrize("shape,axis", [((6, 5, 7), 1), ((3, 4, 50), -1)], ids=LAYOUT_IDS[2:])
def test_any_class_axis_gives_the_bits_of_contiguous_rows(shape, axis, rng):
    """Each position is capped and computed alone: a class axis of stride 7 (axis=1) and (B, T, V)
    rows give the bits of the same rows laid out contiguously."""
    s, t, y, ax = case(shape, axis, rng, np.float32)
    kw = dict(
        softcap=CAP,
        z_loss=Z,
        reduction="none",
        return_grad=True,
        grad_output=np.linspace(0.5, 1.5, y.size).reshape(y.shape).astype(np.float32),
    )
    got = fl.distillation_loss(s, t, y, axis=axis, **kw)
    rows = fl.distillation_loss(
        np.ascontiguousarray(np.moveaxis(s, ax, -1)),
        np.ascontiguousarray(np.moveaxis(t, ax, -1)),
        y,
        axis=-1,
        **kw,
    )
    assert got.loss.tobytes() == rows.loss.tobytes()
    assert np.ascontiguousarray(np.moveaxis(got.grad, ax, -1)).tobytes() == rows.grad.tobytes()


@pytest.mark.parametrize("shape,axis", [((300, 1000), 1), ((8, 64, 300), 1)], ids=["rows", "cols"])
def test_one_and_two_threads_give_the_same_bits(shape, axis, rng, isa):
    s, t, y, _ = case(shape, axis, rng, np.float32)
    results = []
    before = fl.get_num_threads()
    try:
        for n in (1, 2):
            fl.set_num_threads(n)
            results.append(
                fl.distillation_loss(
                    s, t, y, axis=axis, softcap=CAP, z_loss=Z, divergence="jsd", return_grad=True
                )
            )
    finally:
        fl.set_num_threads(before)
    assert np.asarray(results[0].loss).tobytes() == np.asarray(results[1].loss).tobytes()
    assert results[0].grad.tobytes() == results[1].grad.tobytes()


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("divergence,beta", DIVERGENCES)
def test_half_precision_computes_in_float32(dtype, divergence, beta, rng):
    """The float32 computation of the half-precision values, rounded once; within the half type's
    rounding of the float64 reference."""
    s, t, y, _ = case((9, 40), 1, rng, np.float32)
    s, t = s.astype(dtype), t.astype(dtype)
    kw = dict(softcap=CAP, z_loss=Z, divergence=divergence, beta=beta, return_grad=True)
    got = fl.distillation_loss(s, t, y, **kw)
    wide = fl.distillation_loss(s.astype(np.float32), t.astype(np.float32), y, **kw)
    assert got.loss.dtype == dtype and got.grad.dtype == dtype
    assert got.loss == wide.loss.astype(dtype)
    np.testing.assert_array_equal(got.grad, wide.grad.astype(dtype))
    want, _ = torch_loss_and_grad(
        s.astype(np.float64),
        t.astype(np.float64),
        y,
        1,
        temperature=2.0,
        divergence=divergence,
        beta=beta,
        reduction="mean",
        go=1.0,
        z_loss=Z,
        alpha=0.5,
    )
    np.testing.assert_allclose(np.float64(got.loss), want, rtol=2 * ref.half_epsilon(dtype))


def test_empty_and_one_dimensional_inputs(rng):
    """No position or no class: softcap changes nothing there. A (C,) input is one position."""
    for s, y in [(np.zeros((0, 5)), np.zeros(0, np.int64)), (np.zeros((3, 0)), np.full(3, -100))]:
        for reduction in ("mean", "sum", "none"):
            with np.errstate(invalid="ignore"):
                got = fl.distillation_loss(
                    s, s, y, softcap=CAP, reduction=reduction, return_grad=True
                )
                plain = fl.distillation_loss(s, s, y, reduction=reduction, return_grad=True)
            np.testing.assert_array_equal(got.loss, plain.loss)
            assert got.grad.shape == s.shape
    s, t = rng.standard_normal(7) * 30, rng.standard_normal(7) * 30
    got = fl.distillation_loss(s, t, np.array(2), softcap=CAP, reduction="sum")
    want = ref.distillation_loss(capped(s), t, np.array(2), reduction="sum")
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_errors_name_softcap(rng):
    s, t, y, _ = case((4, 6), 1, rng)
    for bad in (0.0, -1.0, float("nan"), float("inf"), -float("inf")):
        message = rf"softcap must be None or a finite number > 0, got {bad}"
        with pytest.raises(ValueError, match=message):
            fl.distillation_loss(s, t, y, softcap=bad)
    with pytest.raises(TypeError, match="softcap must be a real number, got str"):
        fl.distillation_loss(s, t, y, softcap="high")
    with pytest.raises(ValueError, match="softcap"):
        fl.DistillationLoss(softcap=0)(s, t, y)


def test_the_loss_class_takes_softcap(rng):
    s, t, y, _ = case((8, 12), 1, rng)
    loss = fl.DistillationLoss(temperature=3.0, softcap=CAP)
    assert "softcap=15.0" in repr(loss) and "softcap" not in repr(fl.DistillationLoss())
    assert loss(s, t, y) == fl.distillation_loss(s, t, y, temperature=3.0, softcap=CAP)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_the_torch_op_and_module_take_softcap(reduction, rng):
    torch = pytest.importorskip("torch")
    import fastloss.torch as flt

    s, t, y, _ = case((6, 11), 1, rng)
    go = np.linspace(0.5, 1.5, 6) if reduction == "none" else 1.0
    kw = dict(temperature=2.0, alpha=ALPHA, divergence="jsd", beta=0.3, reduction=reduction)
    want = fl.distillation_loss(s, t, y, softcap=CAP, return_grad=True, grad_output=go, **kw)
    x = torch.tensor(s, requires_grad=True)
    loss = flt.distillation_loss(x, torch.tensor(t), torch.tensor(y), softcap=CAP, **kw)
    (loss * torch.tensor(go)).sum().backward()
    np.testing.assert_allclose(loss.detach().numpy(), want.loss, rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), want.grad, rtol=1e-12, atol=1e-15)
    module = flt.nn.DistillationLoss(softcap=CAP, **kw)
    same = module(torch.tensor(s), torch.tensor(t), torch.tensor(y))
    np.testing.assert_array_equal(same.numpy(), loss.detach().numpy())
    with pytest.raises(ValueError, match="softcap must be None or a finite number > 0"):
        flt.distillation_loss(x, torch.tensor(t), torch.tensor(y), softcap=-1.0)
    with pytest.raises(TypeError, match="softcap must be a real number"):
        flt.distillation_loss(x, torch.tensor(t), torch.tensor(y), softcap="high")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_dask_row_chunks_match_the_in_memory_call(reduction, rng):
    da = pytest.importorskip("dask.array")
    import fastloss.dask as fld

    s, t, y, _ = case((12, 20), 1, rng)
    go = np.linspace(-1, 1, 12) if reduction == "none" else 0.5
    kw = dict(
        softcap=CAP,
        z_loss=Z,
        alpha=ALPHA,
        reduction=reduction,
        label_smoothing=0.1,
        return_grad=True,
        grad_output=go,
    )
    want = fl.distillation_loss(s, t, y, **kw)
    got = fld.distillation_loss(
        da.from_array(s, chunks=(5, 20)),
        da.from_array(t, chunks=(5, 20)),
        da.from_array(y, chunks=5),
        **kw,
    )
    np.testing.assert_allclose(got.loss.compute(), want.loss, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(got.grad.compute(), want.grad, rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match=r"softcap needs the class axis 1 .* rechunk"):
        fld.distillation_loss(
            da.from_array(s, chunks=(12, 7)), da.from_array(t, chunks=(12, 7)), y, softcap=CAP
        )
