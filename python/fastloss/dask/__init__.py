"""fastloss on dask arrays: the NumPy API's functions, lazily, over arrays chunked along
positions (rows) and along the class axis, in any combination.

    import fastloss.dask as fld
    fld.cross_entropy(logits, target).compute()    # logits: a dask array, e.g. from Zarr

Reduced losses are 0-d dask arrays; nothing runs before ``.compute()``. Blocks holding whole
rows run the NumPy functions themselves (``return_grad=True``: the gradient in the same pass,
chunked as the input); class-axis chunks merge exact per-row statistics
(`fastloss._row_statistics`, as linear_cross_entropy's vocabulary tiles do) through
``dask.array.reduction``. Reductions over positions are float64 sums divided by PyTorch's
denominators. ``linear_cross_entropy`` is vocabulary-parallel: hidden states chunked over rows,
the classifier's weight over the vocabulary. Needs the ``dask`` extra:
``pip install "fastloss[dask]"``.
"""

from __future__ import annotations

try:
    import dask.array  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "fastloss.dask needs dask[array] (and distributed for clusters); install the extra "
        "with `pip install \"fastloss[dask]\"`"
    ) from err

from .._linear_cross_entropy import LinearLossAndGrad  # (fastloss's: the results' type)
from ._api import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    distillation_loss,
    entropy,
    kl_div,
    log_softmax,
    logsumexp,
    nll_loss,
    softmax,
)
from ._linear import linear_cross_entropy

__all__ = [
    "LinearLossAndGrad",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "distillation_loss",
    "entropy",
    "kl_div",
    "linear_cross_entropy",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "softmax",
]
