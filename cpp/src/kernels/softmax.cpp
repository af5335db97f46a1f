// softmax, log_softmax and logsumexp over rows and over columns (see kernel_table.hpp).
//
// Sweeps per row (a row of up to ~256k floats stays in L2 between them, so DRAM sees one read
// and one write per element):
//   log_softmax, logsumexp: 1. m and s = sum_c exp(x_c - m): one online sweep for long rows
//                              [Note: online softmax in row_statistics-inl.hpp], a max sweep
//                              and an exp sweep for short ones [Note: two sweeps for short rows]
//                           2. y_c = (x_c - m) - log(s)  (log_softmax only)
//   softmax:                1. m = max_c x_c   2. y_c = exp(x_c - m), s = sum_c y_c
//                           3. y_c *= 1 / s  (two sweeps plus one of cheap multiplies, rather
//                              than computing every exponential twice; a streamed output, and
//                              every half-precision one, stages sweep 2 in a scratch row
//                              [Note: softmax's exponentials staged in a scratch row])
// On AVX-512, rows longer than 8192 classes are written while the next row's statistics are taken
// (log_softmax, and softmax in float32 and float64, whose statistics sweep then stages the
// exponentials that its write scales: [Note: staged exponentials]):
// [Note: the next row's statistics while a row is written].
// The order "(x - m) - log s" is deliberate: x - (m + log s) loses the low bits of x - m when m
// is large (pytorch#11752). softmax stores exp(x_c - m) in sweep 2 and rescales it in sweep 3.
//
// Edge cases follow PyTorch, and mostly fall out of IEEE arithmetic:
//   * all -inf row: m = -inf, x - m = NaN, so softmax and log_softmax are NaN;
//   * a +inf in the row: m = +inf, inf - inf = NaN, the whole row is NaN;
//   * a NaN in the row: the sum is NaN, so the row is NaN (whether or not max() kept the NaN);
//   * logsumexp shifts by 0 instead of an infinite m (as torch.logsumexp does), so an all -inf
//     row gives -inf and a row containing +inf gives +inf (NaN if it also holds a NaN).
#include <algorithm>
#include <memory>
#include <optional>

#include "fastloss/kernel_table.hpp"
#include "fastloss/scratch.hpp"
#include "kernels/column_sweeps-inl.hpp"
#include "kernels/overlapped_rows-inl.hpp"
#include "kernels/row_statistics-inl.hpp"
#include "kernels/store_row-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

// W rows in lanes [Note: few classes], with the bits of the row sweeps below [Note: rows in lanes,
// summed in the row sweep's order]: log_softmax, or softmax (kLog false). Each shifts its sum as its
// row sweep does: row_max_sum's shift (0 for an all -inf row) for log_softmax, the max itself for
// softmax.
template <bool kLog, class S>
void softmax_rows_in_lanes(const S* x, int64_t x_row_stride, S* y, int64_t y_row_stride, int64_t classes) {
    using T = compute_t<S>;
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    V values[2 * W], exponentials[2 * W];
    const V m = gather_rows(x, x_row_stride, classes, values);
    const V shift = kLog ? select(equal(m, V::broadcast(-infinity<T>())), V::broadcast(T(0)), m) : m;
    for (int64_t c = 0; c < classes; ++c) exponentials[c] = vexp_nonpositive(values[c] - shift);
    const V sum = sum_in_row_order<V>(classes, [&](int64_t c) { return exponentials[c]; });
    if constexpr (kLog) {
        const V log_sum = vlog(sum);
        for (int64_t c = 0; c < classes; ++c) vscatter(y + c, y_row_stride, (values[c] - m) - log_sum);
    } else {
        const V inverse_sum = V::broadcast(T(1)) / sum;
        for (int64_t c = 0; c < classes; ++c) vscatter(y + c, y_row_stride, exponentials[c] * inverse_sum);
    }
}

template <class S>
void log_softmax_rows(const S* x, int64_t x_row_stride, S* y, int64_t y_row_stride, int64_t rows,
                      int64_t classes, bool stream_output) {
    using T = compute_t<S>;
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    int64_t r = 0;
    if (rows_fit_lanes<S>(classes, x_row_stride)) {  // [Note: few classes]
        for (; r + W <= rows; r += W) {
            softmax_rows_in_lanes<true>(x + r * x_row_stride, x_row_stride, y + r * y_row_stride, y_row_stride,
                                       classes);
        }
    }
    // y_i = (x_i - m) - log(s) for the row at xr, a vector at a time.
    const auto row_value = [&](const S* xr, RowMaxSum<T> ms) {
        const V vm = V::broadcast(ms.max), vl = V::broadcast(scalar_log(ms.sum));
        return [=](int64_t i) {
            const V v = i + W <= classes ? vload(xr + i) : vload_partial(xr + i, classes - i, T(0));
            return (v - vm) - vl;
        };
    };
    // [Note: the next row's statistics while a row is written]
    if (kOverlapLongRows && classes > kTwoSweepMaxClasses) {
        write_long_rows(
            x + r * x_row_stride, x_row_stride, y + r * y_row_stride, y_row_stride, rows - r, classes, stream_output,
            [&](int64_t, const S* xr, RowMaxSum<T> ms) { return row_value(xr, ms); }, [](int64_t) {});
        r = rows;
    }
    for (; r < rows; ++r) {
        const S* xr = x + r * x_row_stride;
        const RowMaxSum<T> ms = row_max_sum(xr, classes, next_row(xr, r, rows, x_row_stride));
        store_row(y + r * y_row_stride, classes, stream_output, row_value(xr, ms));
    }
    if (stream_output) stream_fence();
}

