"""Independent float64 NumPy references with PyTorch's semantics (shared with the benchmarks).

Written for clarity, not speed: every function upcasts to float64 (or keeps longdouble) and
follows the formulas of ../shared/notes/pytorch-semantics.md directly.
"""

from __future__ import annotations

import numpy as np


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
