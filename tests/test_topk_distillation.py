"""distillation_loss with a top-k teacher, teacher_topk=(indices, logprobs): against the PyTorch
composition written out here (log_softmax of the student, gather, the divergence over the k
classes and the bucket outside them; autograd for the gradient), in every divergence, residual
rule, reduction, target kind and layout, with the hard term's options; k = C against the dense
loss; half precision; every instruction set and thread count; the errors."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import fastloss as fl

torch = pytest.importorskip("torch")
F = torch.nn.functional

T = 2.0
ALPHA = 0.4
# (divergence, beta, topk_residual): reverse KL only with the tail (renormalize is infinite).
SOFT_TERMS = [
    ("kl", 0.5, "renormalize"),
    ("kl", 0.5, "tail"),
    ("reverse_kl", 0.5, "tail"),
    ("jsd", 0.3, "renormalize"),
    ("jsd", 0.3, "tail"),
]
SOFT_IDS = ["kl-renormalize", "kl-tail", "reverse-tail", "jsd-renormalize", "jsd-tail"]


def teacher_topk(shape, axis, k, rng, temperature=T, dtype=np.float64):
    """A teacher's k most likely classes per position, in random order, and its log-probabilities
    there at the temperature (the residual mass 1 - sum exp of them is what the tail keeps)."""
    ax = axis % len(shape)
    t = np.moveaxis(rng.standard_normal(shape) * 4, ax, -1)
    top = np.argsort(-t, axis=-1)[..., :k]
    top = np.take_along_axis(top, rng.permuted(np.indices(top.shape)[-1], axis=-1), axis=-1)
    lp = torch.log_softmax(torch.tensor(t) / temperature, -1).gather(-1, torch.tensor(top)).numpy()
    return np.moveaxis(top, -1, ax), np.moveaxis(lp, -1, ax).astype(dtype)


def xlogy_ratio(a, log_a, log_b):
    return torch.where(a > 0, a * (log_a - log_b), torch.zeros_like(a))


def torch_topk(s, indices, logprobs, y, ax, *, divergence, beta, residual, reduction,
               temperature=T, alpha=ALPHA, weight=None, ignore_index=-100, label_smoothing=0.0,
               z_loss=0.0, softcap=None, go=None):
    """The loss and its gradient by autograd, the formula spelled in torch ops (float64)."""
    st = torch.tensor(np.asarray(s, np.float64), requires_grad=True)
    x = softcap * torch.tanh(st / softcap) if softcap else st
    xl = x.movedim(ax, -1)
    idx = torch.tensor(np.moveaxis(indices, ax, -1))
    lq = F.log_softmax(xl / temperature, -1).gather(-1, idx)
    lp = torch.tensor(np.moveaxis(np.asarray(logprobs, np.float64), ax, -1))
    outside = xl.shape[-1] > idx.shape[-1]
    if residual == "renormalize":
        lp = lp - torch.logsumexp(lp, -1, keepdim=True)
        po = torch.zeros(lp.shape[:-1], dtype=torch.float64)
    else:
        po = (1 - lp.exp().sum(-1)).clamp_min(0) if outside else torch.zeros(lp.shape[:-1])
    q, p = lq.exp(), lp.exp()
    qo = (1 - q.sum(-1)).clamp_min(0) if outside else torch.zeros(q.shape[:-1])
    if divergence == "kl":
        d = xlogy_ratio(p, lp, lq).sum(-1) + xlogy_ratio(po, po.log(), qo.log())
    elif divergence == "reverse_kl":
        d = xlogy_ratio(q, lq, lp).sum(-1) + xlogy_ratio(qo, qo.log(), po.log())
    else:
        m, mo = beta * p + (1 - beta) * q, beta * po + (1 - beta) * qo
        d = beta * (xlogy_ratio(p, lp, m.log()).sum(-1) + xlogy_ratio(po, po.log(), mo.log()))
        student = xlogy_ratio(q, lq, m.log()).sum(-1) + xlogy_ratio(qo, qo.log(), mo.log())
        d = d + (1 - beta) * student
    yt = torch.tensor(np.asarray(y))
    w = None if weight is None else torch.tensor(np.asarray(weight, np.float64))
    options = dict(weight=w, label_smoothing=label_smoothing)
    if yt.dtype == torch.int64:
        options["ignore_index"] = ignore_index
        counted = yt != ignore_index
    else:
        counted = torch.ones(d.shape, dtype=torch.bool)
    x1 = x.movedim(ax, 1) if x.dim() > 1 else x  # torch's class axis
    ce = F.cross_entropy(x1, yt, reduction="none", **options)
    z = z_loss * torch.logsumexp(x, ax) ** 2 * counted
    soft = (1 - alpha) * temperature**2 * d
    if reduction == "none":
        loss = alpha * (ce + z) + soft
    elif reduction == "sum":
        loss = alpha * (ce.sum() + z.sum()) + soft.sum()
    else:
        ce_mean = F.cross_entropy(x1, yt, reduction="mean", **options)
        loss = alpha * (ce_mean + z.sum() / counted.sum())
        loss = loss + soft.sum() / x.shape[0]
    (loss * torch.tensor(go, dtype=torch.float64) if go is not None else loss).sum().backward()
    return loss.detach().numpy(), st.grad.numpy()


def student_case(shape, axis, rng, probabilities=False):
    ax = axis % len(shape)
    s = rng.standard_normal(shape) * 3
    positions = shape[:ax] + shape[ax + 1 :]
    if probabilities:
        q = rng.dirichlet(np.ones(shape[ax]), int(np.prod(positions)))
        return s, np.moveaxis(q.reshape(*positions, shape[ax]), -1, ax)
    y = rng.integers(0, shape[ax], positions)
    if y.size > 1:
        y.flat[1] = -100
    return s, y


def check(s, y, indices, lp, ax, dtype, reduction, rtol, go=None, **options):
    kw = dict(options)
    divergence, beta, residual = kw.pop("soft")
    result = fl.distillation_loss(
        s.astype(dtype), None, y if y.dtype.kind == "i" else y.astype(dtype), temperature=T,
        alpha=ALPHA, divergence=divergence, beta=beta, teacher_topk=(indices, lp.astype(dtype)),
        topk_residual=residual, reduction=reduction, axis=ax, return_grad=True,
        grad_output=go, **kw,
    )
    loss, grad = torch_topk(
        s.astype(dtype), indices, lp.astype(dtype), y, ax, divergence=divergence, beta=beta,
        residual=residual, reduction=reduction, go=go, **kw,
    )
    assert result.grad.dtype == dtype
    np.testing.assert_allclose(result.loss, loss, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(result.grad, grad, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("soft", SOFT_TERMS, ids=SOFT_IDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_torch_composition(soft, reduction, dtype, rng):
    shape, k = (6, 300), 17
    s, y = student_case(shape, 1, rng)
    indices, lp = teacher_topk(shape, 1, k, rng)
    go = rng.random(6) + 0.5 if reduction == "none" else 0.7
    rtol = 1e-10 if dtype == np.float64 else 2e-5
    check(s, y, indices, lp, 1, dtype, reduction, rtol, go=go, soft=soft)


OPTIONS = [
    dict(weight="w", label_smoothing=0.1),
    dict(z_loss=1e-2),
    dict(softcap=2.5),
    dict(weight="w", ignore_index=3, z_loss=3e-3, softcap=4.0, label_smoothing=0.2),
]


@pytest.mark.parametrize("options", OPTIONS, ids=["weight-smoothing", "z", "softcap", "all"])
@pytest.mark.parametrize("soft", SOFT_TERMS, ids=SOFT_IDS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_hard_term_options(options, soft, reduction, rng):
    shape, k = (7, 90), 9
    s, y = student_case(shape, 1, rng)
    y[y == -100] = 0
    y[2] = options.get("ignore_index", -100)
    indices, lp = teacher_topk(shape, 1, k, rng)
    kw = dict(options)
    if kw.get("weight") == "w":
        kw["weight"] = rng.random(shape[1]) + 0.5
    go = rng.random(7) if reduction == "none" else None
    check(s, y, indices, lp, 1, np.float64, reduction, 1e-10, go=go, soft=soft, **kw)


# (shape, axis): (B, T, V) with the class axis last, a K-dimensional input whose class axis is 1
# (its rows are not contiguous: staged), one position (1-D), and a row longer than a sum block.
LAYOUTS = [((2, 3, 40), -1), ((3, 25, 4), 1), ((50,), 0), ((2, 9000), 1)]


@pytest.mark.parametrize("shape,axis", LAYOUTS, ids=["btv", "k-dim", "1d", "long-row"])
@pytest.mark.parametrize("soft", SOFT_TERMS, ids=SOFT_IDS)
def test_layouts(shape, axis, soft, rng):
    s, y = student_case(shape, axis, rng)
    indices, lp = teacher_topk(shape, axis, 5, rng)
    check(s, y, indices, lp, axis, np.float64, "mean", 1e-10, soft=soft, softcap=3.0)


@pytest.mark.parametrize("soft", SOFT_TERMS, ids=SOFT_IDS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_probability_targets(soft, reduction, rng):
    shape = (5, 60)
    s, q = student_case(shape, 1, rng, probabilities=True)
    indices, lp = teacher_topk(shape, 1, 8, rng)
    go = rng.random(5) if reduction == "none" else None
    check(s, q, indices, lp, 1, np.float64, reduction, 1e-10, go=go, soft=soft,
          label_smoothing=0.1, z_loss=1e-2, softcap=5.0)


@pytest.mark.parametrize("divergence,beta", [("kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.3)])
@pytest.mark.parametrize("residual", ["renormalize", "tail"])
@pytest.mark.parametrize("temperature", [1.0, 2.0, 3.0])
def test_all_classes_give_the_dense_loss(divergence, beta, residual, temperature, rng):
    """With k = C the teacher's log-probabilities at T are a full distribution: the dense loss
    with teacher logits T * logprobs, whatever order the classes come in."""
    shape = (6, 33)
    s, y = student_case(shape, 1, rng)
    indices, lp = teacher_topk(shape, 1, 33, rng, temperature=temperature)
    t = np.empty(shape)
    np.put_along_axis(t, indices, temperature * lp, axis=1)
    options = dict(temperature=temperature, alpha=ALPHA, divergence=divergence, beta=beta,
                   return_grad=True, weight=rng.random(33), z_loss=1e-3, softcap=6.0)
    dense = fl.distillation_loss(s, t, y, **options)
    top = fl.distillation_loss(s, None, y, teacher_topk=(indices, lp), topk_residual=residual,
                               **options)
    np.testing.assert_allclose(top.loss, dense.loss, rtol=1e-12)
    np.testing.assert_allclose(top.grad, dense.grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("residual", ["renormalize", "tail"])
def test_jsd_limits_are_the_two_kls(residual, rng):
    s, y = student_case((4, 50), 1, rng)
    indices, lp = teacher_topk((4, 50), 1, 6, rng)
    kw = dict(teacher_topk=(indices, lp), topk_residual="tail", return_grad=True)
    forward = fl.distillation_loss(s, None, y, divergence="kl", **kw)
    at_zero = fl.distillation_loss(s, None, y, divergence="jsd", beta=0.0, **kw)
    reverse = fl.distillation_loss(s, None, y, divergence="reverse_kl", **kw)
    at_one = fl.distillation_loss(s, None, y, divergence="jsd", beta=1.0, **kw)
    for a, b in [(forward, at_zero), (reverse, at_one)]:
        assert a.loss == b.loss
        np.testing.assert_array_equal(a.grad, b.grad)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("softcap", [None, 4.0])
def test_half_precision_is_computed_in_float32(dtype, softcap, rng):
    """Half logits are widened a row at a time: the float32 call on the same rounded values."""
    shape = (5, 70)
    s, y = student_case(shape, 1, rng)
    s = s.astype(dtype)
    indices, lp = teacher_topk(shape, 1, 8, rng, dtype=np.float32)
    kw = dict(teacher_topk=(indices, lp), topk_residual="tail", divergence="jsd",
              softcap=softcap, return_grad=True)
    half = fl.distillation_loss(s, None, y, **kw)
    wide = fl.distillation_loss(s.astype(np.float32), None, y, **kw)
    assert half.grad.dtype == dtype and half.loss.dtype == np.float32
    assert half.loss == wide.loss
    np.testing.assert_array_equal(half.grad, wide.grad.astype(dtype))


@pytest.mark.parametrize("soft", SOFT_TERMS, ids=SOFT_IDS)
def test_every_isa_and_thread_count(soft, isa, threads, rng):
    """Each ISA agrees with the composition; 1 and 2 threads give the same bits."""
    shape = (64, 1000)
    s, y = student_case(shape, 1, rng)
    indices, lp = teacher_topk(shape, 1, 64, rng)
    divergence, beta, residual = soft
    kw = dict(teacher_topk=(indices, lp.astype(np.float32)), divergence=divergence, beta=beta,
              topk_residual=residual, alpha=ALPHA, temperature=T, return_grad=True,
              reduction="none")
    s32 = s.astype(np.float32)
    result = fl.distillation_loss(s32, None, y, **kw)
    loss, grad = torch_topk(s32, indices, lp.astype(np.float32), y, 1, divergence=divergence,
                            beta=beta, residual=residual, reduction="none")
    np.testing.assert_allclose(result.loss, loss, rtol=3e-5, atol=3e-5)
    np.testing.assert_allclose(result.grad, grad, rtol=3e-5, atol=1e-7)
    fl.set_num_threads(3 - threads)
    other = fl.distillation_loss(s32, None, y, **kw)
    np.testing.assert_array_equal(other.loss, result.loss)
    np.testing.assert_array_equal(other.grad, result.grad)


def test_gradient_in_place_and_inputs_untouched(rng):
    s, y = student_case((4, 30), 1, rng)
    indices, lp = teacher_topk((4, 30), 1, 5, rng)
    kw = dict(teacher_topk=(indices, lp), topk_residual="tail", return_grad=True)
    expected = fl.distillation_loss(s, None, y, **kw)
    for a in (indices, lp, y):
        a.flags.writeable = False
    buffer = s.copy()
    result = fl.distillation_loss(buffer, None, y, grad_out=buffer, **kw)
    assert result.grad is buffer
    np.testing.assert_array_equal(buffer, expected.grad)
    assert result.loss == expected.loss


def test_edge_values(rng):
    """No positions; every target ignored (mean: NaN, the soft gradient stays); a -inf student
    logit at a teacher class (KL +inf) and outside them (finite)."""
    indices, lp = teacher_topk((3, 20), 1, 4, rng)
    empty = fl.distillation_loss(np.zeros((0, 20)), None, np.zeros(0, np.int64),
                                 teacher_topk=(indices[:0], lp[:0]), return_grad=True,
                                 reduction="sum")
    assert empty.loss == 0 and empty.grad.shape == (0, 20)
    empty_mean = fl.distillation_loss(np.zeros((0, 20)), None, np.zeros(0, np.int64),
                                      teacher_topk=(indices[:0], lp[:0]))
    assert np.isnan(empty_mean)  # 0 / 0, as the dense loss
    s = rng.standard_normal((3, 20))
    ignored = np.full(3, -100)
    result = fl.distillation_loss(s, None, ignored, teacher_topk=(indices, lp), return_grad=True)
    soft_only = fl.distillation_loss(s, None, ignored, teacher_topk=(indices, lp), alpha=0.0,
                                     return_grad=True)
    assert np.isnan(result.loss)
    np.testing.assert_allclose(result.grad, 0.5 * soft_only.grad, rtol=1e-12)
    outside = np.setdiff1d(np.arange(20), indices[0])[0]
    s[0, outside] = -np.inf
    kw = dict(teacher_topk=(indices, lp), reduction="sum")
    assert np.isfinite(fl.distillation_loss(s, None, ignored, **kw))
    s[0, indices[0, 0]] = -np.inf
    assert fl.distillation_loss(s, None, ignored, **kw) == np.inf
    nan_teacher = lp.copy()
    nan_teacher[1, 2] = np.nan
    for divergence, _, residual in SOFT_TERMS:  # a NaN log-probability makes its position NaN
        got = fl.distillation_loss(s, None, ignored, teacher_topk=(indices, nan_teacher),
                                   topk_residual=residual, divergence=divergence,
                                   reduction="none")
        assert np.isnan(got[1]) and not np.isnan(got[2]), (residual, divergence)


def test_distillation_loss_class(rng):
    s, y = student_case((4, 30), 1, rng)
    indices, lp = teacher_topk((4, 30), 1, 5, rng)
    loss = fl.DistillationLoss(alpha=0.3, topk_residual="tail", z_loss=1e-3)
    want = fl.distillation_loss(s, None, y, alpha=0.3, teacher_topk=(indices, lp),
                                topk_residual="tail", z_loss=1e-3)
    assert loss(s, None, y, teacher_topk=(indices, lp)) == want
    assert repr(loss).endswith("z_loss=0.001, topk_residual='tail')")
    assert "topk_residual" not in repr(fl.DistillationLoss())


def test_torch_module(rng):
    import fastloss.torch as flt

    s, y = student_case((4, 30), 1, rng)
    indices, lp = teacher_topk((4, 30), 1, 5, rng)
    st = torch.tensor(s, requires_grad=True)
    module = flt.nn.DistillationLoss(alpha=0.3, topk_residual="tail")
    topk = (torch.tensor(indices), torch.tensor(lp))
    module(st, None, torch.tensor(y), teacher_topk=topk).backward()
    want = fl.distillation_loss(s, None, y, alpha=0.3, teacher_topk=(indices, lp),
                                topk_residual="tail", return_grad=True)
    np.testing.assert_allclose(st.grad.numpy(), want.grad, rtol=1e-12)


def test_errors(rng):
    s, y = student_case((3, 10), 1, rng)
    indices, lp = teacher_topk((3, 10), 1, 4, rng)
    call = fl.distillation_loss
    with pytest.raises(ValueError, match="exactly one of teacher_logits and teacher_topk"):
        call(s, s, y, teacher_topk=(indices, lp))
    with pytest.raises(ValueError, match="exactly one"):
        call(s, None, y)
    with pytest.raises(TypeError, match="pair"):
        call(s, None, y, teacher_topk=indices)
    with pytest.raises(TypeError, match=r"integer array of class indices, got dtype float64$"):
        call(s, None, y, teacher_topk=(indices.astype(np.float64), lp))
    with pytest.raises(IndexError, match="indices: 18446744073709551615 is out of bounds"):
        call(s, None, y, teacher_topk=(np.full((3, 4), 2**64 - 1, np.uint64), lp))
    with pytest.raises(ValueError, match=r"shape \(3, 4\).*k entries"):
        call(s, None, y, teacher_topk=(indices, lp), axis=0)
    with pytest.raises(ValueError, match="logprobs have shape"):
        call(s, None, y, teacher_topk=(indices, lp[:, :3]))
    with pytest.raises(ValueError, match="between 1 and 10"):
        call(s, None, y, teacher_topk=(indices[:, :0], lp[:, :0]))
    bad = indices.copy()
    bad[1, 2] = 10
    with pytest.raises(IndexError, match="index 10 at position 1 is out of bounds for 10 classes"):
        call(s, None, y, teacher_topk=(bad, lp))
    bad[1, 2] = -1
    with pytest.raises(IndexError, match="index -1"):
        call(s, None, y, teacher_topk=(bad, lp))
    bad[1, 2] = bad[1, 0]
    with pytest.raises(ValueError, match=f"repeat class {bad[1, 0]} at position 1"):
        call(s, None, y, teacher_topk=(bad, lp))
    with pytest.raises(ValueError, match="topk_residual must be one of"):
        call(s, None, y, teacher_topk=(indices, lp), topk_residual="drop")
    with pytest.raises(ValueError, match="topk_residual must be one of"):
        call(s, s, y, topk_residual=None)
    with pytest.raises(ValueError, match="use topk_residual='tail'"):
        call(s, None, y, teacher_topk=(indices, lp), divergence="reverse_kl")
    with pytest.raises(ValueError, match="use topk_residual='tail'"):
        call(s, None, y, teacher_topk=(indices, lp), divergence="jsd", beta=1.0)
    with pytest.raises(ValueError, match="beta must be between"):
        call(s, None, y, teacher_topk=(indices, lp), divergence="jsd", beta=1.5)
    y[0] = 10
    with pytest.raises(IndexError, match="Target 10 is out of bounds"):
        call(s, None, y, teacher_topk=(indices, lp))
