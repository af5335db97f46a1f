"""cross_entropy and nll_loss: torch.nn.functional's semantics, fused kernels."""

from __future__ import annotations

from typing import Any, Optional, Union

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
    index_target,
    position_shape,
    probabilities_or_none,
    run_class_loss,
)
from ._gradient import LossAndGrad, LossAndLse, LossLseAndGrad, LossValue
from ._validation import as_float_array, check_reduction, promote_dtypes

__all__ = ["cross_entropy", "nll_loss"]


def cross_entropy(
    input: Any,
    target: Any,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    axis: Optional[int] = None,
    z_loss: float = 0.0,
    softcap: Optional[float] = None,
    return_lse: bool = False,
    return_grad: bool = False,
    grad_output: Any = None,
    grad_out: Optional[np.ndarray] = None,
) -> Union[LossValue, LossAndGrad, LossAndLse, LossLseAndGrad]:
    """Cross-entropy between logits and targets, as ``torch.nn.functional.cross_entropy``.

    `target` holds class indices (any integer dtype; shape = input's shape without the class
    axis) or class probabilities (floating, the input's shape). The class axis is 1 for inputs
    with two or more dimensions and 0 otherwise, as in PyTorch; ``axis=-1`` takes (B, T, V)
    language-model logits with (B, T) targets as they are.

    - ``weight`` (C,): per-class weights; ``mean`` then divides by the summed weights of the
      non-ignored targets (probability targets: by the number of positions).
    - ``ignore_index``: positions with this target contribute nothing (index targets only).
    - ``label_smoothing`` in [0, 1]: PyTorch's formula, the smoothing term weighted per class.
    - ``reduction``: "mean" (NaN when every target is ignored), "sum" or "none".
    - ``z_loss`` >= 0: PaLM's auxiliary loss, ``z_loss * lse**2`` added for every non-ignored
      position, ``lse`` the log-sum-exp of its logits, with Liger's reduction (its
      ``lse_square_scale``): "none" adds it to each position's loss, "sum" adds the sum, and
      "mean" adds the sum divided by the number of non-ignored positions -- not by the summed
      class weights that divide the cross-entropy (the z-loss is unweighted). With probability
      targets every position counts. The gradient includes it: ``2 z_loss lse softmax``.
      ``z_loss=0`` gives the plain loss, bit for bit.
    - ``softcap`` > 0: Gemma 2's logit soft-capping, the loss of ``softcap * tanh(input /
      softcap)`` (as Liger and Cut Cross-Entropy offer it), with the gradient through the tanh.
      Fused: the capped logits exist one row at a time, never as an array. ``None`` (default):
      no capping.
    - ``return_lse=True``: also each position's log-sum-exp of its logits (ignored positions'
      too; -inf for an all -inf row, NaN for a row holding +inf or NaN, whose loss is NaN), an
      array of the per-position shape in the loss's dtype (of the capped logits with softcap).

    Returns a NumPy scalar of the input's dtype, or an array for ``reduction="none"``.
    With ``return_grad=True``, returns ``LossAndGrad(loss, grad)``, the gradient with respect to
    `input` computed in the same pass (for ``reduction="none"``, of ``sum(grad_output * loss)``;
    for mean and sum, a number `grad_output` scales it). ``grad_out`` receives the gradient
    instead of a new array; it may be `input` itself. With ``return_lse=True`` the result is
    ``LossAndLse(loss, lse)``, or ``LossLseAndGrad(loss, lse, grad)`` with the gradient.
    Raises IndexError for a target outside [0, C) that is not ignore_index.
    """
    if type(z_loss) is float and z_loss == 0.0 and softcap is None and return_lse is False:
        # The common small call, recognised and run in C++ (None: not that case, or an error
        # whose message the general path below gives).
        value = _core.cross_entropy_common_case(
            input, target, weight, ignore_index, reduction, label_smoothing, axis, return_grad,
            grad_output, grad_out,
        )
        if value is not None:
            return value
    x = as_float_array(input, "input")
    reduction = check_reduction(reduction)
    ax = class_axis(x.ndim, axis)
    ls = check_label_smoothing(float(label_smoothing), label_smoothing)
    ignore = ignore_index_value(ignore_index)
    z = check_z_loss(z_loss)
    cap = check_softcap(softcap)
    if return_lse not in (True, False):
        raise TypeError(f"return_lse must be True or False, got {return_lse!r}")

    t = class_target(target, x, ax, ignore, "the input's")
    w = class_weight(weight, x.shape[ax])
    input_dtype = x.dtype
    result_dtype = promote_dtypes(input=x, target=probabilities_or_none(t), weight=w)
    x, t, w = in_result_dtype(result_dtype, x, t, w)
    lse = np.empty(position_shape(x.shape, ax), result_dtype) if return_lse else None
    result = run_class_loss(
        _core.cross_entropy, x, (t, w), (ignore, ls), reduction, ax, input_dtype,
        return_grad, grad_output, grad_out, keywords={"z_loss": z, "lse": lse, "softcap": cap},
    )
    if lse is None:
        return result
    return LossLseAndGrad(result.loss, lse, result.grad) if return_grad else LossAndLse(result, lse)



def nll_loss(
    input: Any,
    target: Any,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    axis: Optional[int] = None,
    return_grad: bool = False,
    grad_output: Any = None,
    grad_out: Optional[np.ndarray] = None,
) -> Union[LossValue, LossAndGrad]:
    """Negative log-likelihood of log-probabilities, as ``torch.nn.functional.nll_loss``.

    loss = -weight[y] * input[y] per position (0 where the target is ignore_index); ``mean``
    divides by the summed weights of the non-ignored targets. Shapes and the class axis as in
    `cross_entropy`; targets are class indices of any integer dtype. ``return_grad``,
    ``grad_output`` and ``grad_out`` as in `cross_entropy`.
    """
    value = _core.nll_loss_common_case(  # see cross_entropy
        input, target, weight, ignore_index, reduction, axis, return_grad, grad_output, grad_out
    )
    if value is not None:
        return value
    x = as_float_array(input, "input")
    reduction = check_reduction(reduction)
    ax = class_axis(x.ndim, axis)
    t = index_target(target, x, ax)
    w = class_weight(weight, x.shape[ax])
    input_dtype = x.dtype
    result_dtype = promote_dtypes(input=x, weight=w)
    x, t, w = in_result_dtype(result_dtype, x, t, w)
    return run_class_loss(
        _core.nll_loss, x, (t, w), (ignore_index_value(ignore_index),), reduction, ax, input_dtype,
        return_grad, grad_output, grad_out,
    )
