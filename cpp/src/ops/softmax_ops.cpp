#include "ops/softmax_ops.hpp"

#include <algorithm>
#include <vector>

#include "fastloss/dispatch.hpp"
#include "fastloss/parallel.hpp"
#include "ops/axis_geometry.hpp"

namespace fastloss {
namespace {

// Positions per work item in the columns layout: enough to amortise the per-item offset
// arithmetic, few enough that a (positions x classes) block parallelises well.
constexpr int64_t kColumnBlock = 256;

// Calls rows_fn(x, x_row_stride, out, out_row_stride, rows) for runs of consecutive rows of the
// outer positions [begin, end), op 0 being the input and op 1 the output.
template <class T, class RowsFn>
void for_each_row_run(const AxisGeometry& g, const T* x, T* out, int64_t begin, int64_t end,
                      RowsFn&& rows_fn) {
    const int64_t run = g.run_length();
    int64_t offsets[kMaxOperands];
    for (int64_t i = begin; i < end;) {
        const int64_t piece = std::min(end - i, run - i % run);
        g.outer_offsets(i, offsets);
        rows_fn(x + offsets[0], g.run_stride(0), out + offsets[1], g.run_stride(1), piece);
        i += piece;
    }
}

// Gathers row i of x (class stride g.class_stride[0]) into scratch.
template <class T>
void gather_row(const AxisGeometry& g, const T* x_row, T* scratch) {
    const int64_t s = g.class_stride[0];
    for (int64_t c = 0; c < g.classes; ++c) scratch[c] = x_row[c * s];
}

template <class T, class RowsKernel, class ColumnsKernel>
void run_axis_kernel(const AxisGeometry& g, const T* x, T* out, bool out_is_full,
                     RowsKernel rows_kernel, ColumnsKernel columns_kernel) {
    const int64_t classes = g.classes;
    const int64_t outer = g.outer_count();
    if (outer == 0 || classes == 0) return;

    switch (g.layout) {
    case AxisGeometry::Layout::rows:
        parallel_for(outer, classes, [&](int64_t begin, int64_t end) {
            for_each_row_run(g, x, out, begin, end,
                             [&](const T* xp, int64_t xs, T* op, int64_t os, int64_t rows) {
                                 rows_kernel(xp, xs, op, os, rows, classes);
                             });
        });
        break;
    case AxisGeometry::Layout::columns: {
        const int64_t blocks = (g.columns + kColumnBlock - 1) / kColumnBlock;
        parallel_for(outer * blocks, kColumnBlock * classes, [&](int64_t begin, int64_t end) {
            int64_t offsets[kMaxOperands];
            for (int64_t item = begin; item < end; ++item) {
                const int64_t o = item / blocks, b = item % blocks;
                g.outer_offsets(o, offsets);
                const int64_t first = b * kColumnBlock;
                const int64_t n = std::min(kColumnBlock, g.columns - first);
                columns_kernel(x + offsets[0] + first * g.column_stride[0], g.class_stride[0],
                               out + offsets[1] + first * g.column_stride[1],
                               out_is_full ? g.class_stride[1] : g.column_stride[1], n, classes);
            }
        });
        break;
    }
    case AxisGeometry::Layout::staged:
        parallel_for(outer, classes, [&](int64_t begin, int64_t end) {
            std::vector<T> scratch(static_cast<size_t>(classes));
            int64_t offsets[kMaxOperands];
            for (int64_t i = begin; i < end; ++i) {
                g.outer_offsets(i, offsets);
                gather_row(g, x + offsets[0], scratch.data());
                T* out_row = out + offsets[1];
                if (out_is_full) {
                    rows_kernel(scratch.data(), classes, scratch.data(), classes, 1, classes);
                    const int64_t s = g.class_stride[1];
                    for (int64_t c = 0; c < classes; ++c) out_row[c * s] = scratch[c];
                } else {
                    rows_kernel(scratch.data(), classes, out_row, 1, 1, classes);
                }
            }
        });
        break;
    }
}

}  // namespace

template <class T>
void softmax_forward(SoftmaxKind kind, const T* x, const std::vector<int64_t>& x_strides, T* y,
                     const std::vector<int64_t>& y_strides, const std::vector<int64_t>& shape,
                     int axis) {
    const AxisGeometry g = make_axis_geometry(shape, axis, {x_strides, y_strides},
                                              {OperandRole::full, OperandRole::full});
    const SoftmaxKernels<T>& k = softmax_kernels<T>(active_kernels());
    if (kind == SoftmaxKind::softmax) {
        run_axis_kernel(g, x, y, true, k.softmax_rows, k.softmax_columns);
    } else {
        run_axis_kernel(g, x, y, true, k.log_softmax_rows, k.log_softmax_columns);
    }
}

template <class T>
void logsumexp_forward(const T* x, const std::vector<int64_t>& x_strides, T* out,
                       const std::vector<int64_t>& out_strides, const std::vector<int64_t>& shape,
                       int axis) {
    const AxisGeometry g = make_axis_geometry(shape, axis, {x_strides, out_strides},
                                              {OperandRole::full, OperandRole::reduced});
    const SoftmaxKernels<T>& k = softmax_kernels<T>(active_kernels());
    run_axis_kernel(g, x, out, false, k.logsumexp_rows, k.logsumexp_columns);
}

template void softmax_forward<float>(SoftmaxKind, const float*, const std::vector<int64_t>&, float*,
                                     const std::vector<int64_t>&, const std::vector<int64_t>&, int);
template void softmax_forward<double>(SoftmaxKind, const double*, const std::vector<int64_t>&,
                                      double*, const std::vector<int64_t>&,
                                      const std::vector<int64_t>&, int);
template void logsumexp_forward<float>(const float*, const std::vector<int64_t>&, float*,
                                       const std::vector<int64_t>&, const std::vector<int64_t>&, int);
template void logsumexp_forward<double>(const double*, const std::vector<int64_t>&, double*,
                                        const std::vector<int64_t>&, const std::vector<int64_t>&,
                                        int);

}  // namespace fastloss
