// Logit soft-capping, x' = cap tanh(x / cap), one contiguous row at a time (see SoftcapKernels in
// kernel_table.hpp): the capped row and tanh's derivative 1 - tanh^2 go to buffers that the
// cross-entropy and distillation drivers keep in cache while the plain kernels run on the capped
// row (ops/softcapped_rows.hpp).
#include "fastloss/kernel_table.hpp"
#include "kernels/softcap-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

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
