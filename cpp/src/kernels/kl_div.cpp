// kl_div, pointwise and fused: each operand is read once, nothing of input size is written for a
// reduced loss (the driver, ops/elementwise_loss_ops.cpp, sums the segments).
//
// With input = log q and target t (PyTorch's at::kl_div, in its order of operations):
//   log_target = false:  loss = xlogy(t, t) - t * input,   xlogy(t, t) = t log t, and 0 at t = 0
//                        so t = 0 contributes 0 * input: 0 for finite input, NaN for input = -inf
//                        or NaN (as PyTorch); t < 0 makes log t, hence the loss, NaN.
//   log_target = true:   loss = exp(t) * (t - input), no guard: t = -inf gives 0 * inf = NaN when
//                        input = -inf too, exactly as PyTorch.
// Gradient with respect to the input (PyTorch autograd's, quirks included): -t, and -exp(t) with
// log_target, whatever the input (at t = 0 it is -0 even where the loss is NaN). The exp(t) of
// the loss is reused.
#include "fastloss/kernel_table.hpp"
#include "kernels/elementwise_segment-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

template <class T>
struct KLDivPointwise {
    static constexpr bool checks_range = false;
    static constexpr T input_fill = T(0);
    static constexpr T target_fill = T(1);
    Vec<T> operator()(Vec<T> x, Vec<T> t, Vec<T>, Vec<T>) const {
        using V = Vec<T>;
        const V zero = V::broadcast(T(0));
        // t log t would be 0 * -inf = NaN at t = 0: xlogy defines it as 0.
        const V xlogy = select(equal(t, zero), zero, t * vlog(t));
        return xlogy - t * x;
    }
    Vec<T> operator()(Vec<T> x, Vec<T> t, Vec<T> w, Vec<T> pw, Vec<T>& d) const {
        d = Vec<T>::broadcast(T(-1)) * t;  // -t, and -0 at t = 0 as PyTorch's -(g t)
        return (*this)(x, t, w, pw);
    }
};

template <class T>
struct KLDivLogTargetPointwise {
    static constexpr bool checks_range = false;
    static constexpr T input_fill = T(0);
    static constexpr T target_fill = T(0);
    Vec<T> operator()(Vec<T> x, Vec<T> t, Vec<T>, Vec<T>) const { return vexp(t) * (t - x); }
    Vec<T> operator()(Vec<T> x, Vec<T> t, Vec<T>, Vec<T>, Vec<T>& d) const {
        const Vec<T> e = vexp(t);
        d = Vec<T>::broadcast(T(-1)) * e;
        return e * (t - x);
    }
};

template <class S, class T = compute_t<S>>
SegmentResult kl_div_forward(const ElementwiseSegment<S>& s, int64_t n, bool log_target) {
    return log_target ? elementwise_segment(s, n, KLDivLogTargetPointwise<T>{})
                      : elementwise_segment(s, n, KLDivPointwise<T>{});
}

template <class S>
KLDivKernels<S> make_kl_div_kernels() {
    KLDivKernels<S> k;
    k.forward = &kl_div_forward<S>;
    return k;
}

}  // namespace

void register_kl_div_kernels(KernelTable& table) {
    for_each_kernel_set(table, [](auto& set) {
        set.kl_div = make_kl_div_kernels<typename std::decay_t<decltype(set)>::Storage>();
    });
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
