// Logit soft-capping, x' = cap tanh(x / cap), one contiguous row at a time (see SoftcapKernels in
// kernel_table.hpp): the capped row and tanh's derivative 1 - tanh^2 go to buffers that the
// cross-entropy and distillation drivers keep in cache while the plain kernels run on the capped
// row (ops/softcapped_rows.hpp).
#include "fastloss/kernel_table.hpp"
#include "simd/vector_math-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

template <class S, class T = compute_t<S>>
void cap_row(const S* x, int64_t n, T cap, T* capped, T* derivative) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    // x (1 / cap) rather than torch's x / c: within an ULP of it, and a division per element
    // would cost as much as the rest of the tanh.
    const V vcap = V::broadcast(cap), inverse = V::broadcast(T(1) / cap), one = V::broadcast(T(1));
    for (int64_t i = 0; i < n; i += W) {
        const int64_t lanes = n - i < W ? n - i : W;
        const bool full = lanes == W;
        const V t = vtanh((full ? vload(x + i) : vload_partial(x + i, lanes, T(0))) * inverse);
        const V out = vcap * t;
        if (full) store(capped + i, out); else store_partial(capped + i, lanes, out);
        if (!derivative) continue;
        const V d = one - t * t;  // torch's tanh backward: 1 - y^2 of its output y
        if (full) store(derivative + i, d); else store_partial(derivative + i, lanes, d);
    }
}

template <class S, class T = compute_t<S>>
void chain_row(const T* g, const T* derivative, int64_t n, S* out) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    for (int64_t i = 0; i < n; i += W) {
        const int64_t lanes = n - i < W ? n - i : W;
        if (lanes == W) {
            store(out + i, vload(g + i) * vload(derivative + i));
        } else {
            store_partial(out + i, lanes, vload_partial(g + i, lanes, T(0)) * vload_partial(derivative + i, lanes, T(0)));
        }
    }
}

}  // namespace

void register_softcap_kernels(KernelTable& table) {
    for_each_kernel_set(table, [](auto& set) {
        using S = typename std::decay_t<decltype(set)>::Storage;
        set.softcap.cap_row = &cap_row<S>;
        set.softcap.chain_row = &chain_row<S>;
    });
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
