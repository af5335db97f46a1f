// The sigmoid focal loss (Lin et al. 2017, as torchvision.ops.sigmoid_focal_loss), pointwise and
// fused with its gradient: each operand is read once, nothing of input size is written for a
// reduced loss.
//
// torchvision's definition, for logit x and target t (soft targets allowed):
//   p = sigmoid(x),  ce = binary_cross_entropy_with_logits(x, t),  p_t = p t + (1 - p)(1 - t),
//   loss = a_t ce (1 - p_t)^gamma,  a_t = alpha t + (1 - alpha)(1 - t) if alpha >= 0, else 1.
//
// 1 - p_t. Written out, 1 - p_t = (1 - t) p + t (1 - p) = (1 - t) sigmoid(x) + t sigmoid(-x): a
// sum of two non-negative terms for t in [0, 1], so no cancellation, and for hard targets exactly
// sigmoid(x) (t = 0) or sigmoid(-x) (t = 1). torchvision's 1 - p_t rounds p first: in float32
// it is 0 from about x = 17 (t = 1), where sigmoid(-x) < 4e-8, and its gradient there (below)
// is NaN for 0 < gamma < 1; ours stays accurate down to the smallest float. Both sigmoids, e = exp(-|x|)
// and ce come from BinaryCrossEntropyWithLogitsPointwise, so gamma = 0 with alpha < 0 gives the
// binary cross-entropy of logits bit for bit (its gradient to rounding: see below). ce itself is
// PyTorch's form, (1 - t) x + softplus(-x), exact at +-inf as PyTorch's (NaN where it is NaN);
// it keeps an absolute error of an ULP of x where the two terms cancel (x << 0 against t = 0).
//
// q^gamma for q = 1 - p_t (PyTorch's pow: pow(q, 0) = 1 for every q, NaN and 0 included):
//  * gamma = 0: 1.
//  * gamma a whole number up to kMaxProductPower: products, q^gamma = q^(gamma - 1) q, with
//    q^(gamma - 1) by repeated squaring. gamma = 2 is q q and gamma = 3 is (q q) q, PyTorch's
//    own products, one and two roundings (0.5 and 1 ULP); in general at most 2 log2(gamma)
//    roundings. Negative q (targets outside [0, 1], which torchvision does not check) keeps its
//    sign as in PyTorch.
//  * any other gamma: exp(gamma log q), vlog (1 ULP) and vexp (1.5 ULP). The rounding of gamma
//    log q is amplified by exp: relative error at most about 1.5 + 1.5 |gamma log q| ULP (for
//    q = 1e-3 and gamma = 2.5, some 27 ULP: below 3.3e-6 in float32). q = 0 gives 0; q < 0 NaN,
//    as PyTorch's pow of a negative base with a fractional exponent.
//
// Gradient with respect to x, as autograd differentiates torchvision's expression. With
// sigmoid' = p (1 - p) = sigmoid(x) sigmoid(-x) and d ce / dx = p - t:
//   d q / dx = -d p_t / dx = -(2 t - 1) p (1 - p) = (1 - 2 t) sigmoid(x) sigmoid(-x)
//   d loss / dx = a_t [(p - t) q^gamma + ce gamma q^(gamma - 1) (1 - 2 t) sigmoid(x) sigmoid(-x)]
// p - t is taken as (1 - t) sigmoid(x) - t sigmoid(-x), the same value (sigmoid(x) + sigmoid(-x)
// = 1) without the cancellation of sigmoid(x) - 1 for hard targets, where q^gamma makes the term
// tiny but not negligible against the second one; at +-inf it is PyTorch's 1, 0, 0 or -1.
// PyTorch's pow backward is 0 for gamma = 0 (not gamma q^-1, which is inf at q = 0), so gamma = 0
// drops the second term: the gradient of binary cross-entropy times a_t. q^(gamma - 1) comes from
// the same products as q^gamma, or from a second exp((gamma - 1) log q); for 0 < gamma < 1 it is
// inf at q = 0, and the gradient there is NaN (inf times 0), as autograd's.
#include "fastloss/kernel_table.hpp"
#include "kernels/binary_cross_entropy_with_logits-inl.hpp"
#include "kernels/elementwise_segment-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

constexpr int64_t kMaxProductPower = 1024;

