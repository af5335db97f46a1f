// Pieces shared by the cross-entropy kernels with and without gradient (see cross_entropy.cpp
// for the formulas). Included by per-ISA kernel files only.
#pragma once

#include "fastloss/kernel_table.hpp"
#include "kernels/cross_entropy_terms-inl.hpp"
#include "kernels/row_statistics-inl.hpp"

#include <algorithm>

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

// A position's log-sum-exp from its max m and log s, s = sum_c exp(x_c - m), for the kernels' lse
// output: -inf for an all -inf row, whichever way its s came out (0, or NaN from -inf - -inf in
// the layouts that do not shift such rows); NaN for a row holding +inf or NaN, whose loss is NaN.
template <class T>
T log_sum_exp(T m, T log_s) {
    return m == -infinity<T>() ? m : m + log_s;
}

// The log-sum-exp of a row whose loss does not need its logits (an ignored row), when asked for.
template <class S, class T = compute_t<S>>
T row_log_sum_exp(const S* x, int64_t n) {
    const RowMaxSum<T> ms = row_max_sum(x, n, static_cast<const S*>(nullptr));
    return log_sum_exp(ms.max, scalar_log(ms.sum));
}

// Zeroes a row of n gradient values: an ignored row's, written without reading its logits.
template <class S, class T = compute_t<S>>
void zero_row(S* grad, int64_t n) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V zero = V::broadcast(T(0));
    int64_t i = 0;
    for (; i + W <= n; i += W) store(grad + i, zero);
    if (i < n) store_partial(grad + i, n - i, zero);
}

// [Note: long sums] The sums over a row's classes that these kernels take in T (the exponentials'
// sum with smoothing, probability targets or a gradient, the smoothing sum, the probability-target
// sums; the plain forward uses row_statistics' two-level sum) are taken over blocks of
// kSumBlockClasses classes, and the blocks' sums are added in float64. So their rounding error stays
// at a few T roundings whatever the class count, where one float32 accumulation over hundreds of
// millions of classes loses most of its digits (RELIABILITY.md, bug 26). A row of at most one
// block is summed exactly as without blocks. (The blocks are plain loops, not a helper taking a
// lambda: with one, GCC keeps the gradient kernel's per-block state in memory, which slows
// cross_entropy with its gradient.)
constexpr int64_t kSumBlockClasses = 4096;

// Per-lane float64 totals of vector sums taken block by block (the columns layout's form of
// [Note: long sums]): add() each block's vector, then value() rounds the totals to T once.
template <class T>
class LaneTotals {
  public:
    void add(Vec<T> block) {
        T lanes[Vec<T>::width];
        store(lanes, block);
        for (int64_t k = 0; k < Vec<T>::width; ++k) total_[k] += double(lanes[k]);
    }
    Vec<T> value() const {
        T lanes[Vec<T>::width];
        for (int64_t k = 0; k < Vec<T>::width; ++k) lanes[k] = T(total_[k]);
        return vload(lanes);
    }

  private:
    double total_[Vec<T>::width] = {};
};

// s = sum_c exp(x_c - m) and t = sum_c w_c (x_c - m) (w = 1 when weight is null), over one block
// of classes (see row_sum_exp_and_shifted_sum). The n elements at `next` (the next row's), where
// not null, are fetched into `into` on the way ([Note: the next row into L1 or L2]).
// Tail lanes are padded with -inf for the exponentials (exp -> 0) and with m for t (d -> 0).
template <class S, class T = compute_t<S>>
void block_sum_exp_and_shifted_sum(const S* x, T m, const T* weight, int64_t n, T& s, T& t,
                                   const S* next = nullptr, PrefetchInto into = PrefetchInto::l1) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V vm = V::broadcast(m), zero = V::broadcast(T(0));
    V s0 = zero, s1 = zero, t0 = zero, t1 = zero;
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        if (next) prefetch_elements(into, next + i, 2 * W);
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
    if (next && i < n) prefetch_elements(into, next + i, n - i);
    for (; i < n; i += W) {
        const int64_t lanes = n - i < W ? n - i : W;
        s0 = s0 + vexp(vload_partial(x + i, lanes, -infinity<T>()) - vm);
        const V d = vload_partial(x + i, lanes, m) - vm;
        t0 = weight ? fma(vload_partial(weight + i, lanes, T(0)), d, t0) : t0 + d;
    }
    s = reduce_sum(s0 + s1);
    t = reduce_sum(t0 + t1);
}

// The same over a whole row, in blocks (see [Note: long sums]).
template <class S, class T = compute_t<S>>
void row_sum_exp_and_shifted_sum(const S* x, T m, const T* weight, int64_t n, T& s, T& t,
                                 const S* next = nullptr) {
    const PrefetchInto into = next_row_cache(n * int64_t(sizeof(S)));
    if (n <= kSumBlockClasses) return block_sum_exp_and_shifted_sum(x, m, weight, n, s, t, next, into);
    double s_total = 0.0, t_total = 0.0;
    for (int64_t begin = 0; begin < n; begin += kSumBlockClasses) {
        T s_block, t_block;
        block_sum_exp_and_shifted_sum(x + begin, m, weight ? weight + begin : nullptr,
                                      std::min(kSumBlockClasses, n - begin), s_block, t_block,
                                      next ? next + begin : nullptr, into);
        s_total += double(s_block);
        t_total += double(t_block);
    }
    s = T(s_total);
    t = T(t_total);
}

