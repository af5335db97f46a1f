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
// Asked for (block.lse), every position's lse = m + log s is written too, ignored rows' included
// (then read for it alone); the driver adds a z-loss's share of the loss from those.
#include "fastloss/kernel_table.hpp"
#include "kernels/column_sweeps-inl.hpp"
#include "kernels/cross_entropy-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

// W rows in lanes [Note: few classes], without label smoothing.
template <class S, class T = compute_t<S>>
void index_rows_in_lanes(const S* x, int64_t x_row_stride, const int64_t* target, int64_t target_stride,
                         T* loss, T* lse, int64_t loss_stride, const CrossEntropyParams<T>& p) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const LanesShiftSum<T> ss = lanes_shift_sum(x, x_row_stride, p.classes, false);
    T m[W], log_s[W];
    store(m, ss.shift);
    store(log_s, vlog(ss.sum));
    for (int64_t k = 0; k < W; ++k) {
        if (lse) lse[k * loss_stride] = log_sum_exp(m[k], log_s[k]);
        const int64_t y = target[k * target_stride];
        T& out = loss[k * loss_stride];
        if (y == p.ignore_index) {
            out = T(0);
            continue;
        }
        const T w_y = p.weight ? p.weight[y] : T(1);
        out = w_y * (log_s[k] - (x[k * x_row_stride + y] - m[k]));
    }
}

template <class S, class T = compute_t<S>>
[[gnu::noinline]]  // see the entry points below
void index_rows(const S* x, int64_t x_row_stride, const int64_t* target, int64_t target_stride,
                T* loss, T* lse, int64_t loss_stride, int64_t rows, const CrossEntropyParams<T>& p) {
    constexpr int64_t W = Vec<T>::width;
    const int64_t C = p.classes;
    int64_t r = 0;
    if (p.label_smoothing == T(0) && rows_fit_lanes<T>(C, x_row_stride)) {
        for (; r + W <= rows; r += W) {
            index_rows_in_lanes(x + r * x_row_stride, x_row_stride, target + r * target_stride, target_stride,
                                loss + r * loss_stride, lse ? lse + r * loss_stride : nullptr, loss_stride, p);
        }
    }
    for (; r < rows; ++r) {
        const int64_t y = target[r * target_stride];
        if (y == p.ignore_index) {
            loss[r * loss_stride] = T(0);
            if (lse) lse[r * loss_stride] = row_log_sum_exp(x + r * x_row_stride, C);
            continue;
        }
        const S* xr = x + r * x_row_stride;
        T m, s, t = T(0);
        if (p.label_smoothing == T(0)) {
            const RowMaxSum<T> ms = row_max_sum(xr, C, next_row(xr, r, rows, x_row_stride));
            m = ms.max;
            s = ms.sum;
        } else {  // the smoothing sum is over x - m, so m must be known first
            m = row_max(xr, C);
            row_sum_exp_and_shifted_sum(xr, m, p.weight, C, s, t, next_row(xr, r, rows, x_row_stride));
        }
        const T w_y = p.weight ? p.weight[y] : T(1);
        const T log_s = scalar_log(s);
        loss[r * loss_stride] = index_loss(log_s, xr[y] - m, w_y, t, p);
        if (lse) lse[r * loss_stride] = log_sum_exp(m, log_s);
    }
}

// Probability targets: one sweep after the max gathers s, A = sum w q' (x - m), B = sum w q'.
template <class S, class T = compute_t<S>>
[[gnu::noinline]]  // see the entry points below
void probability_rows(const S* x, int64_t x_row_stride, const S* q, int64_t q_row_stride, T* loss, T* lse,
                      int64_t loss_stride, int64_t rows, const CrossEntropyParams<T>& p) {
    const int64_t C = p.classes;
    for (int64_t r = 0; r < rows; ++r) {
        const S* xr = x + r * x_row_stride;
        const T m = row_max(xr, C);
        const ProbabilityRowSums<T> sums =
            probability_row_sums<S>(xr, q + r * q_row_stride, m, C, p, nullptr, next_row(xr, r, rows, x_row_stride));
        const T log_s = scalar_log(sums.sum);
        loss[r * loss_stride] = sums.weight_total * log_s - sums.weighted_shifted_sum;
        if (lse) lse[r * loss_stride] = log_sum_exp(m, log_s);
    }
}