template <class T>
struct SigmoidFocalLossPointwise {
    using V = Vec<T>;
    using Logits = BinaryCrossEntropyWithLogitsPointwise<T>;
    static constexpr bool checks_range = false;
    static constexpr T input_fill = T(0);
    static constexpr T target_fill = T(0);

    SigmoidFocalParams<T> params;
    int64_t whole_gamma;  // gamma, when it is a whole number in [1, kMaxProductPower]; else 0

    explicit SigmoidFocalLossPointwise(const SigmoidFocalParams<T>& p) : params(p), whole_gamma(0) {
        if (p.gamma >= T(1) && p.gamma <= T(kMaxProductPower) && T(int64_t(p.gamma)) == p.gamma) {
            whole_gamma = int64_t(p.gamma);
        }
    }

    // q^k by repeated squaring, for a whole k >= 0 (q^0 = 1).
    static V power(V q, int64_t k) {
        V result = V::broadcast(T(1));
        for (V base = q; k > 0; k >>= 1) {
            if (k & 1) result = result * base;
            if (k > 1) base = base * base;
        }
        return result;
    }

    // Sums of products are written as fma: C++ compiles with -ffp-contract=fast by default, so
    // a plain a * b + c may be fused on FMA ISAs or not, depending on what else uses a * b (the
    // gradient does), and the loss would then differ in its last bit with and without it.

    // q = 1 - p_t = (1 - t) sigmoid(x) + t sigmoid(-x).
    static V one_minus_p_t(V t, V sigmoid, V sigmoid_neg) {
        return fma(V::broadcast(T(1)) - t, sigmoid, t * sigmoid_neg);
    }

    // alpha t + (1 - alpha)(1 - t), or 1.
    V alpha_factor(V t) const {
        if (!params.alpha_weighting) return V::broadcast(T(1));
        const V rest = V::broadcast(params.one_minus_alpha) * (V::broadcast(T(1)) - t);
        return fma(V::broadcast(params.alpha), t, rest);
    }

    // q^gamma, and (when `with_lower`) q^(gamma - 1) into lower, as described above.
    V modulation(V q, bool with_lower, V& lower) const {
        const V one = V::broadcast(T(1));
        if (params.gamma == T(0)) return one;  // lower is unused: the gradient drops its term
        if (whole_gamma) {
            lower = power(q, whole_gamma - 1);
            return lower * q;
        }
        const V log_q = vlog(q);
        if (with_lower) lower = vexp(V::broadcast(params.gamma - T(1)) * log_q);
        return vexp(V::broadcast(params.gamma) * log_q);
    }

    V operator()(V x, V t, V, V) const {
        const V e = Logits::exp_neg_abs(x);
        V sigmoid, sigmoid_neg, unused;
        Logits::sigmoids(x, e, sigmoid, sigmoid_neg);
        const V ce = Logits::loss(x, t, V::broadcast(T(1)), V::broadcast(T(1)), e);
        const V q = one_minus_p_t(t, sigmoid, sigmoid_neg);
        return alpha_factor(t) * (ce * modulation(q, false, unused));
    }

    V operator()(V x, V t, V, V, V& d) const {
        const V one = V::broadcast(T(1));
        const V e = Logits::exp_neg_abs(x);
        V sigmoid, sigmoid_neg, lower;
        Logits::sigmoids(x, e, sigmoid, sigmoid_neg);
        const V ce = Logits::loss(x, t, one, one, e);
        const V q = one_minus_p_t(t, sigmoid, sigmoid_neg);
        const V modulated = modulation(q, true, lower);
        const V a_t = alpha_factor(t);
        V slope = ((one - t) * sigmoid - t * sigmoid_neg) * modulated;
        if (params.gamma != T(0)) {
            const V dq = (one - (t + t)) * (sigmoid * sigmoid_neg);
            slope = slope + V::broadcast(params.gamma) * ce * lower * dq;
        }
        d = a_t * slope;
        return a_t * (ce * modulated);
    }
};

template <class S, class T = compute_t<S>>
SegmentResult sigmoid_focal_loss(const ElementwiseSegment<S>& s, int64_t n, const SigmoidFocalParams<T>& params) {
    return elementwise_segment(s, n, SigmoidFocalLossPointwise<T>(params));
}

}  // namespace

void register_sigmoid_focal_loss_kernels(KernelTable& table) {
    for_each_kernel_set(table, [](auto& set) {
        set.sigmoid_focal_loss.forward = &sigmoid_focal_loss<typename std::decay_t<decltype(set)>::Storage>;
    });
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
