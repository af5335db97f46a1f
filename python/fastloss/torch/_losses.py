"""The NumPy API's losses as fused-gradient torch ops (see _fused_loss)."""

from __future__ import annotations

from typing import Any

import torch

from .. import (
    _cosine_embedding,
    _distillation,
    _elementwise_losses,
    _linear_cross_entropy,
    _losses,
)
from ._fused_loss import FusedLoss, Gradient

__all__ = ["LOSSES"]


def _positions(values: dict[str, Any]) -> list[int]:
    """The input's shape without the class axis (1 for two or more dims, else 0, or `axis`)."""
    shape = list(values[next(iter(values))].shape)
    axis = values["axis"]
    if axis is None:
        axis = 1 if len(shape) >= 2 else 0
    del shape[axis]
    return shape


def _broadcast(values: dict[str, Any]) -> list[int]:
    return list(torch.broadcast_shapes(values["input"].shape, values["target"].shape))


def _input_shape(values: dict[str, Any]) -> list[int]:
    return list(values["input"].shape)


def _rows(values: dict[str, Any]) -> list[int]:
    return list(torch.broadcast_shapes(values["x1"].shape, values["x2"].shape)[:-1])


def _input_rows(values: dict[str, Any]) -> list[int]:
    """The input's shape without its last axis (the features)."""
    return list(values["input"].shape[:-1])


def _topk_distillation_call(
    student_logits: Any, teacher_indices: Any, teacher_logprobs: Any, target: Any, **options: Any
) -> Any:
    """distillation_loss with its teacher given as top-k entries (two arrays of the op)."""
    return _distillation.distillation_loss(
        student_logits, None, target, teacher_topk=(teacher_indices, teacher_logprobs), **options
    )


_CLASS_OPTIONS = (("ignore_index", "int"), ("reduction", "str"))
_DISTILLATION_OPTIONS = (
    ("temperature", "float"),
    ("alpha", "float"),
    *_CLASS_OPTIONS,
    ("label_smoothing", "float"),
    ("axis", "int?"),
    ("divergence", "str"),
    ("beta", "float"),
    ("z_loss", "float"),
    ("softcap", "float?"),
)

LOSSES = {
    loss.name: loss
    for loss in (
        FusedLoss(
            "cross_entropy",
            _losses.cross_entropy,
            ("input", "target"),
            ("weight",),
            (
                *_CLASS_OPTIONS,
                ("label_smoothing", "float"),
                ("axis", "int?"),
                ("z_loss", "float"),
                ("softcap", "float?"),
            ),
            _positions,
        ),
        FusedLoss(
            "nll_loss",
            _losses.nll_loss,
            ("input", "target"),
            ("weight",),
            (*_CLASS_OPTIONS, ("axis", "int?")),
            _positions,
        ),
        FusedLoss(
            "distillation_loss",
            _distillation.distillation_loss,
            ("student_logits", "teacher_logits", "target"),
            ("weight",),
            _DISTILLATION_OPTIONS,
            _positions,
        ),
        FusedLoss(
            "distillation_loss_topk",
            _topk_distillation_call,
            ("student_logits", "teacher_indices", "teacher_logprobs", "target"),
            ("weight",),
            (*_DISTILLATION_OPTIONS, ("topk_residual", "str")),
            _positions,
            any_dtype=("teacher_logprobs",),
        ),
        FusedLoss(
            "kl_div",
            _elementwise_losses.kl_div,
            ("input", "target"),
            (),
            (("reduction", "str"), ("log_target", "bool")),
            _broadcast,
        ),
        FusedLoss(
            "binary_cross_entropy",
            _elementwise_losses.binary_cross_entropy,
            ("input", "target"),
            ("weight",),
            (("reduction", "str"),),
            _input_shape,
        ),
        FusedLoss(
            "binary_cross_entropy_with_logits",
            _elementwise_losses.binary_cross_entropy_with_logits,
            ("input", "target"),
            ("weight", "pos_weight"),
            (("reduction", "str"),),
            _input_shape,
        ),
        FusedLoss(
            "sigmoid_focal_loss",
            _elementwise_losses.sigmoid_focal_loss,
            ("input", "target"),
            (),
            (("alpha", "float"), ("gamma", "float"), ("reduction", "str")),
            _input_shape,
        ),
        # symmetric in x1 and x2: x2's gradient is x1's with the two swapped
        FusedLoss(
            "cosine_embedding_loss",
            _cosine_embedding.cosine_embedding_loss,
            ("x1", "x2", "target"),
            (),
            (("margin", "float"), ("reduction", "str")),
            _rows,
            gradients=(Gradient("x1"), Gradient("x2", swap=1)),
            any_dtype=("target",),
        ),
        # The three gradients come from one call (one pass over the logits' strips). That call
        # computes all three whichever are needed: a frozen head (input's gradient only)
        # still pays for grad_weight's product, until the NumPy function can skip it.
        FusedLoss(
            "linear_cross_entropy",
            _linear_cross_entropy.linear_cross_entropy,
            ("input", "linear_weight", "target"),
            ("linear_bias", "weight"),
            (
                *_CLASS_OPTIONS,
                ("label_smoothing", "float"),
                ("z_loss", "float"),
                ("softcap", "float?"),
                ("chunk_size", "int?"),
            ),
            _input_rows,
            gradients=(
                Gradient("input", "grad_input"),
                Gradient("linear_weight", "grad_weight"),
                Gradient("linear_bias", "grad_bias"),
            ),
        ),
    )
}
