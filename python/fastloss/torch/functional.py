"""torch.nn.functional's losses and softmax family, computed by fastloss's fused kernels.

Same names, signatures and semantics as ``torch.nn.functional`` (tensors in, tensors out,
autograd and torch.compile work). Differences: the deprecated ``size_average`` and ``reduce``
arguments raise a TypeError (use ``reduction=``); the losses over a class axis take an opt-in
``dim=`` (default: torch's rule, 1 for two or more dims) so that (B, T, V) logits go in as they
are; every floating argument must have the input's dtype; tensors must be on the CPU.
"""

from __future__ import annotations

import operator
from typing import Any, Optional, Sequence, Union

import torch

from ._convert import check_tensor
from ._losses import LOSSES
from ._softmax_ops import entropy_op, log_softmax_op, logsumexp_op, softmax_op

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cosine_embedding_loss",
    "cross_entropy",
    "distillation_loss",
    "entropy",
    "kl_div",
    "linear_cross_entropy",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "sigmoid_focal_loss",
    "softmax",
]

Tensor = torch.Tensor


def _refuse_legacy(function: str, size_average: Any, reduce: Any) -> None:
    if size_average is not None or reduce is not None:
        raise TypeError(
            f"fastloss.torch.{function}: size_average and reduce are deprecated in torch and "
            "not supported here; use reduction='mean', 'sum' or 'none'"
        )


def cross_entropy(
    input: Tensor,
    target: Tensor,
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
) -> Tensor:
    """``torch.nn.functional.cross_entropy``: class indices or probabilities as target.

    ``dim`` (fastloss's addition) is the class dim; ``dim=-1`` takes (B, T, V) logits with
    (B, T) targets without a transpose. The gradient with respect to `input` is computed in
    the forward pass, with the loss. fastloss's opt-in options of `fastloss.cross_entropy`:
    ``z_loss`` adds ``z_loss * lse**2`` per non-ignored position (Liger's reduction) and
    ``softcap`` takes the loss of ``softcap * tanh(input / softcap)``, both in the same pass.
    """
    _refuse_legacy("cross_entropy", size_average, reduce)
    return LOSSES["cross_entropy"](
        input=input,
        target=target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        axis=dim,
        z_loss=z_loss,
        softcap=softcap,
    )


def linear_cross_entropy(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    *,
    linear_bias: Optional[Tensor] = None,
    weight: Optional[Tensor] = None,
    reduction: str = "mean",
    ignore_index: Optional[int] = None,
    label_smoothing: float = 0.0,
    options: Any = None,
    z_loss: float = 0.0,
    softcap: Optional[float] = None,
    chunk_size: Optional[int] = None,
) -> Tensor:
    """``torch.nn.functional.linear_cross_entropy``: ``cross_entropy(input @ linear_weight.T +
    linear_bias, target, ...)`` without ever holding the logits (``fastloss.linear_cross_entropy``
    computes them a strip of rows at a time).

    The gradients with respect to `input`, `linear_weight` and `linear_bias` are computed in
    the forward pass, in the same pass as the loss. Beyond torch's: `input` may be ``(..., d)``
    with any leading dims (``(B, T, d)`` hidden states with ``(B, T)`` targets; torch takes
    ``(d,)`` or ``(N, d)``); ``z_loss`` (an opt-in addition) adds ``z_loss * lse**2`` per
    non-ignored position, reduced as `cross_entropy`'s, and ``softcap`` caps the logits,
    ``softcap * tanh(logits / softcap)``, each tile as it is written; ``chunk_size`` sets the rows per strip
    (by default, as many as fit in 64 MB of logits). Not supported: a K-dimensional
    `linear_weight` ``(C, d_1, ..., d_K, d)``. `options` (torch's chunking strategy, a
    ``torch.nn.LinearCrossEntropyOptions``) is accepted and not used: fastloss always works in
    strips, accumulates float16/bfloat16 gradients in float32, and supports every option.
    """
    if options is not None:
        expected = getattr(torch.nn, "LinearCrossEntropyOptions", None)
        if expected is None or not isinstance(options, expected):
            raise TypeError(
                "fastloss.torch.linear_cross_entropy: options must be None or a "
                f"torch.nn.LinearCrossEntropyOptions, got {type(options).__name__}"
            )
    probabilities = isinstance(target, torch.Tensor) and target.is_floating_point()
    if probabilities and ignore_index is not None:
        raise ValueError(
            "fastloss.torch.linear_cross_entropy: ignore_index must be None when target holds "
            f"class probabilities (a floating target), got {ignore_index!r}; as torch, which "
            "ignores no position of such a target"
        )
    return LOSSES["linear_cross_entropy"](
        input=input,
        linear_weight=linear_weight,
        target=target,
        linear_bias=linear_bias,
        weight=weight,
        ignore_index=-100 if ignore_index is None else ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        chunk_size=chunk_size,
    )


