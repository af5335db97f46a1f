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
//
// Jensen-Shannon (kernel_table.hpp), with q = exp(x), p = target or exp(target) and log p = log
// target or target: m = beta p + (1 - beta) q is formed in probability space and clamped below at
// the smallest normal number before its log, so where both probabilities underflow the terms are
// 0 * finite (their true values are below that number) instead of 0 * -inf. Each product is
// selected to 0 where its probability is 0 (xlogy's convention, as kl_div(log m, p) and
// kl_div(log m, q) give it), so -inf log-probabilities add 0 and their gradient is 0, the finite
// limit (autograd of that expression gives NaN there). d/dx of the loss is
// (1 - beta) q (x - log m): the +1s of d(q log q) and d(m log m) cancel. The reverse KL at
// beta = 1 is kl_div(log p, q) pointwise, xlogy(q, q) - q log p (0 where q = 0, NaN where p = 0
// too, as kl_div at beta = 0 mirrored), with derivative q (x - log p + 1), as Liger's kernel
// (0 where q = 0).
#include <limits>

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

// p and log p from the target, for both kinds of target.
template <bool kLogTarget, class T>
struct TargetProbability {
    Vec<T> p, log_p;
    explicit TargetProbability(Vec<T> t) : p(kLogTarget ? vexp(t) : t), log_p(kLogTarget ? t : vlog(t)) {}
};

// a * b, and 0 where a = 0 (xlogy's convention for a probability a).
template <class T>
Vec<T> product_or_zero(Vec<T> a, Vec<T> b) {
    const Vec<T> zero = Vec<T>::broadcast(T(0));
    return select(equal(a, zero), zero, a * b);
}

template <class T, bool kLogTarget>
struct JensenShannonPointwise {
    static constexpr bool checks_range = false;
    static constexpr T input_fill = T(0);
    static constexpr T target_fill = kLogTarget ? T(0) : T(1);
    T beta;
    // The loss, and (through q_log_ratio) q (x - log m), which the gradient scales.
    Vec<T> loss(Vec<T> x, Vec<T> t, Vec<T>& q_log_ratio) const {
        using V = Vec<T>;
        const TargetProbability<kLogTarget, T> target(t);
        const V q = vexp(x);
        const V m = fma(V::broadcast(beta), target.p, V::broadcast(T(1) - beta) * q);
        const V log_m = vlog(max(V::broadcast(std::numeric_limits<T>::min()), m));
        q_log_ratio = product_or_zero(q, x - log_m);
        const V p_log_ratio = product_or_zero(target.p, target.log_p - log_m);
        return fma(V::broadcast(beta), p_log_ratio, V::broadcast(T(1) - beta) * q_log_ratio);
    }
    Vec<T> operator()(Vec<T> x, Vec<T> t, Vec<T>, Vec<T>) const {
        Vec<T> unused;
        return loss(x, t, unused);
    }
    Vec<T> operator()(Vec<T> x, Vec<T> t, Vec<T>, Vec<T>, Vec<T>& d) const {
        Vec<T> q_log_ratio;
        const Vec<T> out = loss(x, t, q_log_ratio);
        d = Vec<T>::broadcast(T(1) - beta) * q_log_ratio;
        return out;
    }
};

template <class T, bool kLogTarget>
struct ReverseKLPointwise {
    static constexpr bool checks_range = false;
    static constexpr T input_fill = T(0);
    static constexpr T target_fill = kLogTarget ? T(0) : T(1);
    // kl_div(log p, q) pointwise: xlogy(q, q) - q log p.
    static Vec<T> loss(Vec<T> x, Vec<T> q, Vec<T> t) {
        return product_or_zero(q, x) - q * TargetProbability<kLogTarget, T>(t).log_p;
    }
    Vec<T> operator()(Vec<T> x, Vec<T> t, Vec<T>, Vec<T>) const { return loss(x, vexp(x), t); }
    Vec<T> operator()(Vec<T> x, Vec<T> t, Vec<T>, Vec<T>, Vec<T>& d) const {
        const Vec<T> q = vexp(x);
        d = product_or_zero(q, x - TargetProbability<kLogTarget, T>(t).log_p + Vec<T>::broadcast(T(1)));
        return loss(x, q, t);
    }
};

template <class S, class T = compute_t<S>>
SegmentResult jensen_shannon(const ElementwiseSegment<S>& s, int64_t n, bool log_target, double beta) {
    if (beta == 1.0) {
        return log_target ? elementwise_segment(s, n, ReverseKLPointwise<T, true>{})
                          : elementwise_segment(s, n, ReverseKLPointwise<T, false>{});
    }
    return log_target ? elementwise_segment(s, n, JensenShannonPointwise<T, true>{T(beta)})
                      : elementwise_segment(s, n, JensenShannonPointwise<T, false>{T(beta)});
}

template <class S, class T = compute_t<S>>
SegmentResult kl_div_forward(const ElementwiseSegment<S>& s, int64_t n, bool log_target) {
    return log_target ? elementwise_segment(s, n, KLDivLogTargetPointwise<T>{})
                      : elementwise_segment(s, n, KLDivPointwise<T>{});
}

template <class S>
KLDivKernels<S> make_kl_div_kernels() {
    KLDivKernels<S> k;
    k.forward = &kl_div_forward<S>;
    k.jensen_shannon = &jensen_shannon<S>;
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
