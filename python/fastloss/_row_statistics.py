"""Mergeable softmax row statistics: the one primitive behind every computation that sees a row's
classes in pieces (the vocabulary tiles of `linear_cross_entropy`, class-axis chunks in Dask,
vocabulary shards across workers).

A piece of a row is summarised by five float64 fields, the last axis of a statistics array
(see cpp/include/fastloss/row_statistics.hpp, [Note: mergeable row statistics]):

``max``                 the largest logit of the piece (-inf for none)
``sum_exp``             sum of exp(logit - max) over the piece (0 when max is -inf)
``target_logit``        the logit of the row's index target, if the piece holds it, else 0
``weighted_logit_sum``  sum of u_c * logit_c, u_c the class weight (index targets with label
                        smoothing) or the weighted smoothed target probability (probability targets)
``target_mass``         sum of the weighted smoothed target probabilities (probability targets)

Two pieces merge exactly by online-softmax merging (`merge_row_statistics`); the merged row's
logsumexp is ``max + log(sum_exp)`` (`row_logsumexp`).
"""

from __future__ import annotations

import numpy as np

from . import _core

__all__ = [
    "FIELDS",
    "empty_row_statistics",
    "merge_row_statistics",
    "row_logsumexp",
]

FIELDS = ("max", "sum_exp", "target_logit", "weighted_logit_sum", "target_mass")
MAX, SUM_EXP, TARGET_LOGIT, WEIGHTED_LOGIT_SUM, TARGET_MASS = range(len(FIELDS))


def empty_row_statistics(shape: tuple[int, ...]) -> np.ndarray:
    """Statistics of rows that have seen no class yet (the identity of the merge): shape
    ``(*shape, 5)``, float64."""
    stats = np.zeros((*shape, len(FIELDS)), np.float64)
    stats[..., MAX] = -np.inf
    return stats


def merge_row_statistics(into: np.ndarray, piece: np.ndarray) -> np.ndarray:
    """Merges `piece` into `into` row by row, in place, and returns `into`. Both are C-contiguous
    float64 arrays of the same shape ``(..., 5)``."""
    _core.merge_row_statistics(into, piece)
    return into


def row_logsumexp(stats: np.ndarray) -> np.ndarray:
    """The logsumexp of each row, ``max + log(sum_exp)``, float64: -inf for a row of -inf logits,
    NaN for a row holding NaN or +inf (what a cross-entropy of that row is)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return stats[..., MAX] + np.log(stats[..., SUM_EXP])
