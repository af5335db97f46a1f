// Parallel loops over the positions of an AxisGeometry, one per layout. Operations (softmax,
// cross-entropy, ...) supply what to do with a run of rows, a block of columns, or a chunk of
// staged rows; this file owns how positions are cut into work and handed to threads.
#pragma once

#include <algorithm>
#include <cstdint>

#include "fastloss/parallel.hpp"
#include "ops/axis_geometry.hpp"

namespace fastloss {

// [Note: wide column items] A columns work item reads each class's row a piece as wide as the
// item at a time, and DRAM serves short pieces of many rows slowly ([Note: wide column runs],
// column_sweeps-inl.hpp): on Zen 4, the log-sum-exp of (32000, 4096) float32 down axis 0 took
// 47-50 ms in the 256-position items this used to cut (1 thread, the native harness), and 26 ms in
// items of 4096 positions with this sitting's other changes (BENCHMARKS.md, twenty-first). So an
// item spans kColumnItemBytes of the primary operand's class row, or, where that would leave a
// thread without an item, an equal share of the positions (whole cache lines, at least
// kColumnMinItemBytes). Each lane's arithmetic is the same in any item, and every sum over
// positions is taken after the kernels, in position order, so the results do not depend on the
// cut, and the cut may depend on the thread count ([Note: fixed chunking] is about sums).
constexpr int64_t kColumnItemBytes = 16384;
constexpr int64_t kColumnMinItemBytes = 1024;

// Positions per columns work item for `columns` positions along the contiguous axis at each of
// `outer` outer positions, elements of element_bytes ([Note: wide column items]).
int64_t column_item_positions(int64_t columns, int64_t outer, int64_t element_bytes);

// rows(offsets, run_strides, n):       n consecutive rows; row k of operand op starts at
//                                       offsets[op] + k * run_strides[op].
// columns(offsets, n):                  n consecutive positions along the contiguous axis,
//                                       starting at offsets[op] in operand op.
// staged(begin, end):                   outer positions [begin, end) (use g.outer_offsets).
// Every callback must be safe to call concurrently on disjoint positions. element_bytes: the size
// of the primary operand's elements, which sets the width of a columns work item.
template <class RowsFn, class ColumnsFn, class StagedFn>
void parallel_over_positions(const AxisGeometry& g, int64_t element_bytes, RowsFn&& rows, ColumnsFn&& columns,
                             StagedFn&& staged) {
    const int64_t outer = g.outer_count();
    const int64_t classes = g.classes;
    if (outer == 0 || g.columns == 0) return;
    const int64_t per_position = classes > 0 ? classes : 1;

    switch (g.layout) {
    case AxisGeometry::Layout::rows:
        parallel_for(outer, per_position, [&](int64_t begin, int64_t end) {
            const int64_t run = g.run_length();
            int64_t offsets[kMaxOperands], strides[kMaxOperands];
            for (int op = 0; op < g.operands; ++op) strides[op] = g.run_stride(op);
            for (int64_t i = begin; i < end;) {
                const int64_t piece = std::min(end - i, run - i % run);
                g.outer_offsets(i, offsets);
                rows(offsets, strides, piece);
                i += piece;
            }
        });
        break;
    case AxisGeometry::Layout::columns: {
        const int64_t width = column_item_positions(g.columns, outer, element_bytes);
        const int64_t blocks = (g.columns + width - 1) / width;
        parallel_for(outer * blocks, width * per_position, [&](int64_t begin, int64_t end) {
            int64_t offsets[kMaxOperands];
            for (int64_t item = begin; item < end; ++item) {
                const int64_t o = item / blocks, first = (item % blocks) * width;
                g.outer_offsets(o, offsets);
                for (int op = 0; op < g.operands; ++op) offsets[op] += first * g.column_stride[op];
                columns(offsets, std::min(width, g.columns - first));
            }
        });
        break;
    }
    case AxisGeometry::Layout::staged:
        parallel_for(outer, per_position, staged);
        break;
    }
}

// fn(offsets) for every position of outer positions [begin, end), in order (all columns of
// each). Offsets advance by strides along runs; only the start of each run is computed by
// division. Offset arrays are always handled whole (kMaxOperands entries, unused ones 0): a copy
// of `operands` entries is a variable-length loop, which GCC turns into a call to memmove, and at
// one call per position that would dominate the cost of nll_loss.
// fn is taken by value: a local copy of its captures can stay in registers.
template <class Fn>
void visit_positions(const AxisGeometry& g, int64_t begin, int64_t end, Fn fn) {
    if (begin >= end) return;
    const int64_t run = g.run_length();
    int64_t run_stride[kMaxOperands] = {}, column_stride[kMaxOperands] = {};
    for (int op = 0; op < g.operands; ++op) {
        run_stride[op] = g.run_stride(op);
        column_stride[op] = g.column_stride[op];
    }
    // row: the offsets of outer position o, advanced by run_stride. Only `start` is passed to
    // outer_offsets, so that `row` can live in registers.
    int64_t start[kMaxOperands] = {}, row[kMaxOperands];
    g.outer_offsets(begin, start);
    for (int op = 0; op < kMaxOperands; ++op) row[op] = start[op];
    int64_t left_in_run = run - begin % run;
    for (int64_t o = begin; o < end; ++o) {
        if (g.columns == 1) {
            fn(static_cast<const int64_t*>(row));
        } else {
            int64_t at[kMaxOperands];
            for (int op = 0; op < kMaxOperands; ++op) at[op] = row[op];
            for (int64_t j = 0; j < g.columns; ++j) {
                fn(static_cast<const int64_t*>(at));
                for (int op = 0; op < kMaxOperands; ++op) at[op] += column_stride[op];
            }
        }
        if (--left_in_run == 0) {
            if (o + 1 < end) {
                g.outer_offsets(o + 1, start);
                for (int op = 0; op < kMaxOperands; ++op) row[op] = start[op];
            }
            left_in_run = run;
        } else {
            for (int op = 0; op < kMaxOperands; ++op) row[op] += run_stride[op];
        }
    }
}

// Serial visit of every position in order: fn(offsets). For O(positions) work (target checks).
template <class Fn>
void for_each_position(const AxisGeometry& g, Fn&& fn) {
    visit_positions(g, 0, g.outer_count(), fn);
}

// The same visit on several threads when the work (work_per_position element-visits per
// position) is worth a parallel region: fn must be safe to call concurrently on different
// positions.
template <class Fn>
void parallel_for_each_position(const AxisGeometry& g, int64_t work_per_position, Fn&& fn) {
    if (g.columns == 0) return;
    parallel_for(g.outer_count(), work_per_position * g.columns,
                 [&](int64_t begin, int64_t end) { visit_positions(g, begin, end, fn); });
}

// The same visit for one operand only: fn(offset of position i in operand op), in order. Kept
// apart from visit_positions, which advances every operand's offset: the target checks of
// nll_loss need one, and advancing the others costs them as much again (BENCHMARKS.md).
template <class Fn>
void for_each_offset(const AxisGeometry& g, int op, Fn&& fn) {
    const int64_t outer = g.outer_count();
    const int64_t run = g.run_length();
    const int64_t run_stride = g.run_stride(op), column_stride = g.column_stride[op];
    int64_t start[kMaxOperands];
    for (int64_t o = 0; o < outer; o += run) {
        g.outer_offsets(o, start);
        if (g.columns == 1) {
            for (int64_t r = 0, at = start[op]; r < run; ++r, at += run_stride) fn(at);
            continue;
        }
        for (int64_t r = 0, row = start[op]; r < run; ++r, row += run_stride) {
            for (int64_t j = 0, at = row; j < g.columns; ++j, at += column_stride) fn(at);
        }
    }
}

// Copies one strided row into a contiguous buffer.
template <class T>
void gather_row(const T* row, int64_t stride, int64_t n, T* out) {
    for (int64_t c = 0; c < n; ++c) out[c] = row[c * stride];
}

}  // namespace fastloss