def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Optional[Tensor] = None,
    size_average: None = None,
    ignore_index: int = -100,
    reduce: None = None,
    reduction: str = "mean",
    *,
    dim: Optional[int] = None,
) -> Tensor:
    """``torch.nn.functional.nll_loss`` (``dim`` as in `cross_entropy`)."""
    _refuse_legacy("nll_loss", size_average, reduce)
    return LOSSES["nll_loss"](
        input=input,
        target=target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        axis=dim,
    )


def kl_div(
    input: Tensor,
    target: Tensor,
    size_average: None = None,
    reduce: None = None,
    reduction: str = "mean",
    log_target: bool = False,
) -> Tensor:
    """``torch.nn.functional.kl_div`` (``reduction="mean"`` warns as torch does: use
    ``"batchmean"`` for the KL divergence). `target` gets no gradient."""
    _refuse_legacy("kl_div", size_average, reduce)
    return LOSSES["kl_div"](input=input, target=target, reduction=reduction, log_target=log_target)


def binary_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Optional[Tensor] = None,
    size_average: None = None,
    reduce: None = None,
    reduction: str = "mean",
) -> Tensor:
    """``torch.nn.functional.binary_cross_entropy`` (input and target in [0, 1], else a
    ValueError)."""
    _refuse_legacy("binary_cross_entropy", size_average, reduce)
    return LOSSES["binary_cross_entropy"](
        input=input, target=target, weight=weight, reduction=reduction
    )


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Optional[Tensor] = None,
    size_average: None = None,
    reduce: None = None,
    reduction: str = "mean",
    pos_weight: Optional[Tensor] = None,
) -> Tensor:
    """``torch.nn.functional.binary_cross_entropy_with_logits``."""
    _refuse_legacy("binary_cross_entropy_with_logits", size_average, reduce)
    return LOSSES["binary_cross_entropy_with_logits"](
        input=input, target=target, weight=weight, pos_weight=pos_weight, reduction=reduction
    )


