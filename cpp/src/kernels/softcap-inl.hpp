// Logit soft-capping of one contiguous row, x' = cap tanh(x / cap), shared by softcap.cpp (the
// row buffers of cross_entropy's and distillation's drivers) and linear_cross_entropy.cpp (its
// tiles, capped in place), so that every capped logit has the same bits.
#pragma once

#include "fastloss/kernel_table.hpp"
#include "simd/vector_math-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

// cap tanh(x / cap) of one vector, and the tanh in `t`: the one formula of every capped logit
// (cap_row here, and the fused kernels of cross_entropy_softcap.cpp), so all give the same bits.
// x (1 / cap) rather than torch's x / c: within an ULP of it, and a division per element would
// cost as much as the rest of the tanh.
template <class V>
inline V capped_vector(V x, V cap, V inverse, V& t) {
    t = vtanh(x * inverse);
    return cap * t;
}

// The capped row to `capped` (which may be x itself: each vector is loaded before it is stored)
// and, unless null, tanh's derivative 1 - tanh^2 to `derivative`.
template <class S, class T = compute_t<S>>
void cap_row(const S* x, int64_t n, T cap, T* capped, T* derivative) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V vcap = V::broadcast(cap), inverse = V::broadcast(T(1) / cap), one = V::broadcast(T(1));
    for (int64_t i = 0; i < n; i += W) {
        const int64_t lanes = n - i < W ? n - i : W;
        const bool full = lanes == W;
        V t;
        const V out = capped_vector(full ? vload(x + i) : vload_partial(x + i, lanes, T(0)), vcap, inverse, t);
        if (full) store(capped + i, out); else store_partial(capped + i, lanes, out);
        if (!derivative) continue;
        const V d = one - t * t;  // torch's tanh backward: 1 - y^2 of its output y
        if (full) store(derivative + i, d); else store_partial(derivative + i, lanes, d);
    }
}

}  // namespace
}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
