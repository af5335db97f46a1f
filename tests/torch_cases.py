"""Every fastloss.torch function and option, with torch's own expression of it, for the
tests/test_torch_*.py modules (imported only after torch is found)."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F

import fastloss.torch as flt


class Case(NamedTuple):
    """`make(dtype)` gives (differentiable tensors, other arguments); `ours` and `theirs` take
    them as ``f(*differentiable, **others)``."""

    id: str
    ours: Callable[..., torch.Tensor]
    theirs: Callable[..., torch.Tensor]
    make: Callable[[torch.dtype], tuple[list[torch.Tensor], dict[str, Any]]]


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _randn(*shape: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)


def _uniform(*shape: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    """Values in (0.1, 0.9): probabilities that stay inside [0, 1] under gradcheck's steps."""
    return (0.1 + 0.8 * torch.rand(*shape, generator=gen, dtype=torch.float64)).to(dtype)


def _class_maker(probs=False, weight=False, ignore=False, kdim=False):
    def make(dtype: torch.dtype) -> tuple[list[torch.Tensor], dict[str, Any]]:
        gen = _generator()
        shape = (3, 4, 2) if kdim else (5, 4)
        x = _randn(*shape, dtype=dtype, gen=gen)
        if probs:
            t = torch.softmax(_randn(*shape, dtype=torch.float64, gen=gen), 1).to(dtype)
        else:
            t = torch.randint(0, 4, shape[:1] + shape[2:], generator=gen)
            if ignore:
                t.view(-1)[1] = -100
        others: dict[str, Any] = {"target": t}
        if weight:
            others["weight"] = _uniform(4, dtype=dtype, gen=gen) + 0.5
        return [x], others

    return make


def _ce(reduction: str, label_smoothing: float = 0.0):
    def ours(x, **kw):
        return flt.cross_entropy(x, reduction=reduction, label_smoothing=label_smoothing, **kw)

    def theirs(x, **kw):
        return F.cross_entropy(x, reduction=reduction, label_smoothing=label_smoothing, **kw)

    return ours, theirs


def _z_loss_term(z_loss, logits, target, reduction, dim):
    """z lse^2 per non-ignored position (every one for probabilities), reduced as Liger does
    (mean: over their count, unweighted), in torch ops."""
    lse = torch.logsumexp(logits, dim)
    valid = torch.ones_like(lse, dtype=torch.bool) if target.is_floating_point() else target != -100
    z = torch.where(valid, z_loss * lse**2, 0)
    return {"none": z, "sum": z.sum(), "mean": z.sum() / valid.sum()}[reduction]


def _ce_options(reduction: str, z_loss: float, softcap: float):
    """cross_entropy with fastloss's z_loss and softcap, against their torch composition: the
    capped logits softcap * tanh(x / softcap), then F.cross_entropy plus the z-loss."""

    def ours(x, **kw):
        return flt.cross_entropy(x, reduction=reduction, z_loss=z_loss, softcap=softcap, **kw)

    def theirs(x, **kw):
        capped = softcap * torch.tanh(x / softcap)
        ce = F.cross_entropy(capped, reduction=reduction, **kw)
        return ce + _z_loss_term(z_loss, capped, kw["target"], reduction, 1)

    return ours, theirs


def _nll(reduction: str):
    return (
        lambda x, **kw: flt.nll_loss(x, reduction=reduction, **kw),
        lambda x, **kw: F.nll_loss(x, reduction=reduction, **kw),
    )


def _kl_maker(log_target: bool, broadcast: bool = False):
    def make(dtype):
        gen = _generator()
        x = torch.log_softmax(_randn(1 if broadcast else 4, 3, dtype=torch.float64, gen=gen), 1)
        t = torch.softmax(_randn(4, 3, dtype=torch.float64, gen=gen), 1)
        return [x.to(dtype)], {"target": (t.log() if log_target else t).to(dtype)}

    return make


def _kl(reduction: str, log_target: bool):
    return (
        lambda x, **kw: flt.kl_div(x, reduction=reduction, log_target=log_target, **kw),
        lambda x, **kw: F.kl_div(x, reduction=reduction, log_target=log_target, **kw),
    )