def cosine_embedding_loss(
    input1: Tensor,
    input2: Tensor,
    target: Tensor,
    margin: float = 0.0,
    size_average: None = None,
    reduce: None = None,
    reduction: str = "mean",
) -> Tensor:
    """``torch.nn.functional.cosine_embedding_loss``; both inputs get gradients."""
    _refuse_legacy("cosine_embedding_loss", size_average, reduce)
    return LOSSES["cosine_embedding_loss"](
        x1=input1, x2=input2, target=target, margin=margin, reduction=reduction
    )


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor,
    *,
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
    teacher_topk: Optional[tuple[Tensor, Tensor]] = None,
    topk_residual: str = "renormalize",
) -> Tensor:
    """fastloss's knowledge-distillation loss (see ``fastloss.distillation_loss``):
    ``alpha * CE(student, target) + (1 - alpha) * T**2 * KL(teacher_T || student_T)``, or
    another ``divergence`` ("reverse_kl", "jsd" with ``beta``) in place of KL; ``z_loss`` adds
    the z-loss to the hard term CE (``cross_entropy``'s, Liger's reduction); ``softcap`` caps the
    student's logits, ``softcap * tanh(s / softcap)``, before both terms (not the teacher's).
    ``teacher_topk=(indices, logprobs)`` with ``teacher_logits=None`` gives the teacher as its
    top-k classes and their log-probabilities at the temperature, with ``topk_residual``
    ("renormalize" or "tail") for its missing mass.
    The teacher gets no gradient (detach it; a teacher that requires grad is an error)."""
    options = dict(
        target=target,
        weight=weight,
        temperature=temperature,
        alpha=alpha,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        axis=dim,
        divergence=divergence,
        beta=float(beta),
        z_loss=float(z_loss),
        softcap=softcap,
    )
    if teacher_topk is None:
        return LOSSES["distillation_loss"](
            student_logits=student_logits, teacher_logits=teacher_logits, **options
        )
    if teacher_logits is not None or not isinstance(teacher_topk, (tuple, list)) or len(
        teacher_topk
    ) != 2:
        raise ValueError(
            "fastloss.torch.distillation_loss: give teacher_topk=(indices, logprobs) with "
            "teacher_logits=None"
        )
    return LOSSES["distillation_loss_topk"](
        student_logits=student_logits,
        teacher_indices=teacher_topk[0],
        teacher_logprobs=teacher_topk[1],
        topk_residual=topk_residual,
        **options,
    )


def sigmoid_focal_loss(
    inputs: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2,
    reduction: str = "none",
) -> Tensor:
    """``torchvision.ops.sigmoid_focal_loss`` (same signature and defaults), see
    ``fastloss.sigmoid_focal_loss``."""
    return LOSSES["sigmoid_focal_loss"](
        input=inputs, target=targets, alpha=alpha, gamma=gamma, reduction=reduction
    )


def _softmax_dim(function: str, input: Any, dim: Any) -> int:
    check_tensor(input, "input", function)
    if dim is None:
        raise TypeError(
            f"fastloss.torch.{function}: dim must be given (torch's implicit choice of dim is "
            "deprecated)"
        )
    try:
        return int(dim.__index__())
    except AttributeError:
        raise TypeError(
            f"fastloss.torch.{function}: dim must be an integer, got {type(dim).__name__}"
        ) from None


def softmax(
    input: Tensor,
    dim: Optional[int] = None,
    _stacklevel: int = 3,
    dtype: Optional[torch.dtype] = None,
) -> Tensor:
    """``torch.nn.functional.softmax``; ``dtype`` casts the input first, as torch's."""
    d = _softmax_dim("softmax", input, dim)
    return softmax_op(input if dtype is None else input.to(dtype), d)


def log_softmax(
    input: Tensor,
    dim: Optional[int] = None,
    _stacklevel: int = 3,
    dtype: Optional[torch.dtype] = None,
) -> Tensor:
    """``torch.nn.functional.log_softmax``; ``dtype`` casts the input first, as torch's."""
    d = _softmax_dim("log_softmax", input, dim)
    return log_softmax_op(input if dtype is None else input.to(dtype), d)


def logsumexp(input: Tensor, dim: Union[int, Sequence[int]], keepdim: bool = False) -> Tensor:
    """``torch.logsumexp`` over one dim or a sequence of dims."""
    check_tensor(input, "input", "logsumexp")
    dims = list(dim) if isinstance(dim, (tuple, list)) else [dim]
    try:
        dims = [operator.index(d) for d in dims]
    except TypeError:
        raise TypeError(
            f"fastloss.torch.logsumexp: dim must be an int or a sequence of ints, got {dim!r}"
        ) from None
    return logsumexp_op(input, dims, bool(keepdim))


def entropy(logits: Tensor, dim: int = -1) -> Tensor:
    """Shannon entropy (nats) of softmax(logits) along `dim`, as
    ``torch.distributions.Categorical(logits=logits).entropy()`` for ``dim=-1``."""
    d = _softmax_dim("entropy", logits, dim)
    return entropy_op(logits, d)
