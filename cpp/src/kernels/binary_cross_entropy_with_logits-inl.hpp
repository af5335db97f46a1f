// Binary cross-entropy of logits, pointwise: the functor of binary_cross_entropy.cpp, and the
// pieces of a logit (exp(-|x|), both sigmoids, the loss) that focal_loss.cpp builds on.
//
// Logits x, target y, pos_weight pw, weight w:
//   loss = w [(1 - y) x + (1 + (pw - 1) y) softplus(-x)],
//   softplus(-x) = log(1 + exp(-x)) = max(-x, 0) + log1p(exp(-|x|)).
// exp only ever sees -|x| <= 0, so nothing overflows (x = +-1000 gives finite losses), and log1p
// keeps the tiny tail: x = 50, y = 1 gives exp(-50) = 1.9e-22, where log(1 + e) would give 0.
// e = exp(-|x|) lies in [0, 1], so vlog1p_unit (a short series, no exponent split) serves.
// This is -w [pw y log sigmoid(x) + (1 - y) log sigmoid(-x)] rewritten as PyTorch does.
//
// Gradient with respect to the input, as PyTorch autograd gives it:
//   w [(pw y + 1 - y) sigmoid(x) - pw y] = w [(sigmoid(x) - y) - (pw - 1) y sigmoid(-x)]
// The second form is the same value rearranged: sigmoid(x) - y stays exact-ish where the two
// nearly cancel, the pos_weight term vanishes exactly for pw = 1, and sigmoid(-x) = 1 -
// sigmoid(x) carries no cancellation for large x. Both sigmoids come from the loss's
// e = exp(-|x|) with one division: 1 / (1 + e) on x's side of zero, e / (1 + e) on the other.
//
// Without weight and pos_weight (both 1), the common call, the unweighted forms drop the
// weighting: loss = (1 - y) x + softplus(-x), gradient sigmoid(x) - y. They are the same values
// as the weighted forms give with ones (w = 1 and 1 + 0 y multiply exactly), for finite y.
#pragma once

#include "kernels/elementwise_segment-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

template <class T>
struct BinaryCrossEntropyWithLogitsPointwise {
    static constexpr bool checks_range = false;
    static constexpr T input_fill = T(0);
    static constexpr T target_fill = T(0);
    // e = exp(-|x|), in [0, 1]: every other term is built from it.
    static Vec<T> exp_neg_abs(Vec<T> x) { return vexp_nonpositive(Vec<T>::broadcast(T(0)) - abs(x)); }
    // sigmoid(x) and sigmoid(-x) from e, with one division.
    static void sigmoids(Vec<T> x, Vec<T> e, Vec<T>& sigmoid, Vec<T>& sigmoid_neg) {
        using V = Vec<T>;
        const V zero = V::broadcast(T(0)), one = V::broadcast(T(1));
        const V r = one / (one + e);
        const V er = e * r;
        const auto negative = less(x, zero);
        sigmoid = select(negative, er, r);
        sigmoid_neg = select(negative, r, er);
    }
    // softplus(-x) from e.
    static Vec<T> softplus_neg(Vec<T> x, Vec<T> e) {
        const Vec<T> zero = Vec<T>::broadcast(T(0));
        return max(zero - x, zero) + vlog1p_unit(e);
    }
    // The loss from e.
    static Vec<T> loss(Vec<T> x, Vec<T> y, Vec<T> w, Vec<T> pw, Vec<T> e) {
        using V = Vec<T>;
        const V one = V::broadcast(T(1));
        const V log_weight = fma(pw - one, y, one);  // 1 + (pw - 1) y
        return fma(one - y, x, log_weight * softplus_neg(x, e)) * w;
    }
    Vec<T> operator()(Vec<T> x, Vec<T> y, Vec<T> w, Vec<T> pw) const { return loss(x, y, w, pw, exp_neg_abs(x)); }
    Vec<T> operator()(Vec<T> x, Vec<T> y, Vec<T> w, Vec<T> pw, Vec<T>& d) const {
        using V = Vec<T>;
        const V one = V::broadcast(T(1));
        const V e = exp_neg_abs(x);
        V sigmoid, sigmoid_neg;
        sigmoids(x, e, sigmoid, sigmoid_neg);
        d = ((sigmoid - y) - (pw - one) * y * sigmoid_neg) * w;
        return loss(x, y, w, pw, e);
    }
    // The unweighted forms (see the top of the file).
    Vec<T> operator()(Vec<T> x, Vec<T> y) const {
        const Vec<T> one = Vec<T>::broadcast(T(1));
        return fma(one - y, x, softplus_neg(x, exp_neg_abs(x)));
    }
    Vec<T> operator()(Vec<T> x, Vec<T> y, Vec<T>& d) const {
        using V = Vec<T>;
        const V e = exp_neg_abs(x);
        V sigmoid, unused;  // sigmoid(-x) is left to the compiler to drop
        sigmoids(x, e, sigmoid, unused);
        d = sigmoid - y;
        return fma(V::broadcast(T(1)) - y, x, softplus_neg(x, e));
    }
};

}  // namespace
}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