// Probability targets, rows layout: w_c q'_c for classes [i, i + lanes) of a row, zero beyond,
// with q' = q keep + spread. The factors are held by value: a row loop that also stores floats
// would otherwise reload them from the parameters every vector.
template <class T>
struct SmoothedTargets {
    Vec<T> keep, spread;  // 1 - eps, eps / C
    const T* weight;      // or nullptr

    explicit SmoothedTargets(const CrossEntropyParams<T>& p)
        : keep(Vec<T>::broadcast(T(1) - p.label_smoothing)),
          spread(Vec<T>::broadcast(p.label_smoothing / T(p.classes))),
          weight(p.weight) {}

    template <class S>
    Vec<T> row(const S* q, int64_t i, int64_t lanes) const {
        using V = Vec<T>;
        const bool full = lanes == V::width;
        V qp = fma(full ? vload(q + i) : vload_partial(q + i, lanes, T(0)), keep, spread);
        if (weight) qp = qp * (full ? vload(weight + i) : vload_partial(weight + i, lanes, T(0)));
        return full ? qp : select(V::first_lanes(lanes), qp, V::broadcast(T(0)));
    }
};

// One sweep over a row of n classes with probability targets, after its max m:
//   s = sum_c exp(x_c - m),  a = sum_c w_c q'_c (x_c - m),  b = sum_c w_c q'_c,
// summed in blocks ([Note: long sums]). With `staged`, exp(x_c - m) is also stored there. The n
// elements at `next` (the next row's), where not null, are fetched on the way ([Note: the next
// row into L1 or L2]).
template <class T>
struct ProbabilityRowSums {
    T sum, weighted_shifted_sum, weight_total;
};

template <class S, class T = compute_t<S>>
ProbabilityRowSums<T> probability_row_sums(const S* x, const S* q, T m, int64_t n, const CrossEntropyParams<T>& p,
                                           S* staged, const S* next = nullptr) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V vm = V::broadcast(m), zero = V::broadcast(T(0));
    const SmoothedTargets<T> targets(p);
    const PrefetchInto into = next_row_cache(n * int64_t(sizeof(S)));
    double s_total = 0.0, a_total = 0.0, b_total = 0.0;
    for (int64_t begin = 0; begin < n; begin += kSumBlockClasses) {
        const int64_t end = std::min(begin + kSumBlockClasses, n);
        V s = zero, a = zero, b = zero;
        for (int64_t i = begin; i < end; i += W) {
            const int64_t lanes = end - i < W ? end - i : W;
            const bool full = lanes == W;
            if (next) prefetch_elements(into, next + i, lanes);
            // Tail lanes: x = m, so d = 0; their exponentials and targets are zeroed.
            const V d = (full ? vload(x + i) : vload_partial(x + i, lanes, m)) - vm;
            const V qp = targets.row(q, i, lanes);
            V e = vexp_nonpositive(d);
            if (!full) e = select(V::first_lanes(lanes), e, zero);
            if constexpr (!is_half_storage<S>) {  // (staging is for float and double only)
                if (staged) {
                    if (full) store(staged + i, e); else store_partial(staged + i, lanes, e);
                }
            }
            s = s + e;
            a = fma(qp, d, a);
            b = b + qp;
        }
        s_total += double(reduce_sum(s));
        a_total += double(reduce_sum(a));
        b_total += double(reduce_sum(b));
    }
    return {T(s_total), T(a_total), T(b_total)};
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
    LaneTotals<T> s_total, t_total;
    for (int64_t begin = 0; begin < p.classes; begin += kSumBlockClasses) {
        const int64_t end = std::min(begin + kSumBlockClasses, p.classes);
        V s = zero, t = zero;
        for (int64_t c = begin; c < end; ++c) {
            const V d = load_column(x, class_stride, c, lanes, T(0)) - m;
            s = s + vexp(d);
            if (p.label_smoothing != T(0)) t = p.weight ? fma(V::broadcast(p.weight[c]), d, t) : t + d;
        }
        s_total.add(s);
        t_total.add(t);
    }
    return {m, s_total.value(), t_total.value()};
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
    LaneTotals<T> s_total, a_total, b_total;
    for (int64_t begin = 0; begin < p.classes; begin += kSumBlockClasses) {
        const int64_t end = std::min(begin + kSumBlockClasses, p.classes);
        V s = zero, a = zero, b = zero;
        for (int64_t c = begin; c < end; ++c) {
            const V d = load_column(x, x_class_stride, c, lanes, T(0)) - m;
            const V qp = weighted_target_column(q, q_class_stride, c, lanes, p);
            s = s + vexp(d);
            a = fma(qp, d, a);
            b = b + qp;
        }
        s_total.add(s);
        a_total.add(a);
        b_total.add(b);
    }
    return {m, s_total.value(), a_total.value(), b_total.value()};
}

}  // namespace
}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