def _bce_maker(weight: bool = False, pos_weight: bool = False, logits: bool = False):
    def make(dtype):
        gen = _generator()
        x = (_randn if logits else _uniform)(4, 3, dtype=dtype, gen=gen)
        others: dict[str, Any] = {"target": _uniform(4, 3, dtype=dtype, gen=gen)}
        if weight:
            others["weight"] = _uniform(3, dtype=dtype, gen=gen)
        if pos_weight:
            others["pos_weight"] = _uniform(3, dtype=dtype, gen=gen) * 3
        return [x], others

    return make


def _bce(reduction: str, logits: bool):
    ours = flt.binary_cross_entropy_with_logits if logits else flt.binary_cross_entropy
    theirs = F.binary_cross_entropy_with_logits if logits else F.binary_cross_entropy
    return (
        lambda x, **kw: ours(x, reduction=reduction, **kw),
        lambda x, **kw: theirs(x, reduction=reduction, **kw),
    )


def _torchvision_focal(x, target, alpha, gamma, reduction):
    """torchvision.ops.sigmoid_focal_loss, written out in torch ops."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


def _focal(reduction: str, alpha: float, gamma: float):
    return (
        lambda x, target: flt.sigmoid_focal_loss(x, target, alpha, gamma, reduction),
        lambda x, target: _torchvision_focal(x, target, alpha, gamma, reduction),
    )


def _cosine_maker(broadcast: bool = False):
    def make(dtype):
        gen = _generator()
        a = _randn(1 if broadcast else 4, 5, dtype=dtype, gen=gen)
        b = _randn(4, 5, dtype=dtype, gen=gen)
        return [a, b], {"target": torch.tensor([1, -1, 1, -1])}

    return make


def _cosine(reduction: str, margin: float):
    return (
        lambda a, b, target: flt.cosine_embedding_loss(a, b, target, margin, reduction=reduction),
        lambda a, b, target: F.cosine_embedding_loss(a, b, target, margin, reduction=reduction),
    )


def _distillation_reference(s, teacher, target, *, temperature, alpha, reduction, weight=None):
    """fastloss's documented torch expression of the distillation loss."""
    ce = F.cross_entropy(s, target, weight=weight, reduction=reduction)
    log_q = F.log_softmax(s / temperature, 1)
    p = F.softmax(teacher / temperature, 1)
    if reduction == "none":
        kl = F.kl_div(log_q, p, reduction="none").sum(1)
    else:
        kl = F.kl_div(log_q, p, reduction="batchmean" if reduction == "mean" else "sum")
    return alpha * ce + (1 - alpha) * temperature * temperature * kl


def _distillation(reduction: str, weight: bool = False):
    options = {"temperature": 2.0, "alpha": 0.3, "reduction": reduction}

    def make(dtype):
        gen = _generator()
        s = _randn(5, 4, dtype=dtype, gen=gen)
        others: dict[str, Any] = {
            "teacher": _randn(5, 4, dtype=dtype, gen=gen),
            "target": torch.randint(0, 4, (5,), generator=gen),
        }
        if weight:
            others["weight"] = _uniform(4, dtype=dtype, gen=gen) + 0.5
        return [s], others

    def ours(s, teacher, target, **kw):
        return flt.distillation_loss(s, teacher, target, **options, **kw)

    def theirs(s, teacher, target, **kw):
        return _distillation_reference(s, teacher, target, **options, **kw)

    return Case(f"distillation-{reduction}{'-weight' if weight else ''}", ours, theirs, make)


def _topk_distillation(reduction: str, residual: str):
    """A teacher's top 3 of 6 classes at T = 2, against the formula in torch ops: the student's
    log_softmax gathered there, and the teacher renormalized ("renormalize") or with its missing
    mass against the student's outside the three ("tail"); KL, hard term with class weights."""
    options = {"temperature": 2.0, "alpha": 0.3, "reduction": reduction}

    def make(dtype):
        gen = _generator()
        teacher = _randn(5, 6, dtype=torch.float64, gen=gen)
        indices = torch.topk(teacher, 3, dim=1).indices
        logprobs = F.log_softmax(teacher / 2.0, 1).gather(1, indices).to(dtype)
        others = {
            "topk": (indices, logprobs),
            "target": torch.randint(0, 6, (5,), generator=gen),
            "weight": _uniform(6, dtype=dtype, gen=gen) + 0.5,
        }
        return [_randn(5, 6, dtype=dtype, gen=gen)], others

    def ours(s, topk, target, weight):
        return flt.distillation_loss(
            s, None, target, weight=weight, teacher_topk=topk, topk_residual=residual, **options
        )

    def theirs(s, topk, target, weight):
        indices, log_p = topk
        log_q = F.log_softmax(s / 2.0, 1).gather(1, indices)
        if residual == "renormalize":
            log_p = log_p - torch.logsumexp(log_p, 1, keepdim=True)
            kl = (log_p.exp() * (log_p - log_q)).sum(1)
        else:
            p_out = 1 - log_p.exp().sum(1)
            q_out = 1 - log_q.exp().sum(1)
            kl = (log_p.exp() * (log_p - log_q)).sum(1) + p_out * (p_out.log() - q_out.log())
        ce = F.cross_entropy(s, target, weight=weight, reduction=reduction)
        if reduction != "none":
            kl = kl.sum() / (s.shape[0] if reduction == "mean" else 1)
        return 0.3 * ce + 0.7 * 4.0 * kl

    return Case(f"distillation_topk-{reduction}-{residual}", ours, theirs, make)