// [Note: softmax's exponentials staged in a scratch row] Written into y, sweep 2's exponentials
// make every line of y be read from memory before it is written, and they go back out when
// evicted: 1.5 times the traffic of a read and a write. When the output is streamed, sweep 2 writes
// them into one scratch row (in L2 from row to row) and sweep 3 streams e * (1 / s) into y, the
// same products as in place, so the bits do not change. AVX-512, 4096 x 32000, 2 threads: float32
// 1.30x -> 1.05x its memory roofline, float64 1.45x -> 1.27x (BENCHMARKS.md). Computing each
// exponential again in sweep 3 instead lost on AVX2 and for float64, whose exponentials cost more.
// Half storage always stages its exponentials, in float32 (stored in half and rescaled, they would
// round twice). It used to compute them again in sweep 3; staging took bfloat16 softmax, 2 threads,
// from 1.21-1.29 to 0.83-0.84 ms on 4096 x 1000 (AVX-512) and from 22.1-22.8 to 12.5-13.1 ms on
// 1024 x 32000 (AVX2).
template <class S>
void softmax_rows(const S* x, int64_t x_row_stride, S* y, int64_t y_row_stride, int64_t rows,
                  int64_t classes, bool stream_output) {
    using T = compute_t<S>;
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    int64_t r = 0;
    if (rows_fit_lanes<S>(classes, x_row_stride)) {  // [Note: few classes]
        for (; r + W <= rows; r += W) {
            softmax_rows_in_lanes<false>(x + r * x_row_stride, x_row_stride, y + r * y_row_stride, y_row_stride,
                                        classes);
        }
    }
    // [Note: the next row's statistics while a row is written], with each row's exponentials
    // staged while its statistics are taken: [Note: staged exponentials]. Half storage keeps three
    // sweeps: overlapped, bfloat16 and float16 measured 1.0-1.3x slower (AVX-512, AMD Zen 4).
    if (kOverlapLongRows && classes > kTwoSweepMaxClasses && !is_half_storage<S>) {
        write_long_staged_rows(
            x + r * x_row_stride, x_row_stride, y + r * y_row_stride, y_row_stride, rows - r, classes, stream_output,
            [](int64_t, const S*, RowMaxSum<T> ms) { return std::optional<T>(T(1) / ms.sum); },
            [](int64_t) {});
        r = rows;
    }
    std::unique_ptr<T[]> staged;
    for (; r < rows; ++r) {
        const S* xr = x + r * x_row_stride;
        S* yr = y + r * y_row_stride;
        const T m = row_max(xr, classes);
        // Half storage stages too: exp(x - m) stored in half and rescaled would round twice.
        if (stream_output || is_half_storage<S>) {  // [Note: softmax's exponentials staged in a scratch row]
            if (!staged) staged = uninitialised_scratch<T>(classes, "a row of softmax's exponentials");
            T* e = staged.get();
            const V inv = V::broadcast(T(1) / row_sum_exp(xr, m, e, classes, next_row(xr, r, rows, x_row_stride)));
            store_row(yr, classes, stream_output, [&](int64_t i) {
                return (i + W <= classes ? vload(e + i) : vload_partial(e + i, classes - i, T(0))) * inv;
            });
            continue;
        }
        const V inv = V::broadcast(T(1) / row_sum_exp(xr, m, yr, classes, next_row(xr, r, rows, x_row_stride)));
        int64_t i = 0;
        for (; i + W <= classes; i += W) store(yr + i, vload(yr + i) * inv);
        if (i < classes) store_partial(yr + i, classes - i, vload_partial(yr + i, classes - i, T(0)) * inv);
    }
    if (stream_output) stream_fence();
}

template <class S>
void logsumexp_rows(const S* x, int64_t x_row_stride, S* out, int64_t out_stride, int64_t rows,
                    int64_t classes) {
    using T = compute_t<S>;
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    int64_t r = 0;
    if (rows_fit_lanes<S>(classes, x_row_stride)) {  // [Note: few classes]
        for (; r + W <= rows; r += W) {
            const LanesShiftSum<T> ss = lanes_shift_sum(x + r * x_row_stride, x_row_stride, classes, true);
            T lanes[W];
            store(lanes, vlog(ss.sum) + ss.shift);
            for (int64_t k = 0; k < W; ++k) out[(r + k) * out_stride] = lanes[k];
        }
    }
    for (; r < rows; ++r) {
        const S* xr = x + r * x_row_stride;
        const RowMaxSum<T> ms = row_max_sum(xr, classes, next_row(xr, r, rows, x_row_stride));
        if (!is_infinite(ms.max)) {
            out[r * out_stride] = scalar_log(ms.sum) + ms.max;
        } else {  // all -inf gives -inf; +inf gives +inf unless the row also holds a NaN
            out[r * out_stride] =
                scalar_log(row_sum_exp<ShiftKind::any_shift>(xr, T(0), static_cast<S*>(nullptr), classes));
        }
    }
}

