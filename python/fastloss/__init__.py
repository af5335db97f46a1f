"""fastloss: numerically stable softmax-family functions and losses for NumPy arrays.

C++ SIMD/OpenMP kernels, chosen at run time for the CPU, with PyTorch's exact semantics.
"""

from __future__ import annotations

try:
    from . import _core
except ImportError as err:  # pragma: no cover - only on a broken install
    msg = "fastloss could not import its compiled module fastloss._core"
    if hasattr(err, "add_note"):
        err.add_note(f"{msg}; reinstall with `pip install .` from the source tree.")
    raise

from ._config import (
    available_capabilities,
    cpu_capability,
    get_num_threads,
    set_num_threads,
    show_config,
)
from ._cosine_embedding import cosine_embedding_loss
from ._distillation import distillation_loss
from ._elementwise_losses import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    jensen_shannon_divergence,
    kl_div,
    sigmoid_focal_loss,
)
from ._entropy import entropy
from ._gradient import LossAndGrad, LossAndLse, LossLseAndGrad
from ._linear_cross_entropy import LinearLossAndGrad, LinearLossLseAndGrad, linear_cross_entropy
from ._losses import cross_entropy, nll_loss
from ._modules import (
    BCELoss,
    BCEWithLogitsLoss,
    CosineEmbeddingLoss,
    CrossEntropyLoss,
    DistillationLoss,
    JSDLoss,
    KLDivLoss,
    LinearCrossEntropyLoss,
    LogSoftmax,
    NLLLoss,
    SigmoidFocalLoss,
    Softmax,
)
from ._softmax import log_softmax, log_softmax_backward, logsumexp, softmax, softmax_backward

__version__: str = _core.__version__

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CosineEmbeddingLoss",
    "CrossEntropyLoss",
    "DistillationLoss",
    "JSDLoss",
    "KLDivLoss",
    "LinearCrossEntropyLoss",
    "LinearLossAndGrad",
    "LinearLossLseAndGrad",
    "LogSoftmax",
    "LossAndGrad",
    "LossAndLse",
    "LossLseAndGrad",
    "NLLLoss",
    "SigmoidFocalLoss",
    "Softmax",
    "__version__",
    "available_capabilities",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cosine_embedding_loss",
    "cpu_capability",
    "cross_entropy",
    "distillation_loss",
    "entropy",
    "get_num_threads",
    "jensen_shannon_divergence",
    "kl_div",
    "linear_cross_entropy",
    "log_softmax",
    "log_softmax_backward",
    "logsumexp",
    "nll_loss",
    "set_num_threads",
    "show_config",
    "sigmoid_focal_loss",
    "softmax",
    "softmax_backward",
]


def __dir__() -> list[str]:
    return __all__
