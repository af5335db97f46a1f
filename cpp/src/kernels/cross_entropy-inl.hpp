// Pieces shared by the cross-entropy kernels with and without gradient (see cross_entropy.cpp
// for the formulas). Included by per-ISA kernel files only.
#pragma once

#include "fastloss/kernel_table.hpp"
#include "kernels/cross_entropy_terms-inl.hpp"
#include "kernels/row_statistics-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

// s = sum_c exp(x_c - m) and t = sum_c w_c (x_c - m) (w = 1 when weight is null).
// Tail lanes are padded with -inf for the exponentials (exp -> 0) and with m for t (d -> 0).
template <class S, class T = compute_t<S>>
void row_sum_exp_and_shifted_sum(const S* x, T m, const T* weight, int64_t n, T& s, T& t) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V vm = V::broadcast(m), zero = V::broadcast(T(0));
    V s0 = zero, s1 = zero, t0 = zero, t1 = zero;
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        const V d0 = vload(x + i) - vm, d1 = vload(x + i + W) - vm;
        s0 = s0 + vexp_nonpositive(d0);
        s1 = s1 + vexp_nonpositive(d1);
        if (weight) {
            t0 = fma(vload(weight + i), d0, t0);
            t1 = fma(vload(weight + i + W), d1, t1);
        } else {
            t0 = t0 + d0;
            t1 = t1 + d1;
        }
    }
    for (; i < n; i += W) {
        const int64_t lanes = n - i < W ? n - i : W;
        s0 = s0 + vexp(vload_partial(x + i, lanes, -infinity<T>()) - vm);
        const V d = vload_partial(x + i, lanes, m) - vm;
        t0 = weight ? fma(vload_partial(weight + i, lanes, T(0)), d, t0) : t0 + d;
    }
    s = reduce_sum(s0 + s1);
    t = reduce_sum(t0 + t1);
}

// Columns layout: `lanes` positions starting at x (value c of lane k at x[c * class_stride + k]).
template <class S, class T = compute_t<S>>
Vec<T> load_column(const S* x, int64_t class_stride, int64_t c, int64_t lanes, T fill) {
    const S* ptr = x + c * class_stride;
    return lanes == Vec<T>::width ? vload(ptr) : vload_partial(ptr, lanes, fill);
}

// Per lane: m, s = sum_c exp(x_c - m) and, with label smoothing, t = sum_c w_c (x_c - m).
template <class T>
struct ColumnStatistics {
    Vec<T> max, sum, shifted_sum;
};

template <class S, class T = compute_t<S>>
ColumnStatistics<T> index_column_statistics(const S* x, int64_t class_stride, int64_t lanes,
                                            const CrossEntropyParams<T>& p) {
    using V = Vec<T>;
    const V zero = V::broadcast(T(0));
    V m = V::broadcast(-infinity<T>());
    for (int64_t c = 0; c < p.classes; ++c) m = max(m, load_column(x, class_stride, c, lanes, -infinity<T>()));
    V s = zero, t = zero;
    for (int64_t c = 0; c < p.classes; ++c) {
        const V d = load_column(x, class_stride, c, lanes, T(0)) - m;
        s = s + vexp(d);
        if (p.label_smoothing != T(0)) t = p.weight ? fma(V::broadcast(p.weight[c]), d, t) : t + d;
    }
    return {m, s, t};
}

// Probability targets, columns layout: w_c q'_c for class c of `lanes` positions starting at q.
template <class S, class T = compute_t<S>>
Vec<T> weighted_target_column(const S* q, int64_t q_class_stride, int64_t c, int64_t lanes,
                              const CrossEntropyParams<T>& p) {
    using V = Vec<T>;
    const V qp = fma(load_column(q, q_class_stride, c, lanes, T(0)), V::broadcast(T(1) - p.label_smoothing),
                     V::broadcast(p.label_smoothing / T(p.classes)));
    return p.weight ? qp * V::broadcast(p.weight[c]) : qp;
}

// Per lane: m, s = sum_c exp(x_c - m), a = sum_c w_c q'_c (x_c - m), b = sum_c w_c q'_c. Padding
// lanes compute garbage from zero padding; callers store live lanes only.
template <class T>
struct ProbabilityColumnStatistics {
    Vec<T> max, sum, weighted_shifted_sum, weight_total;
};

template <class S, class T = compute_t<S>>
ProbabilityColumnStatistics<T> probability_column_statistics(const S* x, int64_t x_class_stride, const S* q,
                                                             int64_t q_class_stride, int64_t lanes,
                                                             const CrossEntropyParams<T>& p) {
    using V = Vec<T>;
    const V zero = V::broadcast(T(0));
    V m = V::broadcast(-infinity<T>());
    for (int64_t c = 0; c < p.classes; ++c) m = max(m, load_column(x, x_class_stride, c, lanes, -infinity<T>()));
    V s = zero, a = zero, b = zero;
    for (int64_t c = 0; c < p.classes; ++c) {
        const V d = load_column(x, x_class_stride, c, lanes, T(0)) - m;
        const V qp = weighted_target_column(q, q_class_stride, c, lanes, p);
        s = s + vexp(d);
        a = fma(qp, d, a);
        b = b + qp;
    }
    return {m, s, a, b};
}

}  // namespace
}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