def _torch_linear_ce(
    x, w_lin, b=None, *, target, weight=None, reduction, label_smoothing, z_loss, softcap=None
):
    """F.linear_cross_entropy on the input's rows (torch takes 1 or 2 dims), plus the z-loss
    (z lse^2 per non-ignored position; mean over their count) in torch ops; with softcap,
    F.cross_entropy of the capped logits of F.linear (torch's linear_cross_entropy has none)."""
    flat = x.dim() > 2
    rows = x.reshape(-1, x.shape[-1]) if flat else x
    probs = target.is_floating_point()
    if flat:
        target = target.reshape(-1, w_lin.shape[0]) if probs else target.reshape(-1)
    options = dict(weight=weight, reduction=reduction, label_smoothing=label_smoothing)
    logits = F.linear(rows, w_lin, b)
    if softcap is None:
        loss = F.linear_cross_entropy(rows, w_lin, target, linear_bias=b, **options)
    else:
        logits = softcap * torch.tanh(logits / softcap)
        loss = F.cross_entropy(logits, target, **options)
    if z_loss:
        loss = loss + _z_loss_term(z_loss, logits, target, reduction, -1)
    return loss.reshape(x.shape[:-1]) if reduction == "none" else loss


def _linear_ce(
    reduction,
    positions=(5,),
    bias=True,
    probs=False,
    weight=False,
    ignored=0,
    ls=0.0,
    z=0.0,
    cap=None,
):
    """linear_cross_entropy of a (*positions, 3) input over 4 classes; the first `ignored`
    positions' targets are ignore_index."""
    kind = [f"{len(positions) + 1}d"]
    kind += [name for name, on in (("bias", bias), ("probs", probs), ("weight", weight)) if on]
    kind += [
        f"{name}{v}" for name, v in (("ignored", ignored), ("ls", ls), ("z", z), ("cap", cap)) if v
    ]
    options = {"reduction": reduction, "label_smoothing": ls}

    def make(dtype):
        gen = _generator()
        x = _randn(*positions, 3, dtype=dtype, gen=gen)
        tensors = [x, _randn(4, 3, dtype=dtype, gen=gen)]
        if bias:
            tensors.append(_randn(4, dtype=dtype, gen=gen))
        if probs:
            t = torch.softmax(_randn(*positions, 4, dtype=torch.float64, gen=gen), -1).to(dtype)
        else:
            t = torch.randint(0, 4, positions, generator=gen)
            t.view(-1)[:ignored] = -100
        others: dict[str, Any] = {"target": t}
        if weight:
            others["weight"] = _uniform(4, dtype=dtype, gen=gen) + 0.5
        return tensors, others

    def ours(x, w_lin, b=None, **kw):
        return flt.linear_cross_entropy(
            x, w_lin, linear_bias=b, z_loss=z, softcap=cap, **options, **kw
        )

    def theirs(x, w_lin, b=None, **kw):
        return _torch_linear_ce(x, w_lin, b, z_loss=z, softcap=cap, **options, **kw)

    return Case(f"linear_ce-{reduction}-{'-'.join(kind)}", ours, theirs, make)


def _softmax_maker(shape: tuple[int, ...] = (4, 5)):
    def make(dtype):
        return [_randn(*shape, dtype=dtype, gen=_generator())], {}

    return make


def _entropy_reference(x):
    return torch.distributions.Categorical(logits=x).entropy()


