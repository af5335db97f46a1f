"""Rows that test the kernels' edge cases: infinities, NaN, huge magnitudes, large offsets."""

from __future__ import annotations

import numpy as np

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
