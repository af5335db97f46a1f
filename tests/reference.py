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
