"""The one rule for output buffers that share memory with inputs.

An output buffer (``out=``, ``grad_out=``) may be the one input it is documented to replace (the
same memory with the same strides: kernels read each element before they write it). Any other
overlap, with that input shifted or reversed, or with any other operand (targets, class weights,
``grad_output``, a second input), is broken here by a private copy of the input, so every result
is what it would be with separate buffers. The copy is made only when the byte ranges overlap.
Integer class targets need no copy here: the kernels check and copy them themselves.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

__all__ = ["is_same_view", "separate_from"]


def is_same_view(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether a and b are the same elements in the same order (same start, shape and strides)."""
    return (
        a.shape == b.shape
        and a.strides == b.strides
        and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    )


def separate_from(output: Optional[np.ndarray], operand: Any, may_alias: bool = False) -> Any:
    """`operand`, or a private copy of it if it shares memory with `output`, the caller's output
    buffer (None when the output is a new array, which nothing can overlap). With `may_alias`,
    `operand` may also be exactly `output` (see is_same_view)."""
    if output is None or not isinstance(operand, np.ndarray) or (operand is output and may_alias):
        return operand
    if not np.may_share_memory(operand, output):
        return operand
    if may_alias and is_same_view(operand, output):
        return operand
    return operand.copy()
