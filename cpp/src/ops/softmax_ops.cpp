#include "ops/softmax_ops.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fastloss/dispatch.hpp"
#include "fastloss/half.hpp"
#include "fastloss/parallel.hpp"
#include "fastloss/scratch.hpp"
#include "ops/axis_geometry.hpp"
#include "ops/position_loops.hpp"
#include "ops/streaming_stores.hpp"

namespace fastloss {
namespace {

// A staged row of a reduction (logsumexp, entropy) longer than this is gathered this many classes
// at a time, so the scratch stays small however long the row: a zero-stride view can have 2^31
// classes and no memory behind them, and staging it whole allocated 16 GiB.
constexpr int64_t kStageBlockClasses = int64_t(1) << 16;

// Calls block(values, n) for each block of a strided row of any length, gathered into scratch of
// the compute type T (half-precision values widened once), so that blocks are reduced by the T
// kernels and their results combined without rounding to S in between.
template <class S, class Block>
void for_each_row_block(const S* x, int64_t stride, int64_t classes, Block&& block) {
    using T = compute_t<S>;
    std::vector<T> scratch = scratch_vector<T>(std::min(kStageBlockClasses, classes), "a staged row block");
    for (int64_t begin = 0; begin < classes; begin += kStageBlockClasses) {
        const int64_t n = std::min(kStageBlockClasses, classes - begin);
        for (int64_t c = 0; c < n; ++c) scratch[size_t(c)] = T(x[(begin + c) * stride]);
        block(static_cast<const T*>(scratch.data()), n);
    }
}

// logsumexp of a long strided row: lse(a ∪ b) = lse(lse(a), lse(b)) (inf and NaN included: a
// block's +inf or NaN carries over).
template <class S>
void logsumexp_of_long_row(const S* x, int64_t stride, int64_t classes, S* out) {
    using T = compute_t<S>;
    const SoftmaxKernels<T>& k = active_kernels().kernels<T>().softmax;
    std::vector<T> lse;
    for_each_row_block(x, stride, classes, [&](const T* block, int64_t n) {
        T value;
        k.logsumexp_rows(block, n, &value, 1, 1, n);
        lse.push_back(value);
    });
    T result;
    k.logsumexp_rows(lse.data(), int64_t(lse.size()), &result, 1, 1, int64_t(lse.size()));
    *out = S(result);
}

// Entropy of a long strided row. Probabilities: the sum of the blocks' sums. Logits, by the chain
// rule of entropy: with block b's logsumexp l_b and entropy H_b (of the softmax within the block),
// the row's lse l and the blocks' shares w_b = exp(l_b - l),
//   H = sum_b w_b H_b - sum_b w_b log w_b = sum_b w_b (H_b - (l_b - l)),
// blocks with w_b = 0 (all -inf) adding nothing; a row whose l is not finite (all -inf, +inf,
// NaN) is NaN, as the kernels give. Combined in float64.
template <class S>
void entropy_of_long_row(const S* x, int64_t stride, int64_t classes, S* out, bool probabilities) {
    using T = compute_t<S>;
    const KernelSet<T>& k = active_kernels().kernels<T>();
    std::vector<T> lse, entropy;
    for_each_row_block(x, stride, classes, [&](const T* block, int64_t n) {
        T h, l = T(0);
        if (probabilities) {
            k.entropy.probability_rows(block, n, &h, 1, 1, n);
        } else {
            k.softmax.logsumexp_rows(block, n, &l, 1, 1, n);
            k.entropy.rows(block, n, &h, 1, 1, n);
        }
        lse.push_back(l);
        entropy.push_back(h);
    });
    const int64_t blocks = int64_t(entropy.size());
    double total = 0.0;
    if (probabilities) {
        for (const T h : entropy) total += double(h);
    } else {
        T row_lse;
        k.softmax.logsumexp_rows(lse.data(), blocks, &row_lse, 1, 1, blocks);
        if (!std::isfinite(row_lse)) {
            total = std::numeric_limits<double>::quiet_NaN();
        } else {
            for (int64_t b = 0; b < blocks; ++b) {
                const double shift = double(lse[size_t(b)]) - double(row_lse);
                const double w = std::exp(shift);
                if (w > 0.0) total += w * (double(entropy[size_t(b)]) - shift);
            }
        }
    }
    *out = S(T(total));
}

// Where each operand sits in the geometry: its index into the offset and stride arrays.
//  * softmax, log_softmax, logsumexp, entropy: the input x, and the output (full for softmax and
//    log_softmax, reduced for logsumexp and entropy);
//  * softmax_backward: the incoming gradient g, the forward output y and the gradient dx written
//    (the names of the formulas in kernel_table.hpp).
struct AxisKernelSlot {
    enum : int { x, out };
};
struct SoftmaxBackwardSlot {
    enum : int { g, y, dx };
};

// softmax and log_softmax write whole rows: they never reduce a long row in blocks.
template <class T>
void no_long_rows(const T*, int64_t, int64_t, T*) {}

// Runs a softmax-family kernel pair over a geometry of AxisKernelSlot operands.
// A staged row longer than kStageBlockClasses of a reduction goes to reduce_long_row(x, stride,
// classes, out) instead of being gathered whole.
template <class T, class RowsKernel, class ColumnsKernel, class LongRowReducer>
void run_axis_kernel(const AxisGeometry& g, const T* x, T* out, bool out_is_full, RowsKernel rows_kernel,
                     ColumnsKernel columns_kernel, LongRowReducer reduce_long_row) {
    using Slot = AxisKernelSlot;
    const int64_t classes = g.classes;
    if (classes == 0) return;
    parallel_over_positions(
        g, int64_t(sizeof(T)),
        [&](const int64_t* offsets, const int64_t* strides, int64_t rows) {
            rows_kernel(x + offsets[Slot::x], strides[Slot::x], out + offsets[Slot::out], strides[Slot::out], rows,
                        classes);
        },
        [&](const int64_t* offsets, int64_t columns) {
            columns_kernel(x + offsets[Slot::x], g.class_stride[Slot::x], out + offsets[Slot::out],
                           out_is_full ? g.class_stride[Slot::out] : g.column_stride[Slot::out], columns, classes);
        },
        [&](int64_t begin, int64_t end) {
            const bool in_blocks = !out_is_full && classes > kStageBlockClasses;
            std::vector<T> scratch = scratch_vector<T>(in_blocks ? 0 : classes, "a staged row");
            int64_t offsets[kMaxOperands];
            for (int64_t i = begin; i < end; ++i) {
                g.outer_offsets(i, offsets);
                if (in_blocks) {
                    reduce_long_row(x + offsets[Slot::x], g.class_stride[Slot::x], classes, out + offsets[Slot::out]);
                    continue;
                }
                gather_row(x + offsets[Slot::x], g.class_stride[Slot::x], classes, scratch.data());
                T* out_row = out + offsets[Slot::out];
                if (out_is_full) {
                    rows_kernel(scratch.data(), classes, scratch.data(), classes, 1, classes);
                    const int64_t s = g.class_stride[Slot::out];
                    for (int64_t c = 0; c < classes; ++c) out_row[c * s] = scratch[c];
                } else {
                    rows_kernel(scratch.data(), classes, out_row, 1, 1, classes);
                }
            }
        });
}

}  // namespace

template <class T>
void softmax_forward(SoftmaxKind kind, const T* x, const Extents& x_strides, T* y,
                     const Extents& y_strides, const Extents& shape,
                     int axis) {
    const AxisGeometry g = make_axis_geometry(shape, axis, {x_strides, y_strides},  // AxisKernelSlot order
                                              {OperandRole::full, OperandRole::full});
    const SoftmaxKernels<T>& k = active_kernels().kernels<T>().softmax;
    int64_t bytes = int64_t(sizeof(T));
    for (int64_t n : shape) bytes *= n;
    // Staged rows are written into a scratch row first, which must stay in cache.
    const bool stream = g.layout != AxisGeometry::Layout::staged && bytes >= streaming_store_min_bytes();
    const auto rows_of = kind == SoftmaxKind::softmax ? k.softmax_rows : k.log_softmax_rows;
    auto rows_kernel = [rows_of, stream](const T* xp, int64_t xs, T* yp, int64_t ys, int64_t rows, int64_t classes) {
        rows_of(xp, xs, yp, ys, rows, classes, stream);
    };
    const auto columns_of = kind == SoftmaxKind::softmax ? k.softmax_columns : k.log_softmax_columns;
    auto columns_kernel = [columns_of, stream](const T* xp, int64_t xs, T* yp, int64_t ys, int64_t columns,
                                               int64_t classes) {
        columns_of(xp, xs, yp, ys, columns, classes, stream);
    };
    run_axis_kernel(g, x, y, true, rows_kernel, columns_kernel, no_long_rows<T>);
}

template <class T>
void logsumexp_forward(const T* x, const Extents& x_strides, T* out,
                       const Extents& out_strides, const Extents& shape,
                       int axis) {
    const AxisGeometry g = make_axis_geometry(shape, axis, {x_strides, out_strides},  // AxisKernelSlot order
                                              {OperandRole::full, OperandRole::reduced});
    const SoftmaxKernels<T>& k = active_kernels().kernels<T>().softmax;
    run_axis_kernel(g, x, out, false, k.logsumexp_rows, k.logsumexp_columns, logsumexp_of_long_row<T>);
}

template <class T>
void softmax_backward(SoftmaxKind kind, const T* g, const Extents& g_strides, const T* y,
                      const Extents& y_strides, T* dx, const Extents& dx_strides,
                      const Extents& shape, int axis) {
    using Slot = SoftmaxBackwardSlot;
    const AxisGeometry geo = make_axis_geometry(shape, axis, {g_strides, y_strides, dx_strides},  // Slot order
                                                {OperandRole::full, OperandRole::full, OperandRole::full});
    const SoftmaxBackwardKernels<T>& k = active_kernels().kernels<T>().softmax_backward;
    const bool log = kind == SoftmaxKind::log_softmax;
    const auto rows_kernel = log ? k.log_softmax_rows : k.softmax_rows;
    const auto columns_kernel = log ? k.log_softmax_columns : k.softmax_columns;
    const int64_t classes = geo.classes;
    if (classes == 0) return;
    parallel_over_positions(
        geo, int64_t(sizeof(T)),
        [&](const int64_t* at, const int64_t* step, int64_t rows) {
            rows_kernel(g + at[Slot::g], step[Slot::g], y + at[Slot::y], step[Slot::y], dx + at[Slot::dx],
                        step[Slot::dx], rows, classes);
        },
        [&](const int64_t* at, int64_t columns) {
            columns_kernel(g + at[Slot::g], geo.class_stride[Slot::g], y + at[Slot::y], geo.class_stride[Slot::y],
                           dx + at[Slot::dx], geo.class_stride[Slot::dx], columns, classes);
        },
        [&](int64_t begin, int64_t end) {
            std::vector<T> g_row = scratch_vector<T>(classes, "a staged gradient row");
            std::vector<T> y_row = scratch_vector<T>(classes, "a staged output row");
            int64_t at[kMaxOperands];
            for (int64_t i = begin; i < end; ++i) {
                geo.outer_offsets(i, at);
                gather_row(g + at[Slot::g], geo.class_stride[Slot::g], classes, g_row.data());
                gather_row(y + at[Slot::y], geo.class_stride[Slot::y], classes, y_row.data());
                rows_kernel(g_row.data(), classes, y_row.data(), classes, g_row.data(), classes, 1, classes);
                T* dx_row = dx + at[Slot::dx];
                for (int64_t c = 0; c < classes; ++c) dx_row[c * geo.class_stride[Slot::dx]] = g_row[size_t(c)];
            }
        });
}

template <class T>
void entropy_forward(const T* x, const Extents& x_strides, T* out,
                     const Extents& out_strides, const Extents& shape,
                     int axis, bool probabilities) {
    const AxisGeometry g = make_axis_geometry(shape, axis, {x_strides, out_strides},  // AxisKernelSlot order
                                              {OperandRole::full, OperandRole::reduced});
    if (g.classes == 0) {  // no kernel runs: the empty sum
        int64_t offsets[kMaxOperands];
        for (int64_t o = 0; o < g.outer_count(); ++o) {
            g.outer_offsets(o, offsets);
            for (int64_t j = 0; j < g.columns; ++j) {
                out[offsets[AxisKernelSlot::out] + j * g.column_stride[AxisKernelSlot::out]] = T(0.0f);
            }
        }
        return;
    }
    const EntropyKernels<T>& k = active_kernels().kernels<T>().entropy;
    const auto long_row = [probabilities](const T* xp, int64_t stride, int64_t n, T* op) {
        entropy_of_long_row(xp, stride, n, op, probabilities);
    };
    if (probabilities) {
        run_axis_kernel(g, x, out, false, k.probability_rows, k.probability_columns, long_row);
    } else {
        run_axis_kernel(g, x, out, false, k.rows, k.columns, long_row);
    }
}

#define FASTLOSS_INSTANTIATE(S)                                                                              \
    template void softmax_forward<S>(SoftmaxKind, const S*, const Extents&, S*,                     \
                                     const Extents&, const Extents&, int);             \
    template void logsumexp_forward<S>(const S*, const Extents&, S*, const Extents&,   \
                                       const Extents&, int);                                       \
    template void softmax_backward<S>(SoftmaxKind, const S*, const Extents&, const S*,              \
                                      const Extents&, S*, const Extents&,              \
                                      const Extents&, int);                                        \
    template void entropy_forward<S>(const S*, const Extents&, S*, const Extents&,     \
                                     const Extents&, int, bool);
FASTLOSS_FOR_EACH_STORAGE_TYPE(FASTLOSS_INSTANTIATE)
#undef FASTLOSS_INSTANTIATE

}  // namespace fastloss