CASES = [
    *[
        Case(f"cross_entropy-{r}-{kind}-ls{ls}", *_ce(r, ls), _class_maker(**opts))
        for r in ("mean", "sum", "none")
        for kind, ls, opts in (
            ("index", 0.0, {}),
            ("weight-ignore", 0.2, {"weight": True, "ignore": True}),
            ("probs", 0.0, {"probs": True}),
            ("probs-weight", 0.2, {"probs": True, "weight": True}),
            ("kdim", 0.0, {"kdim": True, "ignore": True}),
        )
    ],
    *[
        Case(f"cross_entropy-{r}-{kind}-z-cap", *_ce_options(r, 0.01, 1.5), _class_maker(**opts))
        for r in ("mean", "sum", "none")
        for kind, opts in (
            ("weight-ignore", {"weight": True, "ignore": True}),
            ("probs", {"probs": True}),
        )
    ],
    *[
        Case(f"nll_loss-{r}-{kind}", *_nll(r), _class_maker(**opts))
        for r, kind, opts in (
            ("mean", "weight-ignore", {"weight": True, "ignore": True}),
            ("sum", "index", {}),
            ("none", "weight-ignore", {"weight": True, "ignore": True}),
        )
    ],
    *[
        Case(f"kl_div-{r}-log{lt}-b{b}", *_kl(r, lt), _kl_maker(lt, b))
        for r in ("batchmean", "sum", "none")
        for lt in (False, True)
        for b in ((False, True) if r != "sum" else (False,))
    ],
    *[
        Case(f"bce-{r}-w{w}", *_bce(r, False), _bce_maker(weight=w))
        for r in ("mean", "sum", "none")
        for w in (False, True)
    ],
    *[
        Case(f"bce_logits-{r}-w{w}-pw{pw}", *_bce(r, True), _bce_maker(w, pw, logits=True))
        for r in ("mean", "sum", "none")
        for w, pw in ((False, False), (True, True))
    ],
    *[
        Case(f"focal-{r}-a{a}-g{g}", *_focal(r, a, g), _bce_maker(logits=True))
        for r in ("mean", "sum", "none")
        for a, g in ((0.25, 2.0), (-1.0, 1.5))
    ],
    *[
        Case(f"cosine-{r}-m{m}-b{b}", *_cosine(r, m), _cosine_maker(b))
        for r in ("mean", "sum", "none")
        for m, b in ((0.0, False), (-0.5, True))
    ],
    *[_distillation(r, w) for r, w in (("mean", True), ("sum", False), ("none", True))],
    *[_topk_distillation(r, res) for r, res in (("mean", "renormalize"), ("none", "tail"))],
    *[
        Case(
            f"{name}-dim{d}",
            lambda x, f=ours, d=d: f(x, d),
            lambda x, f=theirs, d=d: f(x, d),
            _softmax_maker(),
        )
        for name, ours, theirs in (
            ("softmax", flt.softmax, F.softmax),
            ("log_softmax", flt.log_softmax, F.log_softmax),
            ("logsumexp", flt.logsumexp, torch.logsumexp),
        )
        for d in (0, -1)
    ],
    Case(
        "logsumexp-dims-keepdim",
        lambda x: flt.logsumexp(x, (0, 2), keepdim=True),
        lambda x: torch.logsumexp(x, (0, 2), keepdim=True),
        _softmax_maker((3, 2, 4)),
    ),
    Case("entropy", flt.entropy, _entropy_reference, _softmax_maker((3, 2, 4))),
    *[
        _linear_ce(r, **opts)
        for r in ("mean", "sum", "none")
        for opts in (
            {},
            {"weight": True, "ignored": 1, "ls": 0.2, "z": 0.01},
            {"bias": False, "probs": True, "weight": True, "ls": 0.1},
            {"positions": (2, 3), "ignored": 2, "z": 0.01},
            {"weight": True, "ignored": 1, "ls": 0.1, "z": 0.01, "cap": 1.5},
        )
    ],
    _linear_ce("mean", positions=()),
    _linear_ce("none", positions=(), probs=True, z=0.01),
    # every position ignored: the sum is 0 and every gradient 0 (the mean, NaN, is tested apart)
    *[_linear_ce(r, weight=True, ignored=5, ls=0.1, z=0.01) for r in ("sum", "none")],
]
