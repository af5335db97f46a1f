"""kl_div, binary_cross_entropy and binary_cross_entropy_with_logits (torch.nn.functional's
semantics) and sigmoid_focal_loss (torchvision.ops'): one fused pass over broadcast operands.

Broadcasting happens here, as zero-stride views (``np.broadcast_to``): nothing of the input's size
is copied unless the dtype must change (half precision is computed in float32).

Gradients (``return_grad=True``) come from the same pass as the loss, written straight into the
gradient buffer (which may be the input itself). Two cases cannot be written straight: an input
that kl_div's target broadcasts to a larger shape, whose gradient PyTorch sums over the broadcast
axes, and an input whose dtype differs from the computation dtype (half precision, mixed
dtypes). There the kernel writes a gradient of the loss's shape in the computation dtype, which
is then summed over the broadcast axes in float64 (NumPy's reduction, single-threaded, in a
fixed order) and cast to the input's dtype.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import numpy as np

from . import _core
from ._aliasing import separate_from
from ._gradient import (
    LossAndGrad,
    LossValue,
    check_grad_out,
    check_gradient_options,
    gradient_operands,
    loss_value,
    sum_to_shape,
)
from ._validation import (
    as_float_array,
    broadcast_shapes,
    broadcast_view,
    check_reduction,
    normalize_axis,
    promote_dtypes,
    real_number,
)

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "jensen_shannon_divergence",
    "kl_div",
    "sigmoid_focal_loss",
]

_KL_REDUCTIONS = ("none", "batchmean", "sum", "mean")

# PyTorch's text, verbatim (torch.nn.functional.kl_div).
_KL_MEAN_WARNING = (
    "reduction: 'mean' divides the total loss by both the batch size and the support size."
    "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
    "'mean' will be changed to behave the same as 'batchmean' in the next major release."
)


def _broadcast_operand(
    a: Any, name: str, shape: tuple[int, ...], dtype: np.dtype, hint: str = ""
) -> np.ndarray | None:
    """An optional operand (weight, pos_weight) as a zero-stride view of `shape`, in `dtype`."""
    if a is None:
        return None
    arr = as_float_array(a, name).astype(dtype, copy=False)
    try:
        return broadcast_view(arr, shape)
    except ValueError:
        raise ValueError(
            f"{name} of shape {arr.shape} cannot be broadcast to the input shape {shape}"
            f" (NumPy broadcasting, aligned on the last axis){hint}"
        ) from None


def _layout_keeps_the_sum(grad_out: Any, x: np.ndarray) -> bool:
    """Whether the kernel may write the gradient straight into `grad_out` without changing the
    loss. The kernels merge axes that every operand, the gradient included, lays out alike, and
    sum the loss in pieces of the merged rows: a gradient laid out otherwise (Fortran order
    under C-order inputs, say) would change the pieces and so the loss's last bits. A
    C-contiguous gradient (which merges wherever the inputs do) or one laid out as the input
    keeps them."""
    if not isinstance(grad_out, np.ndarray) or not grad_out.flags.aligned:
        return False
    return grad_out.flags.c_contiguous or grad_out.strides == x.strides


def _run(
    kernel: Callable[..., Any],
    x: np.ndarray,
    arguments: tuple,
    reduction: str,
    count: int,
    result_dtype: np.dtype,
    input_array: np.ndarray,
    return_grad: bool,
    grad_output: Any,
    grad_out: Any,
) -> LossValue | LossAndGrad:
    """Calls an elementwise-loss kernel, ``kernel(x, *arguments, reduction, count, out[, grad,
    grad_output, unscaled_gradient])``, with or without the gradient. `x` is the input in the
    computation dtype, broadcast to the loss's shape; `input_array` is the input as the caller
    gave it (its shape and dtype are the gradient's); `count` is the mean's divisor (the kernel
    divides)."""
    check_gradient_options(return_grad, grad_output, grad_out)
    shape = x.shape
    kernel_reduction = "mean" if reduction == "batchmean" else reduction
    out = np.empty(shape, x.dtype) if reduction == "none" else None
    if not return_grad:
        value = kernel(x, *arguments, kernel_reduction, count, out)
        return loss_value(value, out, reduction, result_dtype)

    input_shape, input_dtype = input_array.shape, input_array.dtype
    # An input of the loss's shape and dtype gets its scaled gradient from the kernel directly:
    # into grad_out, or, where grad_out's layout would change the loss, into a C-order buffer
    # copied into grad_out afterwards (a new gradient of a non-contiguous input is C-order too).
    direct = shape == input_shape and x.dtype == input_dtype
    final: np.ndarray | None = None  # grad_out, when the kernel cannot write it directly
    if direct:
        if grad_out is not None and not _layout_keeps_the_sum(grad_out, x):
            final = check_grad_out(grad_out, input_shape, input_dtype)
            grad_out = np.empty(shape, x.dtype)
        elif grad_out is None and not (x.flags.c_contiguous or x.flags.f_contiguous):
            grad_out = np.empty(shape, x.dtype)
        x, grad, go = gradient_operands(x, shape, reduction, grad_output, grad_out)
        arguments = tuple(separate_from(grad_out, a) for a in arguments)
        value = kernel(x, *arguments, kernel_reduction, count, out, grad, go)
        loss = loss_value(value, out, reduction, result_dtype)
        if final is not None:
            np.copyto(final, grad)
            return LossAndGrad(loss, final)
        return LossAndGrad(loss, grad)

    if grad_out is not None:
        final = check_grad_out(grad_out, input_shape, input_dtype)
    x, grad, go = gradient_operands(x, shape, reduction, grad_output, np.empty(shape, x.dtype))
    # A broadcast input's gradient is summed over the broadcast axes: the kernel then writes the
    # unscaled terms, and the scale joins the float64 sum here, so that mean's small per-element
    # share (grad_output / D) is not rounded on its own (to a float16 subnormal, say).
    value = kernel(x, *arguments, kernel_reduction, count, out, grad, go, True)
    loss = loss_value(value, out, reduction, result_dtype)
    scale = 1.0
    if reduction != "none":
        scale = 1.0 if go is None else go
        if kernel_reduction == "mean":  # grad_output / D, rounded once in the compute dtype
            # (float32 for half precision, whose range a count can exceed), as the kernels do
            compute = x.dtype.type if x.dtype == np.float64 else np.float32
            scale = float(compute(scale) / compute(count)) if count else 0.0
    reduced = sum_to_shape(grad, input_shape)
    if scale != 1.0:  # in float64 (NumPy 1.x would keep a half-precision array's dtype)
        reduced = np.asarray(np.asarray(reduced, dtype=np.float64) * scale)  # (0-d stays an array)
    if final is None:
        return LossAndGrad(loss, reduced.astype(input_dtype))
    np.copyto(final, reduced, casting="unsafe")
    return LossAndGrad(loss, final)


def kl_div(
    input: Any,
    target: Any,
    *,
    reduction: str = "mean",
    log_target: bool = False,
    return_grad: bool = False,
    grad_output: Any = None,
    grad_out: np.ndarray | None = None,
) -> LossValue | LossAndGrad:
    """Kullback-Leibler divergence, as ``torch.nn.functional.kl_div``.

    `input` holds log-probabilities log q; `target` holds probabilities p (log-probabilities with
    ``log_target=True``). Pointwise loss: ``p * (log p - input)``, 0 where p = 0 (unless input is
    -inf or NaN, which gives NaN, as PyTorch), NaN where p < 0; with ``log_target``:
    ``exp(target) * (target - input)``. input and target broadcast against each other.

    - ``reduction="batchmean"``: the sum divided by ``input.shape[0]`` (the KL divergence per
      sample; for 1-D input that is the number of elements; NaN for an empty batch).
    - ``"sum"``, ``"none"`` (an array of the broadcast shape).
    - ``"mean"`` (the default, as in PyTorch): the sum divided by the number of elements; warns,
      with PyTorch's message, that this is not the KL divergence.

    Returns a NumPy scalar of the computation dtype, or an array for ``reduction="none"``.
    With ``return_grad=True``, returns ``LossAndGrad(loss, grad)``: the gradient with respect to
    `input` from the same pass, PyTorch autograd's ``-target / D`` (``-exp(target) / D`` with
    ``log_target``), times `grad_output` (for ``"none"`` an array of the loss's shape, defaulting
    to ones; otherwise a number). ``grad_out`` receives it instead of a new array (the input's
    shape and dtype; it may be `input` itself). Where `target` broadcasts `input` to a larger
    shape, the gradient is summed over the broadcast axes, as PyTorch's, in float64.
    """
    result = _core.kl_div_common_case(
        input, target, reduction, log_target, return_grad, grad_output, grad_out
    )
    if result is not None:
        return result
    reduction = check_reduction(reduction, _KL_REDUCTIONS)
    if reduction == "mean":
        warnings.warn(_KL_MEAN_WARNING, UserWarning, stacklevel=2)
    x = as_float_array(input, "input")
    t = as_float_array(target, "target")
    result_dtype = promote_dtypes(input=x, target=t)
    try:
        shape = broadcast_shapes(x.shape, t.shape)
    except ValueError:
        raise ValueError(
            f"input of shape {x.shape} and target of shape {t.shape} cannot be broadcast together"
        ) from None
    if reduction == "batchmean" and x.ndim == 0:  # 0-d input: PyTorch returns the sum
        reduction = "sum"
    # batchmean divides by input's first dimension
    count = x.shape[0] if reduction == "batchmean" else math.prod(shape)
    xw = broadcast_view(x.astype(result_dtype, copy=False), shape)
    t = broadcast_view(t.astype(result_dtype, copy=False), shape)
    return _run(
        _core.kl_div, xw, (t, bool(log_target)), reduction, count, result_dtype, x,
        return_grad, grad_output, grad_out,
    )


def jensen_shannon_divergence(
    input: Any,
    target: Any,
    *,
    beta: float = 0.5,
    log_target: bool = False,
    reduction: str = "mean",
    axis: int = -1,
    return_grad: bool = False,
    grad_output: Any = None,
    grad_out: np.ndarray | None = None,
) -> LossValue | LossAndGrad:
    """Generalized Jensen-Shannon divergence, as Liger-Kernel's ``LigerJSD`` defines it.

    `input` holds the student's log-probabilities ``log Q`` (as `kl_div`'s input); `target` the
    teacher's probabilities ``P`` (log-probabilities with ``log_target=True``); the class axis is
    `axis` (the last by default); input and target broadcast against each other. Per position::

        JSD = beta * KL(P || M) + (1 - beta) * KL(Q || M),   M = beta * P + (1 - beta) * Q

    summed over the classes, each product ``P * log(P / M)`` or ``Q * log(Q / M)`` taken as 0
    where its probability is 0 (so classes masked with -inf in one or both add 0; the literal
    torch expression would give NaN where both are 0). As in Liger, ``beta = 0`` gives the
    forward ``KL(P || Q)``, exactly ``kl_div(input, target)``, and ``beta = 1`` the reverse
    ``KL(Q || P)``, as ``kl_div(log P, Q)`` (with kl_div's NaN where P = Q = 0), not the
    formula's degenerate 0; ``beta = 0.5`` is the symmetric JSD, bounded by log 2.

    - ``reduction="mean"`` (default): the sum over classes, averaged over positions (the other
      axes). For (BT, V) inputs this is Liger's normalisation (its sum over everything divided
      by BT, when no label is ignored), i.e. `kl_div`'s ``"batchmean"``.
    - ``"sum"``: the sum over everything; ``"none"``: one value per position (the shape
      without `axis`).

    With ``return_grad=True``, returns ``LossAndGrad(loss, grad)``, the gradient with respect
    to `input` from the same pass, pointwise as Liger's kernel gives it (each log-probability
    its own variable): ``(1 - beta) * Q * (input - log M)``, ``-P`` at ``beta = 0``, ``Q *
    (input - log P + 1)`` at ``beta = 1``, divided as the reduction divides, times
    `grad_output` (a number, or for ``"none"`` an array of the per-position shape).
    ``grad_out`` as in `kl_div`. Raises ValueError for ``beta`` outside [0, 1] (NaN included)
    and numpy's AxisError for a bad axis.
    """
    from ._distillation import check_beta  # (its home: distillation_loss's beta)

    check_gradient_options(return_grad, grad_output, grad_out)
    reduction = check_reduction(reduction, ("none", "mean", "sum"))
    b = check_beta(beta)
    x = as_float_array(input, "input")
    t = as_float_array(target, "target")
    result_dtype = promote_dtypes(input=x, target=t)
    try:
        shape = broadcast_shapes(x.shape, t.shape)
    except ValueError:
        raise ValueError(
            f"input of shape {x.shape} and target of shape {t.shape} cannot be broadcast together"
        ) from None
    if not shape:
        raise ValueError("input must have at least one dimension (the classes), got a 0-d array")
    ax = normalize_axis(axis, len(shape))
    positions = shape[:ax] + shape[ax + 1 :]
    xw = broadcast_view(x.astype(result_dtype, copy=False), shape)
    tw = broadcast_view(t.astype(result_dtype, copy=False), shape)
    arguments = (tw, bool(log_target), b)
    if reduction != "none":
        return _run(
            _core.jensen_shannon_divergence, xw, arguments, reduction, math.prod(positions),
            result_dtype, x, return_grad, grad_output, grad_out,
        )
    # Per position: the kernel's per-element terms summed over the class axis (in float64), and
    # each position's grad_output spread over its classes as a zero-stride view.
    go = None
    if return_grad:
        go = np.ones(positions, result_dtype) if grad_output is None else grad_output
        try:
            go = np.broadcast_to(np.asarray(go), positions)
        except ValueError:
            raise ValueError(
                f"grad_output must have the loss's shape {positions}, got {np.shape(go)}"
            ) from None
        go = np.broadcast_to(np.expand_dims(go, ax), shape)
    result = _run(
        _core.jensen_shannon_divergence, xw, arguments, "none", 0, result_dtype, x,
        return_grad, go, grad_out,
    )
    terms = result.loss if return_grad else result
    loss = np.asarray(terms.sum(axis=ax, dtype=np.float64), dtype=result_dtype)
    return LossAndGrad(loss, result.grad) if return_grad else loss


def _same_shape_target(target: Any, x: np.ndarray, function: str) -> np.ndarray:
    t = as_float_array(target, "target")
    if t.shape != x.shape:
        raise ValueError(
            f"{function}: target has shape {t.shape}, which is different from the input shape "
            f"{x.shape}; they must be the same"
        )
    return t


def binary_cross_entropy(
    input: Any,
    target: Any,
    *,
    weight: Any = None,
    reduction: str = "mean",
    return_grad: bool = False,
    grad_output: Any = None,
    grad_out: np.ndarray | None = None,
) -> LossValue | LossAndGrad:
    """Binary cross-entropy of probabilities, as ``torch.nn.functional.binary_cross_entropy``.

    Pointwise: ``-weight * (y * max(log p, -100) + (1 - y) * max(log(1 - p), -100))``.
    `target` must have the input's shape; `weight` broadcasts to it (NumPy rules, aligned on the
    last axis: (C,) weighs classes, (N, 1) samples). ``"mean"`` divides the weighted sum by the
    number of elements (not by the summed weights), as PyTorch does.

    With ``return_grad=True``, returns ``LossAndGrad(loss, grad)`` as `kl_div` does; the gradient
    is PyTorch autograd's ``weight * (p - y) / max(p (1 - p), 1e-12) / D`` (-1e12 at p = 0,
    y = 1).

    Raises ValueError when an input or target value lies outside [0, 1] (NaN included). The
    check happens in the same pass as the loss, so ``grad_out`` then holds partial results (and
    if it is `input`, the input is overwritten).
    """
    result = _core.binary_cross_entropy_common_case(
        input, target, weight, reduction, return_grad, grad_output, grad_out
    )
    if result is not None:
        return result
    reduction = check_reduction(reduction)
    x = as_float_array(input, "input")
    t = _same_shape_target(target, x, "binary_cross_entropy")
    w = None if weight is None else as_float_array(weight, "weight")
    result_dtype = promote_dtypes(input=x, target=t, weight=w)
    xw = x.astype(result_dtype, copy=False)
    t = t.astype(result_dtype, copy=False)
    w = _broadcast_operand(w, "weight", x.shape, result_dtype)
    return _run(
        _core.binary_cross_entropy, xw, (t, w), reduction, x.size, result_dtype, x,
        return_grad, grad_output, grad_out,
    )


def binary_cross_entropy_with_logits(
    input: Any,
    target: Any,
    *,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: str = "mean",
    return_grad: bool = False,
    grad_output: Any = None,
    grad_out: np.ndarray | None = None,
) -> LossValue | LossAndGrad:
    """Binary cross-entropy of logits, as ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Pointwise, in the stable form: ``weight * ((1 - y) x + (1 + (pos_weight - 1) y) softplus(-x))``
    (= ``-weight * (pos_weight y log sigmoid(x) + (1 - y) log sigmoid(-x))``), finite for any
    finite x. `target` must have the input's shape and is not range-checked. `weight` and
    `pos_weight` broadcast to the input's shape aligned on the last axis, exactly as PyTorch's: a
    (C,) pos_weight acts on the last axis, so (N, C, H, W) input needs a (C, 1, 1) pos_weight.
    ``"mean"`` divides by the number of elements.

    With ``return_grad=True``, returns ``LossAndGrad(loss, grad)`` as `kl_div` does; the gradient
    is PyTorch autograd's ``weight * ((pos_weight y + 1 - y) sigmoid(x) - pos_weight y) / D``.
    """
    result = _core.binary_cross_entropy_with_logits_common_case(
        input, target, weight, pos_weight, reduction, return_grad, grad_output, grad_out
    )
    if result is not None:
        return result
    reduction = check_reduction(reduction)
    x = as_float_array(input, "input")
    t = _same_shape_target(target, x, "binary_cross_entropy_with_logits")
    w = None if weight is None else as_float_array(weight, "weight")
    pw = None if pos_weight is None else as_float_array(pos_weight, "pos_weight")
    result_dtype = promote_dtypes(input=x, target=t, weight=w, pos_weight=pw)
    xw = x.astype(result_dtype, copy=False)
    t = t.astype(result_dtype, copy=False)
    w = _broadcast_operand(w, "weight", x.shape, result_dtype)
    pw = _broadcast_operand(
        pw,
        "pos_weight",
        x.shape,
        result_dtype,
        hint="; a per-class pos_weight for (N, C, d1, ...) input needs shape (C, 1, ...)",
    )
    return _run(
        _core.binary_cross_entropy_with_logits, xw, (t, w, pw), reduction, x.size, result_dtype, x,
        return_grad, grad_output, grad_out,
    )


def sigmoid_focal_loss(
    input: Any,
    target: Any,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
    return_grad: bool = False,
    grad_output: Any = None,
    grad_out: np.ndarray | None = None,
) -> LossValue | LossAndGrad:
    """Sigmoid focal loss of logits, as ``torchvision.ops.sigmoid_focal_loss`` (its defaults:
    ``alpha=0.25``, ``gamma=2``, ``reduction="none"``).

    With ``p = sigmoid(input)``, ``ce = binary_cross_entropy_with_logits(input, target)`` and
    ``p_t = p * target + (1 - p) * (1 - target)``, pointwise::

        loss = ce * (1 - p_t) ** gamma * (alpha * target + (1 - alpha) * (1 - target))

    and without the last factor when ``alpha < 0``. `target` must have the input's shape; soft
    targets in [0, 1] are allowed and nothing is range-checked, as in torchvision. ``1 - p_t`` is
    computed without cancellation (``(1 - t) sigmoid(x) + t sigmoid(-x)``), so where torchvision
    rounds it to 0 (float32 logits beyond about 17 on the target's side) the loss here keeps its
    tiny true value. ``gamma = 0`` gives the binary cross-entropy of logits (times the alpha
    factor); ``(1 - p_t) ** 0`` is 1 everywhere, as PyTorch's ``pow``. ``"mean"`` divides by the
    number of elements (NaN for empty input), ``"sum"`` adds them, ``"none"`` returns an array.

    With ``return_grad=True``, returns ``LossAndGrad(loss, grad)`` as `kl_div` does; the gradient
    is autograd's of the expression above: ``a_t * ((p - t) (1 - p_t) ** gamma + gamma * ce *
    (1 - p_t) ** (gamma - 1) * (1 - 2 t) p (1 - p))`` (the second term is 0 for ``gamma = 0``).

    Raises ValueError for an unknown reduction, a target of another shape, a non-finite `alpha`
    or `gamma`, or ``gamma < 0``; TypeError for non-floating arrays or non-numeric options.
    """
    result = _core.sigmoid_focal_loss_common_case(
        input, target, alpha, gamma, reduction, return_grad, grad_output, grad_out
    )
    if result is not None:
        return result
    reduction = check_reduction(reduction)
    a = real_number(alpha, "alpha")
    if not math.isfinite(a):
        raise ValueError(
            f"alpha must be a finite number (< 0 for no alpha weighting), got {alpha!r}"
        )
    g = real_number(gamma, "gamma")
    if not (math.isfinite(g) and g >= 0.0):
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
    x = as_float_array(input, "input")
    t = _same_shape_target(target, x, "sigmoid_focal_loss")
    result_dtype = promote_dtypes(input=x, target=t)
    xw = x.astype(result_dtype, copy=False)
    t = t.astype(result_dtype, copy=False)
    return _run(
        _core.sigmoid_focal_loss, xw, (t, a, g), reduction, x.size, result_dtype, x,
        return_grad, grad_output, grad_out,
    )
