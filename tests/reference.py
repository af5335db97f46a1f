"""Independent float64 NumPy references with PyTorch's semantics (shared with the benchmarks).

Written for clarity, not speed: every function upcasts to float64 (or keeps longdouble) and
follows the formulas of ../shared/notes/pytorch-semantics.md directly.
"""

from __future__ import annotations

import numpy as np


def half_epsilon(dtype) -> float:
    """The machine epsilon of a float type; bfloat16's (2**-7) spelled out, as NumPy's finfo
    knows bfloat16 only with recent NumPy and ml_dtypes releases."""
    return 2.0**-7 if np.dtype(dtype).name == "bfloat16" else float(np.finfo(dtype).eps)


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def log_softmax(x, axis: int = -1) -> np.ndarray:
    x = _f64(x)
    if x.size == 0:
        return x.copy()
    with np.errstate(all="ignore"):
        m = np.max(x, axis=axis, keepdims=True)  # NaN-propagating, like torch.amax
        shifted = x - m
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def softmax(x, axis: int = -1) -> np.ndarray:
    x = _f64(x)
    if x.size == 0:
        return x.copy()
    with np.errstate(all="ignore"):
        m = np.max(x, axis=axis, keepdims=True)
        e = np.exp(x - m)
        return e / np.sum(e, axis=axis, keepdims=True)


def logsumexp(x, axis=-1, keepdims: bool = False) -> np.ndarray:
    """torch.logsumexp: the max is replaced by 0 where it is infinite."""
    x = _f64(x)
    with np.errstate(all="ignore"):
        if x.shape and any(x.shape[a] == 0 for a in np.atleast_1d(axis if axis is not None else range(x.ndim))):
            return np.full(np.sum(x, axis=axis, keepdims=keepdims).shape, -np.inf)
        m = np.max(x, axis=axis, keepdims=True)
        m = np.where(np.isinf(m), 0.0, m)
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _move_class_axis_last(x, axis):
    return np.moveaxis(_f64(x), axis, -1)


