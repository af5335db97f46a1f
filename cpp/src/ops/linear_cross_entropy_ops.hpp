// linear_cross_entropy's tile drivers: the active ISA's tile kernels, threaded over the tile's rows.
// The GEMMs that write the tiles and consume the gradient are NumPy's (its BLAS), driven from
// python/fastloss/_linear_cross_entropy.py.
#pragma once

#include <cstdint>

#include "fastloss/kernel_table.hpp"
#include "fastloss/row_statistics.hpp"

namespace fastloss {

// Adds the bias to the tile in place and merges each row's statistics of the tile's classes into
// statistics[r] (the row's running statistics over the tiles seen so far).
template <class T>
void linear_cross_entropy_fold_tile(const LogitTile<T>& tile, const LinearCrossEntropyParams<T>& params,
                                    RowStatistics* statistics);

// Overwrites the tile (bias included) with the gradient of the loss with respect to its logits.
template <class T>
void linear_cross_entropy_tile_gradient(const LogitTile<T>& tile, const LinearCrossEntropyParams<T>& params,
                                        const LinearGradientRow<T>* row_factors);

}  // namespace fastloss
