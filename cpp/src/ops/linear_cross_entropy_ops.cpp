#include "ops/linear_cross_entropy_ops.hpp"

#include "fastloss/dispatch.hpp"
#include "fastloss/parallel.hpp"

namespace fastloss {

namespace {
// The rows [begin, end) of a tile, as a tile of their own.
template <class T>
LogitTile<T> tile_rows(const LogitTile<T>& tile, int64_t begin, int64_t end) {
    LogitTile<T> part = tile;
    part.logits = tile.logits + begin * tile.row_stride;
    part.rows = end - begin;
    if (tile.target) part.target = tile.target + begin;
    if (tile.probabilities) part.probabilities = tile.probabilities + begin * tile.probability_stride;
    return part;
}

// Rows whose tile statistics a thread holds before merging them (on its stack).
constexpr int64_t kMergeGroupRows = 32;
}  // namespace

template <class T>
void linear_cross_entropy_fold_tile(const LogitTile<T>& tile, const LinearCrossEntropyParams<T>& params,
                                    RowStatistics* statistics) {
    const auto kernel = active_kernels().kernels<T>().linear_cross_entropy.tile_statistics;
    parallel_for(tile.rows, tile.columns, [&](int64_t begin, int64_t end) {
        RowStatistics piece[kMergeGroupRows];
        for (int64_t group = begin; group < end; group += kMergeGroupRows) {
            const int64_t group_end = group + kMergeGroupRows < end ? group + kMergeGroupRows : end;
            kernel(tile_rows(tile, group, group_end), params, piece);
            for (int64_t r = group; r < group_end; ++r) {
                statistics[r] = merged_row_statistics(statistics[r], piece[r - group]);
            }
        }
    });
}

template <class T>
void linear_cross_entropy_tile_gradient(const LogitTile<T>& tile, const LinearCrossEntropyParams<T>& params,
                                        const LinearGradientRow<T>* row_factors) {
    const auto kernel = active_kernels().kernels<T>().linear_cross_entropy.tile_gradient;
    parallel_for(tile.rows, tile.columns, [&](int64_t begin, int64_t end) {
        kernel(tile_rows(tile, begin, end), params, row_factors + begin);
    });
}

template void linear_cross_entropy_fold_tile<float>(const LogitTile<float>&, const LinearCrossEntropyParams<float>&,
                                                    RowStatistics*);
template void linear_cross_entropy_fold_tile<double>(const LogitTile<double>&,
                                                     const LinearCrossEntropyParams<double>&, RowStatistics*);
template void linear_cross_entropy_tile_gradient<float>(const LogitTile<float>&,
                                                        const LinearCrossEntropyParams<float>&,
                                                        const LinearGradientRow<float>*);
template void linear_cross_entropy_tile_gradient<double>(const LogitTile<double>&,
                                                         const LinearCrossEntropyParams<double>&,
                                                         const LinearGradientRow<double>*);

}  // namespace fastloss
