// Rows written while the next row's statistics are taken: the writers of long rows (log_softmax,
// softmax, cross_entropy's gradient). Included by per-ISA kernel files only.
#pragma once

#include <cstdint>

#include "kernels/row_statistics-inl.hpp"
#include "kernels/store_row-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

// [Note: the next row's statistics while a row is written] A writer's row r is read twice: once
// from memory for its max and sum, once from L2 to write y. Taken in that order, the loads of row
// r and the stores of y_r go to memory one after the other, each at the bandwidth of one
// direction. Taking the online statistics of row r + 1 ([Note: online softmax]) a block for every
// four vectors of y_r written overlaps them, and the exponentials hide under both. Every row's
// statistics come from the same blocks in the same order as row_online_max_sum's, so a row's bits
// do not depend on the row before it or on which thread takes it.
// The loop keeps the write's constants, the statistics' running max and sums and an exponential's
// constants live together: on AVX2's 16 registers it spilled them and ran 1.6-1.9x slower than two
// sweeps (4096 x 32000), so only ISAs with 32 overlap.
constexpr bool kOverlapLongRows = kVectorRegisters >= 32;

// store_row(y, n, stream, f) that takes the online statistics of the n elements at `next` on the
// way, a block for every four vectors stored, and returns them.
template <class S, class F, class T = compute_t<S>>
RowMaxSum<T> store_row_taking_next_statistics(S* y, int64_t n, bool stream, const S* next, F&& f) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    OnlineMaxSum<T> stats;
    int64_t j = 0;  // next's elements before j are taken
    const auto take_block = [&] {
        V v[4];
        load_block_fetching_ahead(next, j, n, v);
        stats.add_block(v);
        j += 4 * W;
    };
    store_row(y, n, stream, [&](int64_t i) {
        if (i >= j && j + 4 * W <= n) take_block();
        return f(i);
    });
    while (j + 4 * W <= n) take_block();
    stats.add_rest(next, j, n);
    return stats.result();
}

// The rows of x (n elements each, rows of them) written into y: row r's values come from
// row_value(r, x_r, its RowMaxSum), a function of the element index as store_row's f, and each
// row but the last is written while the next row's statistics are taken. after_row(r) runs once
// row r is written.
template <class S, class RowValue, class AfterRow, class T = compute_t<S>>
void write_long_rows(const S* x, int64_t x_row_stride, S* y, int64_t y_row_stride, int64_t rows, int64_t n,
                     bool stream, RowValue&& row_value, AfterRow&& after_row) {
    if (rows <= 0) return;
    RowMaxSum<T> ms = row_online_max_sum(x, n);
    for (int64_t r = 0; r < rows; ++r) {
        const S* xr = x + r * x_row_stride;
        S* yr = y + r * y_row_stride;
        const S* next = next_row(xr, r, rows, x_row_stride);
        const auto value = row_value(r, xr, ms);
        if (next) {
            ms = store_row_taking_next_statistics(yr, n, stream, next, value);
        } else {
            store_row(yr, n, stream, value);
        }
        after_row(r);
    }
}

}  // namespace
}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