def cross_entropy(x, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, axis=None):
    """torch.nn.functional.cross_entropy, written out per position in float64."""
    x = _f64(x)
    if axis is None:
        axis = 1 if x.ndim >= 2 else 0
    axis = axis % x.ndim
    lp = _move_class_axis_last(log_softmax(x, axis), axis)  # (..., C)
    C = lp.shape[-1]
    w = np.ones(C) if weight is None else _f64(weight)
    eps = label_smoothing
    target = np.asarray(target)
    if target.dtype.kind == "f":  # probabilities
        q = _move_class_axis_last(target, axis)
        q = (1 - eps) * q + eps / C
        with np.errstate(invalid="ignore"):
            per = -np.sum(w * q * lp, axis=-1)
        if reduction == "none":
            return per
        total = per.sum()
        # torch divides by numel / C: NaN without positions, and without classes (0 / 0)
        return total if reduction == "sum" else (total / per.size if per.size and C else np.nan)
    t = target.astype(np.int64)
    valid = t != ignore_index
    safe_t = np.where(valid, t, 0)
    with np.errstate(invalid="ignore"):
        nll = -np.take_along_axis(lp, safe_t[..., None], axis=-1)[..., 0]
        per = (1 - eps) * w[safe_t] * nll
        if eps > 0:  # PyTorch computes the smoothing term only then (0 * inf would be NaN)
            per = per + eps * (-np.sum(w * lp, axis=-1) / C)
        per = np.where(valid, per, 0.0)
    if reduction == "none":
        return per
    total = per.sum()
    if reduction == "sum":
        return total
    denom = np.sum(np.where(valid, w[safe_t], 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / denom


def nll_loss(x, target, weight=None, ignore_index=-100, reduction="mean", axis=None):
    x = _f64(x)
    if axis is None:
        axis = 1 if x.ndim >= 2 else 0
    lp = _move_class_axis_last(x, axis % x.ndim)
    w = np.ones(lp.shape[-1]) if weight is None else _f64(weight)
    t = np.asarray(target).astype(np.int64)
    valid = t != ignore_index
    safe_t = np.where(valid, t, 0)
    per = np.where(valid, -w[safe_t] * np.take_along_axis(lp, safe_t[..., None], axis=-1)[..., 0], 0.0)
    if reduction == "none":
        return per
    total = per.sum()
    if reduction == "sum":
        return total
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / np.sum(np.where(valid, w[safe_t], 0.0))


def kl_div_batchmean_softmax(student, teacher, temperature=1.0, axis=None):
    """KL(softmax(t/T) || softmax(s/T)) summed over everything, / shape[0] (torch's batchmean)."""
    s, t = _f64(student), _f64(teacher)
    if axis is None:
        axis = 1 if s.ndim >= 2 else 0
    return kl_softmax_per_position(s, t, temperature, axis).sum() / s.shape[0]


def kl_softmax_per_position(student, teacher, temperature=1.0, axis=-1):
    """Per position sum_c p (log p - log q), p = softmax(t/T), q = softmax(s/T), with torch's
    kl_div pointwise semantics: xlogy(p, p) - p * log q (0 * -inf = NaN)."""
    s, t = _f64(student), _f64(teacher)
    lq = log_softmax(s / temperature, axis)
    p = softmax(t / temperature, axis)
    with np.errstate(all="ignore"):
        xlogy = np.where(p == 0, 0.0, p * np.log(p))
        return np.sum(xlogy - p * lq, axis=axis)


def distillation_loss(
    s,
    t,
    target,
    temperature=2.0,
    alpha=0.5,
    reduction="mean",
    weight=None,
    ignore_index=-100,
    label_smoothing=0.0,
    axis=None,
):
    """alpha CE + (1 - alpha) T^2 KL, with fastloss.distillation_loss's reductions."""
    s = _f64(s)
    ax = (1 if s.ndim >= 2 else 0) if axis is None else axis % s.ndim
    ce = cross_entropy(
        s,
        target,
        weight,
        ignore_index,
        "none" if reduction == "none" else reduction,
        label_smoothing,
        ax,
    )
    kl = kl_softmax_per_position(s, t, temperature, ax)
    scale = (1 - alpha) * temperature**2
    if reduction == "none":
        return alpha * ce + scale * kl
    if reduction == "sum":
        return alpha * ce + scale * kl.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return alpha * ce + scale * (kl.sum() / s.shape[0] if s.shape[0] else np.nan)


def entropy_from_logits(x, axis=-1):
    """-sum p log p of softmax(x), with p log p = 0 where p = 0 (Categorical's clamp)."""
    lp = log_softmax(x, axis)
    with np.errstate(all="ignore"):
        p = np.exp(lp)
        return -np.sum(np.where(p == 0, 0.0, p * lp), axis=axis)


def entropy_from_probs(p, axis=-1):
    """sum of torch.special.entr: -p log p, 0 at 0, -inf below 0."""
    p = _f64(p)
    with np.errstate(all="ignore"):
        terms = np.where(p > 0, -p * np.log(p), np.where(p == 0, 0.0, -np.inf))
        return np.sum(np.where(np.isnan(p), np.nan, terms), axis=axis)


def cosine_embedding_loss(x1, x2, target, margin=0.0, reduction="mean"):
    a, b = _f64(x1), _f64(x2)
    y = _f64(target)
    eps = float(np.float32(1e-12))  # PyTorch's EPSILON is a float constant, also for float64
    cos = np.sum(a * b, -1) / np.sqrt((np.sum(a * a, -1) + eps) * (np.sum(b * b, -1) + eps))
    per = np.where(y == 1, 1 - cos, 0.0) + np.where(y == -1, np.maximum(cos - margin, 0.0), 0.0)
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.mean() if per.size else np.nan
def _reduce_elementwise(per, reduction, batch=None):
    if reduction == "none":
        return per
    total = per.sum()
    if reduction == "sum":
        return total
    count = per.size if reduction == "mean" else batch
    return total / count if count else np.nan


def kl_div(x, target, reduction="mean", log_target=False):
    """torch.nn.functional.kl_div: xlogy(t, t) - t * x (0 * log 0 = 0), or exp(t) (t - x)."""
    x, t = _f64(x), _f64(target)
    with np.errstate(all="ignore"):
        if log_target:
            per = np.exp(t) * (t - x)
        else:
            per = np.where(t == 0, 0.0, t * np.log(t)) - t * x
    batch = x.shape[0] if x.ndim else None
    if reduction == "batchmean" and batch is None:
        reduction = "sum"
    return _reduce_elementwise(per, reduction, batch)


def binary_cross_entropy(p, y, weight=None, reduction="mean"):
    """-w [y max(log p, -100) + (1 - y) max(log(1 - p), -100)]; mean over every element."""
    p, y = _f64(p), _f64(y)
    with np.errstate(divide="ignore"):
        per = -(y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log1p(-p), -100))
    if weight is not None:
        per = per * _f64(weight)
    return _reduce_elementwise(per, reduction)


def binary_cross_entropy_with_logits(x, y, weight=None, pos_weight=None, reduction="mean"):
    """w [(1 - y) x + (1 + (pw - 1) y) softplus(-x)], softplus(-x) = max(-x, 0) + log1p(exp(-|x|))."""
    x, y = _f64(x), _f64(y)
    pw = 1.0 if pos_weight is None else _f64(pos_weight)
    with np.errstate(invalid="ignore", over="ignore"):
        softplus = np.maximum(-x, 0) + np.log1p(np.exp(-np.abs(x)))
        per = (1 - y) * x + (1 + (pw - 1) * y) * softplus
    if weight is not None:
        per = per * _f64(weight)
    return _reduce_elementwise(per, reduction)


def sigmoid_focal_loss(x, t, alpha=0.25, gamma=2.0, reduction="none", return_grad=False):
    """torchvision.ops.sigmoid_focal_loss in float64, with 1 - p_t = (1 - t) sigmoid(x) +
    t sigmoid(-x) (no cancellation), and autograd's gradient of it with respect to x (of the
    sum of the losses; divided by the count for mean)."""
    x, t = _f64(x), _f64(t)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        e = np.exp(-np.abs(x))
        sig = np.where(x < 0, e / (1 + e), 1 / (1 + e))
        sig_neg = np.where(x < 0, 1 / (1 + e), e / (1 + e))
        ce = binary_cross_entropy_with_logits(x, t, reduction="none")
        q = (1 - t) * sig + t * sig_neg
        a_t = alpha * t + (1 - alpha) * (1 - t) if alpha >= 0 else np.ones_like(t)
        per = a_t * ce * q**gamma
        if not return_grad:
            return _reduce_elementwise(per, reduction)
        grad = ((1 - t) * sig - t * sig_neg) * q**gamma  # p - t, without cancellation
        if gamma != 0:  # pow's backward is 0 for a zero exponent
            grad = grad + gamma * ce * q ** (gamma - 1) * (1 - 2 * t) * sig * sig_neg
        grad = a_t * grad
    if reduction == "mean":
        grad = grad / per.size if per.size else grad
    return _reduce_elementwise(per, reduction), grad
