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

}  // namespace
}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
