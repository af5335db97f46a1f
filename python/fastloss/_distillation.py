"""distillation_loss: the knowledge-distillation loss as PyTorch users write it, one fused pass."""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from . import _core
from ._class_losses import (
    check_label_smoothing,
    check_softcap,
    check_z_loss,
    class_axis,
    class_target,
    class_weight,
    ignore_index_value,
    in_result_dtype,
    probabilities_or_none,
    run_class_loss,
)
from ._gradient import LossAndGrad, LossValue, check_gradient_options, loss_value
from ._topk_distillation import check_topk_residual, topk_distillation_loss
from ._validation import as_float_array, check_reduction, promote_dtypes, real_number

__all__ = ["distillation_loss"]

DIVERGENCES = ("kl", "reverse_kl", "jsd")


def check_divergence(divergence: Any) -> str:
    """The divergence's name, or ValueError listing the choices."""
    if not isinstance(divergence, str) or divergence not in DIVERGENCES:
        raise ValueError(
            f"divergence must be one of {', '.join(map(repr, DIVERGENCES))}, got {divergence!r}"
        )
    return divergence


def check_beta(beta: Any) -> float:
    """beta as a float in [0, 1], or ValueError naming it (NaN and infinities included)."""
    b = real_number(beta, "beta")
    if not 0.0 <= b <= 1.0:
        raise ValueError(f"beta must be between 0.0 and 1.0, got {beta!r}")
    return b


