"""Drop-in modules for torch.nn's losses and softmax layers, computed by fastloss.

Constructor arguments are torch.nn's (the deprecated ``size_average`` and ``reduce`` raise a
TypeError); class weights are registered as buffers, as torch.nn registers them, so that
``.to()``, ``state_dict()`` and friends see them.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from . import functional as F
from .functional import _refuse_legacy

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CosineEmbeddingLoss",
    "CrossEntropyLoss",
    "DistillationLoss",
    "Entropy",
    "KLDivLoss",
    "LinearCrossEntropyLoss",
    "LogSoftmax",
    "NLLLoss",
    "SigmoidFocalLoss",
    "Softmax",
]

Tensor = torch.Tensor


class _Loss(torch.nn.Module):
    def __init__(
        self, size_average: None = None, reduce: None = None, reduction: str = "mean"
    ) -> None:
        super().__init__()
        _refuse_legacy(type(self).__name__, size_average, reduce)
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """``torch.nn.CrossEntropyLoss`` (plus ``dim=``, ``z_loss=`` and ``softcap=``, as
    `fastloss.torch.cross_entropy`)."""

    def __init__(
        self,
        weight: Optional[Tensor] = None,
        size_average: None = None,
        ignore_index: int = -100,
        reduce: None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        dim: Optional[int] = None,
        z_loss: float = 0.0,
        softcap: Optional[float] = None,
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.dim = dim
        self.z_loss = z_loss
        self.softcap = softcap

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            dim=self.dim,
            z_loss=self.z_loss,
            softcap=self.softcap,
        )


class NLLLoss(_Loss):
    """``torch.nn.NLLLoss`` (plus ``dim=``)."""

    def __init__(
        self,
        weight: Optional[Tensor] = None,
        size_average: None = None,
        ignore_index: int = -100,
        reduce: None = None,
        reduction: str = "mean",
        *,
        dim: Optional[int] = None,
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.dim = dim

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.nll_loss(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            dim=self.dim,
        )


class KLDivLoss(_Loss):
    """``torch.nn.KLDivLoss``."""

    def __init__(
        self,
        size_average: None = None,
        reduce: None = None,
        reduction: str = "mean",
        log_target: bool = False,
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class BCELoss(_Loss):
    """``torch.nn.BCELoss``."""

    def __init__(
        self,
        weight: Optional[Tensor] = None,
        size_average: None = None,
        reduce: None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """``torch.nn.BCEWithLogitsLoss``."""

    def __init__(
        self,
        weight: Optional[Tensor] = None,
        size_average: None = None,
        reduce: None = None,
        reduction: str = "mean",
        pos_weight: Optional[Tensor] = None,
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(
            input, target, weight=self.weight, pos_weight=self.pos_weight, reduction=self.reduction
        )


class CosineEmbeddingLoss(_Loss):
    """``torch.nn.CosineEmbeddingLoss``."""

    def __init__(
        self,
        margin: float = 0.0,
        size_average: None = None,
        reduce: None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def forward(self, input1: Tensor, input2: Tensor, target: Tensor) -> Tensor:
        return F.cosine_embedding_loss(
            input1, input2, target, margin=self.margin, reduction=self.reduction
        )


class SigmoidFocalLoss(_Loss):
    """`fastloss.torch.sigmoid_focal_loss` (torchvision's) as a module, with its defaults."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2, reduction: str = "none") -> None:
        super().__init__(reduction=reduction)
        self.alpha = alpha
        self.gamma = gamma

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.sigmoid_focal_loss(
            input, target, alpha=self.alpha, gamma=self.gamma, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}, reduction={self.reduction!r}"


class DistillationLoss(_Loss):
    """`fastloss.torch.distillation_loss` as a module: ``(student_logits, teacher_logits,
    target)``, or a top-k teacher per call: ``(student_logits, None, target,
    teacher_topk=(indices, logprobs))``, with ``topk_residual`` among the options."""

    def __init__(
        self,
        temperature: float = 2.0,
        alpha: float = 0.5,
        reduction: str = "mean",
        weight: Optional[Tensor] = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        dim: Optional[int] = None,
        divergence: str = "kl",
        beta: float = 0.5,
        z_loss: float = 0.0,
        softcap: Optional[float] = None,
        topk_residual: str = "renormalize",
    ) -> None:
        super().__init__(reduction=reduction)
        self.temperature = temperature
        self.alpha = alpha
        self.divergence = divergence
        self.topk_residual = topk_residual
        self.beta = beta
        self.z_loss = z_loss
        self.softcap = softcap
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.dim = dim

    def forward(
        self,
        student_logits: Tensor,
        teacher_logits: Optional[Tensor],
        target: Tensor,
        teacher_topk: Optional[tuple[Tensor, Tensor]] = None,
    ) -> Tensor:
        return F.distillation_loss(
            student_logits,
            teacher_logits,
            target,
            teacher_topk=teacher_topk,
            topk_residual=self.topk_residual,
            temperature=self.temperature,
            alpha=self.alpha,
            reduction=self.reduction,
            weight=self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            dim=self.dim,
            divergence=self.divergence,
            beta=self.beta,
            z_loss=self.z_loss,
            softcap=self.softcap,
        )


class LinearCrossEntropyLoss(_Loss):
    """``torch.nn.LinearCrossEntropyLoss``: a classifier head ``self.linear`` (a
    ``torch.nn.Linear(in_features, num_classes, bias=bias)``) and the cross-entropy of its
    logits, by `fastloss.torch.linear_cross_entropy` (which never holds them); the parameters
    and buffers have torch's names, so state dicts load either way. Plus ``z_loss=``,
    ``softcap=`` and ``chunk_size=``; ``out_features`` must be ``()`` (no K-dimensional loss)."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        out_features: tuple[int, ...] = (),
        bias: bool = False,
        device: Any = None,
        dtype: Optional[torch.dtype] = None,
        reduction: str = "mean",
        weight: Optional[Tensor] = None,
        ignore_index: Optional[int] = None,
        label_smoothing: float = 0.0,
        options: Any = None,
        z_loss: float = 0.0,
        softcap: Optional[float] = None,
        chunk_size: Optional[int] = None,
    ) -> None:
        if tuple(out_features) != ():
            raise ValueError(
                "fastloss.torch.nn.LinearCrossEntropyLoss: out_features must be () (fastloss "
                f"has no K-dimensional linear_cross_entropy), got {out_features!r}"
            )
        super().__init__(reduction=reduction)
        self.register_buffer("weight", weight)
        self.num_classes = num_classes
        self.out_features = ()
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.options = options
        self.z_loss = z_loss
        self.softcap = softcap
        self.chunk_size = chunk_size
        self.linear = torch.nn.Linear(
            in_features, num_classes, bias=bias, device=device, dtype=dtype
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.linear_cross_entropy(
            input,
            self.linear.weight,
            target,
            linear_bias=self.linear.bias,
            weight=self.weight,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            options=self.options,
            z_loss=self.z_loss,
            softcap=self.softcap,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        # torch's fields, then fastloss's
        return (
            f"in_features={self.linear.in_features}, num_classes={self.num_classes}, "
            f"out_features=(), bias={self.linear.bias is not None}, reduction={self.reduction}, "
            f"ignore_index={self.ignore_index}, label_smoothing={self.label_smoothing}, "
            f"options={self.options}, z_loss={self.z_loss}, softcap={self.softcap}, "
            f"chunk_size={self.chunk_size}"
        )


class Softmax(torch.nn.Module):
    """``torch.nn.Softmax(dim)``."""

    def __init__(self, dim: Optional[int] = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        return F.softmax(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """``torch.nn.LogSoftmax(dim)``."""

    def forward(self, input: Tensor) -> Tensor:
        return F.log_softmax(input, self.dim)


class Entropy(Softmax):
    """`fastloss.torch.entropy` as a module (``dim`` defaults to -1)."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__(dim)

    def forward(self, input: Tensor) -> Tensor:
        return F.entropy(input, self.dim)
