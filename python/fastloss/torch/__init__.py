"""fastloss for PyTorch: ``import fastloss.torch as flt``.

``flt.cross_entropy(logits, target).backward()`` works as ``torch.nn.functional``'s does, with
the gradient computed by fastloss's fused kernels in the forward pass (backward only scales
it; the last large gradient's buffer is kept for the next step's, see ``empty_cache``). Every
function is a ``torch.library.custom_op`` in the "fastloss" namespace, with a fake
implementation, so ``torch.compile(..., fullgraph=True)`` traces through it. CPU tensors are
read as NumPy views, without a copy. ``flt.nn`` holds the matching modules.

Importing ``fastloss`` alone never imports torch; this module does.
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised by the optional-import test
    raise ImportError(
        "fastloss.torch needs PyTorch (pip install torch); the NumPy API (import fastloss) does not"
    ) from err

from . import nn
from ._gradient_pool import empty_cache
from .functional import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cosine_embedding_loss,
    cross_entropy,
    distillation_loss,
    entropy,
    kl_div,
    linear_cross_entropy,
    log_softmax,
    logsumexp,
    nll_loss,
    sigmoid_focal_loss,
    softmax,
)

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cosine_embedding_loss",
    "cross_entropy",
    "distillation_loss",
    "empty_cache",
    "entropy",
    "kl_div",
    "linear_cross_entropy",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "nn",
    "sigmoid_focal_loss",
    "softmax",
]