def distillation_loss(
    student_logits: Any,
    teacher_logits: Any,
    target: Any,
    *,
    temperature: float = 2.0,
    alpha: float = 0.5,
    divergence: str = "kl",
    beta: float = 0.5,
    reduction: str = "mean",
    weight: Any = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: Optional[float] = None,
    teacher_topk: Any = None,
    topk_residual: str = "renormalize",
    axis: int | None = None,
    return_grad: bool = False,
    grad_output: Any = None,
    grad_out: np.ndarray | None = None,
) -> LossValue | LossAndGrad:
    """Knowledge-distillation loss (Hinton et al.), hard cross-entropy plus tempered KL.

    ``L = alpha * CE(s, target) + (1 - alpha) * T**2 * D(P, Q)`` for student logits ``s``,
    teacher logits ``t`` (same shape) and temperature ``T``, with ``P = softmax(t / T)`` (the
    teacher) and ``Q = softmax(s / T)`` (the student). ``divergence`` picks the soft term ``D``:

    - ``"kl"`` (default): ``KL(P || Q) = sum P (log P - log Q)``, the forward KL below.
    - ``"reverse_kl"``: ``KL(Q || P) = sum Q (log Q - log P)``.
    - ``"jsd"``: the generalized Jensen-Shannon divergence of Liger-Kernel's ``LigerJSD``,
      ``beta * KL(P || M) + (1 - beta) * KL(Q || M)`` with ``M = beta * P + (1 - beta) * Q``.
      As in Liger, ``beta = 0`` gives the forward ``KL(P || Q)`` and ``beta = 1`` the reverse
      ``KL(Q || P)`` (the formula's limits would be 0); they are computed as ``"kl"`` and
      ``"reverse_kl"``, bit for bit. ``beta=0.5`` is the symmetric JSD. ``beta`` is used by
      ``"jsd"`` only. Unlike Liger's distillation losses, T**2 scales every divergence.

    ``reduction`` says how the two terms are reduced over positions (the input's shape
    without the class axis); every divergence is reduced as KL is below:

    - ``"mean"`` (default): CE is `cross_entropy`'s mean (weighted by the non-ignored targets'
      weights; over positions for probability targets) and KL is ``kl_div``'s
      ``"batchmean"``, the sum over every position divided by ``student_logits.shape[0]``.
      This equals, value for value, ::

          alpha * F.cross_entropy(s, y, weight=w, ignore_index=i, label_smoothing=e)
          + (1 - alpha) * T * T * F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1),
                                           reduction="batchmean")

      (for K-dimensional inputs, too: batchmean divides by the batch size, not the number
      of positions; for a 1-D input ``shape[0]`` is the number of classes, as in PyTorch).
    - ``"sum"``: ``alpha * CE_sum + (1 - alpha) * T**2 * KL_sum``.
    - ``"none"``: per position ``alpha * CE_i + (1 - alpha) * T**2 * KL_i``.

    Positions whose target is ``ignore_index`` have no CE term but keep their KL term (the
    teacher's distribution is still there to match), as in the expression above. ``target``
    takes class indices or probabilities, with `cross_entropy`'s options (``weight``,
    ``ignore_index``, ``label_smoothing``) and class axis (``axis=None``: 1 for inputs with
    two or more dimensions, else 0; ``axis=-1`` for (B, T, V) logits).

    ``z_loss`` >= 0 is `cross_entropy`'s z-loss on the hard term, so that the hard term is
    ``cross_entropy(s, target, z_loss=z_loss, ...)``: ``z_loss * lse**2`` per position whose
    target is not ignored (every position for probability targets), ``lse`` the log-sum-exp of
    the student's logits at temperature 1, reduced as Liger reduces it (``"mean"``: over the
    count of those positions, unweighted) and weighed by ``alpha`` with the cross-entropy.
    The gradient includes it. ``z_loss=0`` gives the plain loss, bit for bit.

    ``softcap`` > 0 soft-caps the student's logits, Gemma 2's final-logit soft-capping (as in
    `cross_entropy`): ``s' = softcap * tanh(s / softcap)`` replaces ``s`` in both terms, so the
    hard term is ``cross_entropy(s', target, ...)`` (its z-loss takes the log-sum-exp of ``s'``)
    and the soft term is the divergence between ``softmax(t / T)`` and ``softmax(s' / T)``. The
    cap is part of the student model's output (Gemma 2, itself distilled, caps its logits so),
    so both terms see the distribution the student actually predicts; the teacher's logits are
    taken as given, not capped (a teacher that caps its logits has done so in the logits it
    produced). The loss is exactly the PyTorch expression above with ``s = softcap *
    torch.tanh(s / softcap)`` applied first, and the gradient is with respect to the raw ``s``,
    through the tanh (``1 - tanh(s / softcap)**2``): a student logit of +-inf, or one far
    beyond the cap, becomes +-softcap with a zero gradient, as in that expression. Fused: the
    capped logits exist one row at a time, never as an array. ``None`` (default): no capping,
    today's results bit for bit.

    ``teacher_topk=(indices, logprobs)`` (with ``teacher_logits=None``) gives the teacher as its
    k most likely classes per position: ``indices`` integers of the student's shape with k
    entries in place of the classes (distinct classes, 1 <= k <= C) and ``logprobs`` the
    teacher's log-probabilities there at temperature T (``log_softmax(t / T)`` gathered at
    ``indices``). The student's ``log_softmax(s / T)`` is taken over its whole row and gathered at
    the k classes; no N x C teacher array exists. ``topk_residual`` says what the teacher's
    missing mass ``1 - sum(exp(logprobs))`` is:

    - ``"renormalize"`` (default): the k probabilities are scaled to sum to 1, and the teacher
      has no mass elsewhere. The loss is then exactly the dense loss against that teacher (teacher
      logits ``T * logprobs`` at ``indices`` and -inf elsewhere): with ``"kl"``, ``sum_j p_j (log
      p_j - log_softmax(s / T)_j)``, and with ``"jsd"`` each class outside the k adds ``-(1 -
      beta) log(1 - beta)`` times the student's probability there. ``"reverse_kl"`` (or ``"jsd"``
      with ``beta=1``) would be +inf whenever k < C (the student has mass where this teacher has
      none), so it is a ValueError there: use ``"tail"``.
    - ``"tail"``: the k probabilities as given, plus one bucket holding the teacher's missing mass
      ``max(0, 1 - sum_j p_j)`` against the student's mass outside the k classes, ``1 - sum_j
      softmax(s / T)_j``; the divergence is taken over the k + 1 buckets.

    With k = C both rules give the dense loss with teacher logits ``T * logprobs``. The hard term
    and every option are as with teacher logits; the gradient is with respect to the student's
    logits, the tail bucket's included. Raises IndexError for an index outside [0, C) and
    ValueError for a repeated index or shapes that do not match.

    -inf logits behave as in the PyTorch expression: a -inf teacher logit adds nothing to KL
    unless the student's logit there is -inf too (NaN, from kl_div's ``0 * -inf``); a -inf
    student logit where the teacher's probability is positive makes KL +inf. ``"reverse_kl"``
    mirrors this (``kl_div(log_softmax(t/T), softmax(s/T))``) with the roles swapped. The JSD
    is finite for any -inf logits short of an all -inf row (``M`` is positive wherever ``P`` or
    ``Q`` is); its expression is ``beta * kl_div(log M, P, "sum") + (1 - beta) * kl_div(log M,
    Q, "sum")`` with ``log M = logsumexp([log beta + log P, log(1 - beta) + log Q])``, each
    reduced as KL, except that a class whose logits are -inf in both adds 0 where that
    expression gives NaN (``0 * -inf``): a class masked in both models is common, and the
    divergence is bounded.

    With ``return_grad=True``, returns ``LossAndGrad(loss, grad)``, the gradient with respect to
    `student_logits` computed in the same pass, exactly as autograd differentiates the
    expression above: ``alpha * dCE/ds + (1 - alpha) * T * (softmax(s/T) - softmax(t/T))``
    with each term divided as its reduction divides it. The soft gradients of the other
    divergences, per class c (``r = log Q - log P``): ``"reverse_kl"``
    ``(1 - alpha) * T * Q_c * (r_c - KL(Q || P))``; ``"jsd"`` ``(1 - alpha) * T * Q_c * (u_c -
    sum_k Q_k u_k)`` with ``u = (1 - beta) * (log Q - log M)``. Where a -inf logit makes
    autograd's gradient NaN (``0 * -inf`` inside ``softmax``'s backward), ours is the finite
    limit. Ignored positions get no CE gradient
    but keep their KL gradient; when every target is ignored under ``"mean"`` the loss is NaN
    (CE's 0/0) and the gradient is the KL part alone. ``grad_output`` and ``grad_out`` as in
    `cross_entropy` (``grad_out`` may be `student_logits` itself).

    Raises ValueError for ``temperature <= 0``, ``alpha`` or ``beta`` outside [0, 1] (NaN
    included), a negative or non-finite ``z_loss``, a ``softcap`` that is not a finite number
    > 0, an unknown ``divergence`` or logits of
    different shapes, and the errors of `cross_entropy` for the target.
    """
    if (
        type(z_loss) is float
        and z_loss == 0.0
        and softcap is None
        and teacher_topk is None
        and topk_residual == "renormalize"
    ):
        result = _core.distillation_loss_common_case(  # see cross_entropy
            student_logits, teacher_logits, target, temperature, alpha, divergence, beta,
            reduction, weight, ignore_index, label_smoothing, axis, return_grad, grad_output,
            grad_out,
        )
        if result is not None:
            return result
    check_gradient_options(return_grad, grad_output, grad_out)
    s = as_float_array(student_logits, "student_logits")
    if (teacher_logits is None) == (teacher_topk is None):
        raise ValueError(
            "give the teacher as exactly one of teacher_logits and teacher_topk=(indices, "
            "logprobs) (teacher_logits=None with teacher_topk)"
        )
    t = as_float_array(teacher_logits, "teacher_logits") if teacher_topk is None else s
    reduction = check_reduction(reduction)
    if s.shape != t.shape:
        raise ValueError(
            f"student_logits has shape {s.shape} but teacher_logits has shape {t.shape}; "
            "they must be equal"
        )
    ax = class_axis(s.ndim, axis)
    temp = real_number(temperature, "temperature")
    if not (temp > 0.0 and math.isfinite(temp)):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    a = real_number(alpha, "alpha")
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"alpha must be between 0.0 and 1.0, got {alpha!r}")
    div = check_divergence(divergence)
    b = check_beta(beta)
    z = check_z_loss(z_loss)
    cap = check_softcap(softcap)
    ls = check_label_smoothing(real_number(label_smoothing, "label_smoothing"), label_smoothing)
    ignore = ignore_index_value(ignore_index)
    if teacher_topk is not None:
        return topk_distillation_loss(
            s, teacher_topk, target, axis=ax, temperature=temp, alpha=a, divergence=div, beta=b,
            topk_residual=check_topk_residual(topk_residual), reduction=reduction,
            weight=class_weight(weight, s.shape[ax]), ignore_index=ignore, label_smoothing=ls,
            z_loss=z, softcap=cap, return_grad=return_grad, grad_output=grad_output,
            grad_out=grad_out,
        )
    check_topk_residual(topk_residual)

    y = class_target(target, s, ax, ignore, "the logits'")
    w = class_weight(weight, s.shape[ax])
    input_dtype = s.dtype
    result_dtype = promote_dtypes(
        student_logits=s, teacher_logits=t, target=probabilities_or_none(y), weight=w
    )
    s, y, w = in_result_dtype(result_dtype, s, y, w)
    t = t.astype(result_dtype, copy=False)
    result = run_class_loss(
        _core.distillation_loss, s, (t, y, w), (ignore, ls, temp, a, div, b), reduction, ax,
        input_dtype, return_grad, grad_output, grad_out, keywords={"z_loss": z, "softcap": cap},
    )
    if reduction == "mean" and y.dtype != np.int64 and s.shape[ax] == 0:
        # cross_entropy's mean over probability targets divides by numel / C: with no classes
        # that is 0 / 0, NaN, whatever alpha (PyTorch's alpha * NaN); the kernels see only
        # empty sums.
        nan = loss_value(float("nan"), None, reduction, result_dtype)
        return LossAndGrad(nan, result.grad) if return_grad else nan
    return result
