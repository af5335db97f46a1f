"""The functions as callable objects, for code written against torch.nn modules."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ._cosine_embedding import cosine_embedding_loss
from ._distillation import distillation_loss
from ._elementwise_losses import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    jensen_shannon_divergence,
    kl_div,
    sigmoid_focal_loss,
)
from ._gradient import LossValue
from ._linear_cross_entropy import linear_cross_entropy
from ._losses import cross_entropy, nll_loss
from ._softmax import log_softmax, softmax

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CosineEmbeddingLoss",
    "CrossEntropyLoss",
    "DistillationLoss",
    "JSDLoss",
    "KLDivLoss",
    "LinearCrossEntropyLoss",
    "LogSoftmax",
    "NLLLoss",
    "SigmoidFocalLoss",
    "Softmax",
]


class CrossEntropyLoss:
    """``CrossEntropyLoss(weight=..., reduction=...)(input, target)``, as ``torch.nn.CrossEntropyLoss``."""

    def __init__(
        self,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        axis: Optional[int] = None,
        z_loss: float = 0.0,
        softcap: Optional[float] = None,
    ) -> None:
        self.weight = weight
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.axis = axis
        self.z_loss = z_loss
        self.softcap = softcap

    def __call__(self, input: Any, target: Any) -> LossValue:
        return cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            axis=self.axis,
            z_loss=self.z_loss,
            softcap=self.softcap,
        )

    def __repr__(self) -> str:
        return (
            f"CrossEntropyLoss(ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
            f"label_smoothing={self.label_smoothing}, axis={self.axis}"
            f"{_cross_entropy_options(self.z_loss, self.softcap)})"
        )


class LinearCrossEntropyLoss:
    """``LinearCrossEntropyLoss(weight=..., reduction=...)(input, linear_weight, target,
    linear_bias=None)``: `linear_cross_entropy` as a callable object."""

    def __init__(
        self,
        weight: Any = None,
        ignore_index: Optional[int] = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        chunk_size: Any = None,
        z_loss: float = 0.0,
        softcap: Optional[float] = None,
    ) -> None:
        self.weight = weight
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.chunk_size = chunk_size
        self.z_loss = z_loss
        self.softcap = softcap

    def __call__(
        self, input: Any, linear_weight: Any, target: Any, linear_bias: Any = None
    ) -> LossValue:
        return linear_cross_entropy(
            input,
            linear_weight,
            target,
            linear_bias=linear_bias,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            chunk_size=self.chunk_size,
            z_loss=self.z_loss,
            softcap=self.softcap,
        )

    def __repr__(self) -> str:
        return (
            f"LinearCrossEntropyLoss(ignore_index={self.ignore_index}, "
            f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}, "
            f"chunk_size={self.chunk_size}{_cross_entropy_options(self.z_loss, self.softcap)})"
        )


def _cross_entropy_options(z_loss: float, softcap: Optional[float]) -> str:
    """The opt-in options of a repr, shown only when set."""
    return (f", z_loss={z_loss}" if z_loss else "") + (
        f", softcap={softcap}" if softcap is not None else ""
    )


class NLLLoss:
    """``NLLLoss(weight=..., reduction=...)(input, target)``, as ``torch.nn.NLLLoss``."""

    def __init__(
        self,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        axis: Optional[int] = None,
    ) -> None:
        self.weight = weight
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.axis = axis

    def __call__(self, input: Any, target: Any) -> LossValue:
        return nll_loss(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            axis=self.axis,
        )

    def __repr__(self) -> str:
        return f"NLLLoss(ignore_index={self.ignore_index}, reduction={self.reduction!r}, axis={self.axis})"


class DistillationLoss:
    """``DistillationLoss(temperature=..., alpha=...)(student_logits, teacher_logits, target)``.

    The callable form of `distillation_loss` (see there for what each reduction means). A top-k
    teacher is given per call, ``loss(student_logits, None, target, teacher_topk=(indices,
    logprobs))``, its residual rule with the options (``topk_residual``).
    """

    def __init__(
        self,
        temperature: float = 2.0,
        alpha: float = 0.5,
        reduction: str = "mean",
        weight: Any = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        axis: Optional[int] = None,
        divergence: str = "kl",
        beta: float = 0.5,
        z_loss: float = 0.0,
        softcap: Optional[float] = None,
        topk_residual: str = "renormalize",
    ) -> None:
        self.temperature = temperature
        self.alpha = alpha
        self.divergence = divergence
        self.topk_residual = topk_residual
        self.beta = beta
        self.z_loss = z_loss
        self.softcap = softcap
        self.reduction = reduction
        self.weight = weight
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.axis = axis

    def __call__(
        self, student_logits: Any, teacher_logits: Any, target: Any, *, teacher_topk: Any = None
    ) -> LossValue:
        return distillation_loss(
            student_logits,
            teacher_logits,
            target,
            teacher_topk=teacher_topk,
            topk_residual=self.topk_residual,
            temperature=self.temperature,
            alpha=self.alpha,
            divergence=self.divergence,
            beta=self.beta,
            reduction=self.reduction,
            weight=self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            z_loss=self.z_loss,
            softcap=self.softcap,
            axis=self.axis,
        )

    def __repr__(self) -> str:
        return (
            f"DistillationLoss(temperature={self.temperature}, alpha={self.alpha}, "
            f"divergence={self.divergence!r}, beta={self.beta}, "
            f"reduction={self.reduction!r}, ignore_index={self.ignore_index}, "
            f"label_smoothing={self.label_smoothing}, axis={self.axis}"
            f"{_cross_entropy_options(self.z_loss, self.softcap)}{self._residual_option()})"
        )

    def _residual_option(self) -> str:
        default = self.topk_residual == "renormalize"
        return "" if default else f", topk_residual={self.topk_residual!r}"


class CosineEmbeddingLoss:
    """``CosineEmbeddingLoss(margin=..., reduction=...)(x1, x2, target)``, as in torch.nn."""

    def __init__(self, margin: float = 0.0, reduction: str = "mean") -> None:
        self.margin = margin
        self.reduction = reduction

    def __call__(self, x1: Any, x2: Any, target: Any) -> LossValue:
        return cosine_embedding_loss(x1, x2, target, margin=self.margin, reduction=self.reduction)

    def __repr__(self) -> str:
        return f"CosineEmbeddingLoss(margin={self.margin}, reduction={self.reduction!r})"


class KLDivLoss:
    """``KLDivLoss(reduction=..., log_target=...)(input, target)``, as ``torch.nn.KLDivLoss``."""

    def __init__(self, reduction: str = "mean", log_target: bool = False) -> None:
        self.reduction = reduction
        self.log_target = log_target

    def __call__(self, input: Any, target: Any) -> LossValue:
        return kl_div(input, target, reduction=self.reduction, log_target=self.log_target)

    def __repr__(self) -> str:
        return f"KLDivLoss(reduction={self.reduction!r}, log_target={self.log_target})"


class JSDLoss:
    """``JSDLoss(beta=..., reduction=..., log_target=...)(input, target)``: the callable form of
    `jensen_shannon_divergence` (Liger's ``LigerJSD``, input = log Q, target = P)."""

    def __init__(
        self, beta: float = 0.5, reduction: str = "mean", log_target: bool = False, axis: int = -1
    ) -> None:
        self.beta = beta
        self.reduction = reduction
        self.log_target = log_target
        self.axis = axis

    def __call__(self, input: Any, target: Any) -> LossValue:
        return jensen_shannon_divergence(
            input, target, beta=self.beta, reduction=self.reduction, log_target=self.log_target,
            axis=self.axis,
        )

    def __repr__(self) -> str:
        return (
            f"JSDLoss(beta={self.beta}, reduction={self.reduction!r}, "
            f"log_target={self.log_target}, axis={self.axis})"
        )


class BCELoss:
    """``BCELoss(weight=..., reduction=...)(input, target)``, as ``torch.nn.BCELoss``."""

    def __init__(self, weight: Any = None, reduction: str = "mean") -> None:
        self.weight = weight
        self.reduction = reduction

    def __call__(self, input: Any, target: Any) -> LossValue:
        return binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)

    def __repr__(self) -> str:
        return f"BCELoss(reduction={self.reduction!r})"


