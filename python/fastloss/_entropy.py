"""entropy: Shannon entropy of a categorical distribution given by logits or probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._validation import as_float_array, normalize_axis

__all__ = ["entropy"]


def entropy(
    logits: Any = None, axis: int = -1, *, probs: Any | None = None
) -> np.ndarray | np.floating:
    """Shannon entropy (in nats) along `axis` of softmax(logits), or of ``probs``.

    - ``entropy(logits)``: ``H = logsumexp(x) - sum(softmax(x) * x)``, computed from shifted
      logits in one fused pass, as ``torch.distributions.Categorical(logits=x).entropy()``:
      classes with probability 0 (-inf logits) add 0, so ``[0, -inf, 0]`` gives ln 2. A slice
      that is all -inf, holds +inf or holds NaN gives NaN.
    - ``entropy(probs=p)``: ``-sum(p * log(p))`` with ``0 * log(0) = 0``, i.e.
      ``torch.special.entr(p).sum(axis)``. ``p`` is not normalised or validated: a negative
      entry contributes -inf (``entr``'s value there), NaN gives NaN.

    An empty axis gives 0 (the empty sum). Returns an array of the input's shape without
    `axis`, or a NumPy scalar for 1-D input; float16/bfloat16 are computed in float32 and
    rounded once.
    """
    result = _core.entropy_common_case(logits, axis, probs)
    if result is not None:
        return result
    if (logits is None) == (probs is None):
        raise TypeError("entropy() takes exactly one of logits (positional) and probs= (keyword)")
    name = "logits" if probs is None else "probs"
    x = as_float_array(logits if probs is None else probs, name)
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (the classes), got a 0-d array")
    ax = normalize_axis(axis, x.ndim)
    out = np.empty(x.shape[:ax] + x.shape[ax + 1 :], x.dtype)
    _core.entropy(x, out, ax, probabilities=probs is not None)  # an empty axis gives 0
    return out[()] if out.ndim == 0 else out
