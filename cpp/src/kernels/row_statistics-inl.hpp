// Per-row statistics of a softmax, shared by every kernel that normalises a row: the max, and the
// sum of exponentials shifted by it. Included by per-ISA kernel files only.
#pragma once

#include "simd/vector_math-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

// Four independent accumulators hide the latency of max/add across loop iterations.
template <class T>
T row_max(const T* x, int64_t n) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V neg_inf = V::broadcast(-infinity<T>());
    V m0 = neg_inf, m1 = neg_inf, m2 = neg_inf, m3 = neg_inf;
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        m0 = max(m0, V::load(x + i));
        m1 = max(m1, V::load(x + i + W));
        m2 = max(m2, V::load(x + i + 2 * W));
        m3 = max(m3, V::load(x + i + 3 * W));
    }
    for (; i + W <= n; i += W) m0 = max(m0, V::load(x + i));
    if (i < n) m1 = max(m1, V::load_partial(x + i, n - i, -infinity<T>()));
    return reduce_max(max(max(m0, m1), max(m2, m3)));
}

// sum_c exp(x_c - shift); if y is not null, also stores y_c = exp(x_c - shift).
template <class T>
T row_sum_exp(const T* x, T shift, T* y, int64_t n) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V sh = V::broadcast(shift);
    const V zero = V::broadcast(T(0));
    V s0 = zero, s1 = zero, s2 = zero, s3 = zero;
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        const V e0 = vexp(V::load(x + i) - sh);
        const V e1 = vexp(V::load(x + i + W) - sh);
        const V e2 = vexp(V::load(x + i + 2 * W) - sh);
        const V e3 = vexp(V::load(x + i + 3 * W) - sh);
        if (y) {
            store(y + i, e0);
            store(y + i + W, e1);
            store(y + i + 2 * W, e2);
            store(y + i + 3 * W, e3);
        }
        s0 = s0 + e0;
        s1 = s1 + e1;
        s2 = s2 + e2;
        s3 = s3 + e3;
    }
    for (; i + W <= n; i += W) {
        const V e = vexp(V::load(x + i) - sh);
        if (y) store(y + i, e);
        s0 = s0 + e;
    }
    if (i < n) {
        // Padding lanes load -inf, whose exp(-inf - shift) is 0 unless shift is -inf too; then
        // every real value is -inf as well and the row is NaN regardless.
        const V e = vexp(V::load_partial(x + i, n - i, -infinity<T>()) - sh);
        if (y) store_partial(y + i, n - i, e);
        s1 = s1 + e;
    }
    return reduce_sum((s0 + s1) + (s2 + s3));
}

template <class T>
bool is_infinite(T a) { return a == infinity<T>() || a == -infinity<T>(); }

}  // namespace
}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
