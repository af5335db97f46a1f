"""Arrays placed at a chosen offset from a cache line, for the kernels' alignment paths."""

from __future__ import annotations

import numpy as np


def line_offset_array(shape, dtype, offset: int) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts `offset` bytes past a 64-byte cache
    line (NumPy's own allocations start 16 bytes past one): the column kernels peel positions up
    to the first line and stream whole lines after it."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    raw = np.empty(count * dtype.itemsize + 128, np.uint8)
    start = (offset - raw.ctypes.data) % 64
    return raw[start:start + count * dtype.itemsize].view(dtype).reshape(shape)

