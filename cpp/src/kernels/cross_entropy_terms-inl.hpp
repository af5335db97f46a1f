// The per-position cross-entropy of an index target from a row's softmax statistics, shared by the
// kernels that compute one (cross_entropy.cpp, distillation.cpp). Included by per-ISA kernel files.
#pragma once

#include "fastloss/kernel_table.hpp"
#include "simd/vec-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

// loss = (1-eps) w_y (log s - (x_y - m)) + (eps/C) (W log s - sum_c w_c (x_c - m)),
// with s = sum_c exp(x_c - m) and smooth_shifted_sum = sum_c w_c (x_c - m) (unused when eps = 0,
// so that PyTorch's eps = 0 loss never sees the inf of a -inf non-target logit).
template <class T>
T index_loss(T log_s, T x_y_minus_m, T w_y, T smooth_shifted_sum, const CrossEntropyParams<T>& p) {
    const T nll = log_s - x_y_minus_m;
    if (p.label_smoothing == T(0)) return w_y * nll;
    const T eps = p.label_smoothing;
    return (T(1) - eps) * w_y * nll + eps / T(p.classes) * (p.weight_sum * log_s - smooth_shifted_sum);
}

// Its gradient with respect to the logits, for an upstream factor g:
//   d loss / d x_c = a e_c - b w_c - [c = y] correction,   e_c = exp(x_c - m),
//   a = g / s ((1-eps) w_y + eps W / C),   b = g eps / C,   correction = g (1-eps) w_y.
// Without smoothing, b = 0 and the weights other than w_y take no part (callers then drop the
// b w_c term): a non-finite weight of a class that no row targets leaves the gradient finite, as
// in PyTorch, where 0 * inf would make it NaN.
template <class T>
struct IndexGradient {
    T a, b, correction;
};

// With z-loss, z lse^2 per position, d/dx_c = 2 z lse p_c = (2 z lse / s) e_c: one more share of
// the factor of e_c, g z_loss_grad lse / s (z_loss_grad holds 2 z and the ratio of the two
// reductions' factors, see CrossEntropyParams). Without z-loss nothing is added (not even 0, which
// would turn a -0 factor into +0).
template <class T>
T with_z_loss(T a, T g, T s, T lse, const CrossEntropyParams<T>& p) {
    return p.z_loss_grad == T(0) ? a : a + g * p.z_loss_grad * lse / s;
}

template <class T>
IndexGradient<T> index_gradient(T g, T s, T lse, T w_y, const CrossEntropyParams<T>& p) {
    const T eps = p.label_smoothing;
    if (eps == T(0)) return {with_z_loss(g / s * w_y, g, s, lse, p), T(0), g * w_y};
    const T C = T(p.classes);
    const T a = g / s * ((T(1) - eps) * w_y + eps * p.weight_sum / C);
    return {with_z_loss(a, g, s, lse, p), g * eps / C, g * (T(1) - eps) * w_y};
}

// The class weights of the b w_c term: none without smoothing (see index_gradient).
template <class T>
const T* smoothing_weights(const CrossEntropyParams<T>& p) {
    return p.label_smoothing == T(0) ? nullptr : p.weight;
}

}  // namespace
}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
