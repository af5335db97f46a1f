// Binary cross-entropy on probabilities and on logits, pointwise and fused: each operand is read
// once, nothing of input size is written for a reduced loss.
//
// Probabilities p, target y, weight w (PyTorch's CPU kernel, in its order of operations):
//   loss = w [(y - 1) max(log1p(-p), -100) - y max(log p, -100)]
// The clamp at -100 keeps p = 0 or 1 finite (p = 0, y = 1 gives exactly 100). log1p(-p) rather
// than log(1 - p) keeps the small-p side accurate. p and y outside [0, 1] (or NaN) are reported
// per segment; the driver raises after its parallel region.
//
// Logits: binary_cross_entropy_with_logits-inl.hpp (the stable softplus form, and its gradient).
//
// Gradient with respect to the input, as PyTorch autograd gives it:
//   probabilities:  w (p - y) / max(p (1 - p), 1e-12)
//     The clamp keeps p = 0 or 1 finite: p = 0, y = 1 gives -1e12. It is PyTorch's EPSILON, a
//     float 1e-12f (9.99999996e-13) in float64 too, so float64 gives -1.000000004e12 as PyTorch.
#include "fastloss/kernel_table.hpp"
#include "kernels/binary_cross_entropy_with_logits-inl.hpp"
#include "kernels/elementwise_segment-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

template <class T>
struct BinaryCrossEntropyPointwise {
    static constexpr bool checks_range = true;
    static constexpr T input_fill = T(0.5);
    static constexpr T target_fill = T(0.5);
    Vec<T> operator()(Vec<T> p, Vec<T> y, Vec<T> w, Vec<T>) const {
        using V = Vec<T>;
        const V zero = V::broadcast(T(0)), one = V::broadcast(T(1)), floor = V::broadcast(T(-100));
        // max returns its second operand for NaN: a NaN p (reported as out of range) stays NaN.
        const V log_p = max(floor, vlog(p));
        const V log_1mp = max(floor, vlog1p(zero - p));
        return ((y - one) * log_1mp - y * log_p) * w;
    }
    Vec<T> operator()(Vec<T> p, Vec<T> y, Vec<T> w, Vec<T> pw, Vec<T>& d) const {
        using V = Vec<T>;
        const V one = V::broadcast(T(1)), epsilon = V::broadcast(T(1e-12f));
        d = (p - y) / max(epsilon, (one - p) * p) * w;  // max: a NaN p stays NaN
        return (*this)(p, y, w, pw);
    }
};

template <class S, class T = compute_t<S>>
SegmentResult binary_cross_entropy_probabilities(const ElementwiseSegment<S>& s, int64_t n) {
    return elementwise_segment(s, n, BinaryCrossEntropyPointwise<T>{});
}

template <class S, class T = compute_t<S>>
SegmentResult binary_cross_entropy_logits(const ElementwiseSegment<S>& s, int64_t n) {
    return elementwise_segment(s, n, BinaryCrossEntropyWithLogitsPointwise<T>{});
}

template <class S>
BinaryCrossEntropyKernels<S> make_binary_cross_entropy_kernels() {
    BinaryCrossEntropyKernels<S> k;
    k.probabilities = &binary_cross_entropy_probabilities<S>;
    k.logits = &binary_cross_entropy_logits<S>;
    return k;
}

}  // namespace

void register_binary_cross_entropy_kernels(KernelTable& table) {
    for_each_kernel_set(table, [](auto& set) {
        set.binary_cross_entropy = make_binary_cross_entropy_kernels<typename std::decay_t<decltype(set)>::Storage>();
    });
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