// Columns layout: lanes are positions. The same statistics are taken down the class axis, then
// each lane finishes its own target (a scalar gather: one load per position). Without label
// smoothing they come from one online sweep over four vectors of positions at a time ([Note:
// online sweep down the columns]); the smoothing term's sum of x_c - m needs the final max, so
// with smoothing the max and the sums take two sweeps.
template <class S, class T = compute_t<S>>
[[gnu::noinline]]  // see the entry points below
void index_columns(const S* x, int64_t x_class_stride, const int64_t* target, int64_t target_stride,
                   T* loss, T* lse, int64_t loss_stride, int64_t columns, const CrossEntropyParams<T>& p) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    auto finish = [&](int64_t j, int64_t lanes, V max, V sum, V shifted_sum) {
        T m_lane[W], log_s_lane[W], t_lane[W];
        store(m_lane, max);
        store(log_s_lane, vlog(sum));
        store(t_lane, shifted_sum);
        for (int64_t k = 0; k < lanes; ++k) {
            if (lse) lse[(j + k) * loss_stride] = log_sum_exp(m_lane[k], log_s_lane[k]);
            const int64_t y = target[(j + k) * target_stride];
            T& out = loss[(j + k) * loss_stride];
            if (y == p.ignore_index) {
                out = T(0);
                continue;
            }
            const T w_y = p.weight ? p.weight[y] : T(1);
            out = index_loss(log_s_lane[k], x[y * x_class_stride + j + k] - m_lane[k], w_y, t_lane[k], p);
        }
    };
    if (p.label_smoothing == T(0)) {
        for_each_column_block(x, x_class_stride, columns, p.classes,
                              [&](int64_t j, int64_t count, int64_t lanes, const LanesMaxSum<T>* stats) {
            for (int64_t k = 0; k < count; ++k) {
                finish(j + k * W, count == 1 ? lanes : W, stats[k].max, stats[k].sum, V::broadcast(T(0)));
            }
        });
        return;
    }
    for (int64_t j = 0; j < columns; j += W) {
        const int64_t lanes = columns - j < W ? columns - j : W;
        const ColumnStatistics<T> st = index_column_statistics(x + j, x_class_stride, lanes, p);
        finish(j, lanes, st.max, st.sum, st.shifted_sum);
    }
}

template <class S, class T = compute_t<S>>
[[gnu::noinline]]  // see the entry points below
void probability_columns(const S* x, int64_t x_class_stride, const S* q, int64_t q_class_stride,
                         T* loss, T* lse, int64_t loss_stride, int64_t columns,
                         const CrossEntropyParams<T>& p) {
    constexpr int64_t W = Vec<T>::width;
    for (int64_t j = 0; j < columns; j += W) {
        const int64_t lanes = columns - j < W ? columns - j : W;
        const ProbabilityColumnStatistics<T> st =
            probability_column_statistics(x + j, x_class_stride, q + j, q_class_stride, lanes, p);
        const Vec<T> log_s = vlog(st.sum);
        T out_lane[W], m_lane[W], log_s_lane[W];
        store(out_lane, st.weight_total * log_s - st.weighted_shifted_sum);
        store(m_lane, st.max);
        store(log_s_lane, log_s);
        for (int64_t k = 0; k < lanes; ++k) {
            loss[(j + k) * loss_stride] = out_lane[k];
            if (lse) lse[(j + k) * loss_stride] = log_sum_exp(m_lane[k], log_s_lane[k]);
        }
    }
}

// The table's entry points: each passes the block's operands on to its kernel as the arguments
// it takes. Unpacked once here, they stay in registers through the kernel's loops, where the
// vector stores (which may alias anything) would make every read through the block a reload.
// The kernels are [[gnu::noinline]]: compiled on their own, their code does not depend on the
// entry; inlined into it, GCC would optimise each afresh (other unrolling, other multiply-add
// fusion, and so possibly other last bits).
template <class S, class T = compute_t<S>>
void index_rows_entry(const CrossEntropyBlock<S>& b, const CrossEntropyParams<T>& p) {
    index_rows(b.input, b.input_stride, b.target, b.target_stride, b.loss, b.lse, b.loss_stride, b.count, p);
}

template <class S, class T = compute_t<S>>
void index_columns_entry(const CrossEntropyBlock<S>& b, const CrossEntropyParams<T>& p) {
    index_columns(b.input, b.input_stride, b.target, b.target_stride, b.loss, b.lse, b.loss_stride, b.count, p);
}

template <class S, class T = compute_t<S>>
void probability_rows_entry(const CrossEntropyBlock<S>& b, const CrossEntropyParams<T>& p) {
    probability_rows(b.input, b.input_stride, b.probabilities, b.probability_stride, b.loss, b.lse, b.loss_stride,
                     b.count, p);
}

template <class S, class T = compute_t<S>>
void probability_columns_entry(const CrossEntropyBlock<S>& b, const CrossEntropyParams<T>& p) {
    probability_columns(b.input, b.input_stride, b.probabilities, b.probability_stride, b.loss, b.lse,
                        b.loss_stride, b.count, p);
}

template <class S>
CrossEntropyKernels<S> make_cross_entropy_kernels() {
    CrossEntropyKernels<S> k{};
    k.index_rows = &index_rows_entry<S>;
    k.index_columns = &index_columns_entry<S>;
    k.probability_rows = &probability_rows_entry<S>;
    k.probability_columns = &probability_columns_entry<S>;
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
