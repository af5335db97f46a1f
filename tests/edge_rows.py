"""Rows that test the kernels' edge cases: infinities, NaN, huge magnitudes, large offsets."""

from __future__ import annotations

import numpy as np

from aligned_arrays import line_offset_array

EDGE_ROWS = {
    "with_neg_inf": [0.0, -np.inf, 1.0, 2.0],
    "all_neg_inf": [-np.inf] * 5,
    "pos_inf": [0.0, np.inf, 1.0],
    "pos_inf_and_nan": [np.nan, np.inf, 1.0],
    "nan": [0.0, np.nan, 1.0],
    "huge": [1e30, -1e30, 3e38, 0.0],
    "huge_neg": [-3e38, 3e38],
    "offset_1e8": [1e8, 1e8 + 64, 1e8 - 64],  # pytorch#11752: x - (m + lse) would lose bits
    "equal": [3.0] * 17,
    "single": [42.0],
}


def rows_too_long_to_fetch_into_l2(dtype, rng) -> np.ndarray:
    """6 rows of 70001 classes, 16 bytes past a cache line: over the 65536 float32 or 32768
    float64 classes whose two working rows fit in half of L2, so the overlapped writers fetch the
    next row into L1 ([Note: the next row fetched into L2 while a row is written]). Row 1's max
    moves in every block (rising), row 3's once late at an odd element, row 4's not after the first
    block (falling); the rest are random."""
    rows, classes = 6, 70001
    x = line_offset_array((rows, classes), dtype, 16)
    x[...] = rng.standard_normal((rows, classes)) * 3
    x[1] = np.linspace(-50, 50, classes)
    x[3, 64 * 700 + 3] = 40
    x[4] = np.linspace(50, -50, classes)
    return x
