"""Large gradient buffers kept from one training step to the next.

A new gradient of, say, 4096x32000 float32 is 524 MB that malloc maps fresh from the kernel on
every call (blocks this large never stay in its free lists), and the kernel's first write to
each page then faults: on some machines that costs as much as the kernel's own pass. The pool
keeps the most recent large gradient and hands it out again as the next call's ``grad_out`` once
nothing refers to it any more: its tensor (``.grad``, say) was freed by ``zero_grad()`` or
accumulated into another. Whether anything refers to it is the array's reference count: a
tensor made by ``torch.from_numpy`` holds one reference for as long as its storage lives, which
any view of the tensor keeps alive. `empty_cache` drops the buffer.
"""

from __future__ import annotations

import sys
import threading
from typing import Optional

import numpy as np

__all__ = ["empty_cache", "keep", "take"]

# Below this size malloc reuses freed memory itself (its mmap threshold is at most 32 MiB).
_MIN_BYTES = 32 * 1024 * 1024

_lock = threading.Lock()
_kept: Optional[np.ndarray] = None


def take(shape: tuple[int, ...], dtype: np.dtype) -> Optional[np.ndarray]:
    """The kept buffer if it has this shape and dtype and nothing else refers to it (the caller
    then holds it), else None."""
    global _kept
    with _lock:
        buffer = _kept
        # references: _kept, `buffer` and getrefcount's argument
        if buffer is None or sys.getrefcount(buffer) != 3:
            return None
        if buffer.shape != shape or buffer.dtype != dtype:
            return None
        return buffer


def keep(gradient: np.ndarray) -> None:
    """Keep `gradient` (a new array the caller is about to hand out) for a later `take`, if it
    is large enough to be worth it; it replaces the buffer kept before."""
    global _kept
    if gradient.nbytes >= _MIN_BYTES and gradient.base is None and gradient.flags.c_contiguous:
        with _lock:
            _kept = gradient


def empty_cache() -> None:
    """Release the gradient buffer fastloss.torch keeps for reuse (its memory is freed once no
    tensor refers to it)."""
    global _kept
    with _lock:
        _kept = None
