"""CPU tensors as NumPy views and NumPy results as tensors, both without a copy.

A tensor becomes a view of its own memory with its own strides (transposed, sliced and expanded
tensors included: the NumPy API reads strided and zero-stride arrays as they are). bfloat16,
which NumPy has no type for, is viewed as int16 bits and those as ``ml_dtypes.bfloat16``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

__all__ = ["check_tensor", "to_numpy", "to_tensor"]


def check_tensor(value: Any, name: str, function: str, optional: bool = False) -> None:
    """TypeError unless `value` is a tensor (or None where `optional`); ValueError unless it is on
    the CPU. Fake tensors under torch.compile are CPU tensors and pass."""
    if value is None and optional:
        return
    if not isinstance(value, torch.Tensor):
        kind = "a torch.Tensor or None" if optional else "a torch.Tensor"
        raise TypeError(
            f"fastloss.torch.{function}: {name} must be {kind}, got {type(value).__name__}"
        )
    if value.device.type != "cpu":
        raise ValueError(
            f"fastloss.torch.{function}: {name} is on device {value.device}, and fastloss "
            f"computes on the CPU: move it with {name}.cpu(), or use torch.nn.functional there"
        )


def _bfloat16() -> np.dtype:
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError(
            "bfloat16 tensors need ml_dtypes for their NumPy view (pip install ml_dtypes)"
        ) from None
    return np.dtype(ml_dtypes.bfloat16)


def to_numpy(t: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    """A NumPy view of a CPU tensor's memory (None stays None)."""
    if t is None:
        return None
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(_bfloat16())
    return t.numpy()


def to_tensor(a: Any) -> torch.Tensor:
    """A NumPy result (an array, or the NumPy scalar of a reduced loss) as a tensor sharing its
    memory."""
    a = np.asarray(a)
    if not (a.flags.writeable and a.flags.c_contiguous):
        # torch warns about a read-only array (it cannot enforce it), and the ops' fake versions
        # (torch.compile) promise C-contiguous results: a copy, of a result fastloss made, only
        # for a non-contiguous gradient (of a non-contiguous input) or a read-only scalar.
        a = np.array(a, order="C")
    if a.dtype.kind == "V" and a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)
