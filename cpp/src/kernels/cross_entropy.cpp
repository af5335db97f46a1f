// Cross-entropy from logits, fused: no log_softmax is ever materialised.
//
// Per position, with m = max_c x_c, s = sum_c exp(x_c - m) and lse = m + log s:
//   index target y:   nll_y = lse - x_y = log s - (x_y - m)
//                     loss  = (1-eps) w_y nll_y + (eps/C) sum_c w_c (lse - x_c)
//                           = (1-eps) w_y nll_y + (eps/C) (W log s - sum_c w_c (x_c - m))
//   probabilities q:  q'_c  = (1-eps) q_c + eps/C
//                     loss  = -sum_c w_c q'_c (x_c - lse)
//                           = (sum_c w_c q'_c) log s - sum_c w_c q'_c (x_c - m)
// Every sum runs over x_c - m (<= 0), never over raw logits, so no large terms cancel: these are
// the quantities PyTorch's log_softmax-then-gather forms, with the same NaN/inf behaviour (an all
// -inf row is NaN; with eps > 0 any -inf logit makes the loss inf; q = 0 at a -inf logit is NaN).
//
// Without label smoothing row_max_sum finds m and s (one online sweep for long rows [Note: online
// softmax], two for short ones [Note: two sweeps for short rows]); with it, and for probability
// targets, a max sweep comes first and the second sweep reads from L1/L2.
// Either way DRAM sees each logit once. Ignored rows are skipped without being read, so NaN or inf there cannot leak.
#include "fastloss/kernel_table.hpp"
#include "kernels/cross_entropy-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

// Rows [first, first + W) of the block in lanes [Note: few classes], without label smoothing.
template <class S, class T = compute_t<S>>
void index_rows_in_lanes(const CrossEntropyBlock<S>& b, int64_t first, const CrossEntropyParams<T>& p) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const S* x = b.input + first * b.input_stride;
    const LanesShiftSum<T> ss = lanes_shift_sum(x, b.input_stride, p.classes, false);
    T m[W], log_s[W];
    store(m, ss.shift);
    store(log_s, vlog(ss.sum));
    for (int64_t k = 0; k < W; ++k) {
        const int64_t y = b.target[(first + k) * b.target_stride];
        T& out = b.loss[(first + k) * b.loss_stride];
        if (y == p.ignore_index) {
            out = T(0);
            continue;
        }
        const T w_y = p.weight ? p.weight[y] : T(1);
        out = w_y * (log_s[k] - (x[k * b.input_stride + y] - m[k]));
    }
}

template <class S, class T = compute_t<S>>
void index_rows(const CrossEntropyBlock<S>& b, const CrossEntropyParams<T>& p) {
    constexpr int64_t W = Vec<T>::width;
    const int64_t C = p.classes;
    int64_t r = 0;
    if (p.label_smoothing == T(0) && rows_fit_lanes<T>(C, b.input_stride)) {
        for (; r + W <= b.count; r += W) index_rows_in_lanes(b, r, p);
    }
    for (; r < b.count; ++r) {
        const int64_t y = b.target[r * b.target_stride];
        if (y == p.ignore_index) {
            b.loss[r * b.loss_stride] = T(0);
            continue;
        }
        const S* xr = b.input + r * b.input_stride;
        T m, s, t = T(0);
        if (p.label_smoothing == T(0)) {
            const RowMaxSum<T> ms = row_max_sum(xr, C, next_row(xr, r, b.count, b.input_stride));
            m = ms.max;
            s = ms.sum;
        } else {  // the smoothing sum is over x - m, so m must be known first
            m = row_max(xr, C);
            row_sum_exp_and_shifted_sum(xr, m, p.weight, C, s, t);
        }
        const T w_y = p.weight ? p.weight[y] : T(1);
        b.loss[r * b.loss_stride] = index_loss(scalar_log(s), xr[y] - m, w_y, t, p);
    }
}

// Probability targets: one sweep after the max gathers s, A = sum w q' (x - m), B = sum w q'.
template <class S, class T = compute_t<S>>
void probability_rows(const CrossEntropyBlock<S>& b, const CrossEntropyParams<T>& p) {
    const int64_t C = p.classes;
    for (int64_t r = 0; r < b.count; ++r) {
        const S* xr = b.input + r * b.input_stride;
        const ProbabilityRowSums<T> sums = probability_row_sums<S>(xr, b.probabilities + r * b.probability_stride,
                                                                   row_max(xr, C), C, p, nullptr);
        b.loss[r * b.loss_stride] = sums.weight_total * scalar_log(sums.sum) - sums.weighted_shifted_sum;
    }
}

// Columns layout: lanes are positions. The same sweeps run down the class axis, then each lane
// finishes its own target (a scalar gather: one load per position).
template <class S, class T = compute_t<S>>
void index_columns(const CrossEntropyBlock<S>& b, const CrossEntropyParams<T>& p) {
    constexpr int64_t W = Vec<T>::width;
    const S* x = b.input;
    const int64_t x_class_stride = b.input_stride;
    for (int64_t j = 0; j < b.count; j += W) {
        const int64_t lanes = b.count - j < W ? b.count - j : W;
        const ColumnStatistics<T> st = index_column_statistics(x + j, x_class_stride, lanes, p);
        T m_lane[W], log_s_lane[W], t_lane[W];
        store(m_lane, st.max);
        store(log_s_lane, vlog(st.sum));
        store(t_lane, st.shifted_sum);
        for (int64_t k = 0; k < lanes; ++k) {
            const int64_t y = b.target[(j + k) * b.target_stride];
            T& out = b.loss[(j + k) * b.loss_stride];
            if (y == p.ignore_index) {
                out = T(0);
                continue;
            }
            const T w_y = p.weight ? p.weight[y] : T(1);
            out = index_loss(log_s_lane[k], x[y * x_class_stride + j + k] - m_lane[k], w_y, t_lane[k], p);
        }
    }
}

template <class S, class T = compute_t<S>>
void probability_columns(const CrossEntropyBlock<S>& b, const CrossEntropyParams<T>& p) {
    constexpr int64_t W = Vec<T>::width;
    for (int64_t j = 0; j < b.count; j += W) {
        const int64_t lanes = b.count - j < W ? b.count - j : W;
        const ProbabilityColumnStatistics<T> st = probability_column_statistics(
            b.input + j, b.input_stride, b.probabilities + j, b.probability_stride, lanes, p);
        T out_lane[W];
        store(out_lane, st.weight_total * vlog(st.sum) - st.weighted_shifted_sum);
        for (int64_t k = 0; k < lanes; ++k) b.loss[(j + k) * b.loss_stride] = out_lane[k];
    }
}

template <class S>
CrossEntropyKernels<S> make_cross_entropy_kernels() {
    CrossEntropyKernels<S> k{};
    k.index_rows = &index_rows<S>;
    k.index_columns = &index_columns<S>;
    k.probability_rows = &probability_rows<S>;
    k.probability_columns = &probability_columns<S>;
    return k;
}

}  // namespace

void register_cross_entropy_kernels(KernelTable& table) {
    for_each_kernel_set(table, [](auto& set) {
        set.cross_entropy = make_cross_entropy_kernels<typename std::decay_t<decltype(set)>::Storage>();
    });
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