class BCEWithLogitsLoss:
    """``BCEWithLogitsLoss(weight=..., pos_weight=..., reduction=...)(input, target)``, as
    ``torch.nn.BCEWithLogitsLoss``."""

    def __init__(self, weight: Any = None, reduction: str = "mean", pos_weight: Any = None) -> None:
        self.weight = weight
        self.reduction = reduction
        self.pos_weight = pos_weight

    def __call__(self, input: Any, target: Any) -> LossValue:
        return binary_cross_entropy_with_logits(
            input, target, weight=self.weight, pos_weight=self.pos_weight, reduction=self.reduction
        )

    def __repr__(self) -> str:
        return f"BCEWithLogitsLoss(reduction={self.reduction!r})"


class SigmoidFocalLoss:
    """``SigmoidFocalLoss(alpha=..., gamma=..., reduction=...)(input, target)``: torchvision's
    ``sigmoid_focal_loss`` as a callable object, with its defaults (see `sigmoid_focal_loss`)."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "none") -> None:
        self.alpha = alpha
        self.gamma = gamma
        self.reduction = reduction

    def __call__(self, input: Any, target: Any) -> LossValue:
        return sigmoid_focal_loss(
            input, target, alpha=self.alpha, gamma=self.gamma, reduction=self.reduction
        )

    def __repr__(self) -> str:
        return (
            f"SigmoidFocalLoss(alpha={self.alpha}, gamma={self.gamma}, "
            f"reduction={self.reduction!r})"
        )


class Softmax:
    """``Softmax(axis)(x)``, as ``torch.nn.Softmax(dim)``."""

    def __init__(self, axis: int = -1) -> None:
        self.axis = axis

    def __call__(self, x: Any) -> np.ndarray:
        return softmax(x, self.axis)

    def __repr__(self) -> str:
        return f"Softmax(axis={self.axis})"


class LogSoftmax:
    """``LogSoftmax(axis)(x)``, as ``torch.nn.LogSoftmax(dim)``."""

    def __init__(self, axis: int = -1) -> None:
        self.axis = axis

    def __call__(self, x: Any) -> np.ndarray:
        return log_softmax(x, self.axis)

    def __repr__(self) -> str:
        return f"LogSoftmax(axis={self.axis})"