// Columns: each lane of a vector is one position. The max and the sum come from one online sweep
// down the class axis ([Note: online sweep down the columns]); softmax and log_softmax then make
// a second sweep to write y.
template <class S>
void log_softmax_columns(const S* x, int64_t x_class_stride, S* y, int64_t y_class_stride,
                         int64_t columns, int64_t classes, bool stream_output) {
    using T = compute_t<S>;
    using V = Vec<T>;
    V max[column_run_blocks<S>()][kColumnVectors], log_sum[column_run_blocks<S>()][kColumnVectors];
    for_each_column_run_stats(
        x, x_class_stride, columns, classes, stream_output,
        [&](int64_t b, int64_t, int64_t count, int64_t, const LanesMaxSum<T>* stats) {
            for (int64_t k = 0; k < count; ++k) {
                max[b][k] = stats[k].max;
                log_sum[b][k] = vlog(stats[k].sum);
            }
        },
        [&](const ColumnBlock* blocks, int64_t n) {
            write_column_run(x, x_class_stride, y, y_class_stride, blocks, n, classes, stream_output,
                             [&](int64_t b, int64_t k, V v) { return (v - max[b][k]) - log_sum[b][k]; });
        },
        column_writer_is_narrow<S>(classes));
}

template <class S>
void softmax_columns(const S* x, int64_t x_class_stride, S* y, int64_t y_class_stride,
                     int64_t columns, int64_t classes, bool stream_output) {
    using T = compute_t<S>;
    using V = Vec<T>;
    V max[column_run_blocks<S>()][kColumnVectors], inv[column_run_blocks<S>()][kColumnVectors];
    for_each_column_run_stats(
        x, x_class_stride, columns, classes, stream_output,
        [&](int64_t b, int64_t, int64_t count, int64_t, const LanesMaxSum<T>* stats) {
            for (int64_t k = 0; k < count; ++k) {
                max[b][k] = stats[k].max;
                inv[b][k] = V::broadcast(T(1)) / stats[k].sum;
            }
        },
        [&](const ColumnBlock* blocks, int64_t n) {
            write_column_run(x, x_class_stride, y, y_class_stride, blocks, n, classes, stream_output,
                             [&](int64_t b, int64_t k, V v) { return vexp(v - max[b][k]) * inv[b][k]; });
        },
        column_writer_is_narrow<S>(classes));
}

template <class S>
void logsumexp_columns(const S* x, int64_t x_class_stride, S* out, int64_t out_stride,
                       int64_t columns, int64_t classes) {
    using T = compute_t<S>;
    using V = Vec<T>;
    for_each_column_block(x, x_class_stride, columns, classes,
                          [&](int64_t j, int64_t count, int64_t lanes, const LanesMaxSum<T>* stats) {
        for (int64_t k = 0; k < count; ++k) {
            const int64_t at = j + k * V::width;
            const int64_t n = count == 1 ? lanes : V::width;
            const LanesMaxSum<T>& ms = stats[k];
            V result = vlog(ms.sum) + ms.max;
            // A lane whose max is +inf has S = NaN (inf - inf); torch.logsumexp gives +inf there
            // unless the position also holds a NaN: the sum relative to 0 says which, as for the
            // rows.
            T maxima[V::width];
            store(maxima, ms.max);
            if (std::find(maxima, maxima + n, infinity<T>()) != maxima + n) {
                V s = V::broadcast(T(0));
                for (int64_t c = 0; c < classes; ++c) {
                    const S* p = x + c * x_class_stride + at;
                    s = s + vexp(n == V::width ? vload(p) : vload_partial(p, n, -infinity<T>()));
                }
                result = select(equal(ms.max, V::broadcast(infinity<T>())), vlog(s), result);
            }
            if (out_stride == 1) {
                if (n == V::width) store(out + at, result); else store_partial(out + at, n, result);
            } else {
                T lanes_out[V::width];
                store(lanes_out, result);
                for (int64_t i = 0; i < n; ++i) out[(at + i) * out_stride] = lanes_out[i];
            }
        }
    });
}

template <class S>
SoftmaxKernels<S> make_softmax_kernels() {
    SoftmaxKernels<S> k;
    k.log_softmax_rows = &log_softmax_rows<S>;
    k.softmax_rows = &softmax_rows<S>;
    k.logsumexp_rows = &logsumexp_rows<S>;
    k.log_softmax_columns = &log_softmax_columns<S>;
    k.softmax_columns = &softmax_columns<S>;
    k.logsumexp_columns = &logsumexp_columns<S>;
    return k;
}

}  // namespace

void register_softmax_kernels(KernelTable& table) {
    for_each_kernel_set(table, [](auto& set) {
        set.softmax = make_softmax_kernels<typename std::decay_t<decltype(set)>::Storage>();
    });
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
