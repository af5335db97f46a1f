// kl_div, binary_cross_entropy(_with_logits) and sigmoid_focal_loss over broadcast operands:
// layout (broadcast_geometry.hpp), threads, the fixed-order float64 sum, and the range check of
// binary_cross_entropy.
#pragma once

#include <cstdint>

#include "fastloss/half.hpp"
#include "ops/loss_vocabulary.hpp"
#include "ops/inline_vector.hpp"

namespace fastloss {

enum class ElementwiseLoss {
    kl_div,
    kl_div_log_target,
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    sigmoid_focal_loss,
    jensen_shannon,  // with ElementwiseLossCall::beta
    jensen_shannon_log_target,
};

// Every operand has the common `shape` (broadcast operands carry stride 0 along broadcast axes);
// strides are in elements, one per axis. Absent operands are nullptr.
template <class S>
struct ElementwiseLossCall {
    using T = compute_t<S>;
    Extents shape;
    const S* input = nullptr;
    Extents input_strides;
    const S* target = nullptr;
    Extents target_strides;
    const S* weight = nullptr;  // binary cross-entropy only
    Extents weight_strides;
    const S* pos_weight = nullptr;  // with logits only
    Extents pos_weight_strides;
    // sigmoid_focal_loss only: alpha (< 0: no alpha weighting) and gamma (finite, >= 0).
    double focal_alpha = -1.0;
    double focal_gamma = 0.0;
    double beta = 0.5;  // Jensen-Shannon only, 0 < beta <= 1 (KLDivKernels)
    S* out = nullptr;  // reduction 'none': one loss per element, written here
    Extents out_strides;
    // The reduction of the returned loss: the sum, or the sum / mean_count (NaN for a count of
    // 0, as PyTorch) for a mean (kl_div's batchmean is a mean over input.shape[0]); 'none' writes
    // every loss to `out` instead.
    Reduction reduction = Reduction::sum;
    int64_t mean_count = 0;
    // The gradient with respect to the input, written in the same pass when grad is set (it may
    // be input itself, same strides): (d loss / d input) * grad_output for 'none', else
    // * grad_output_scalar, divided by mean_count for a mean. With unscaled_gradient, d loss /
    // d input alone: the caller sums a broadcast input's gradient and scales that sum.
    S* grad = nullptr;
    Extents grad_strides;
    const S* grad_output = nullptr;
    Extents grad_output_strides;
    T grad_output_scalar = T(1);
    bool unscaled_gradient = false;
};

// Returns the losses' sum or mean, in float64, summed in a fixed order (bit-identical for any
// number of threads); 0 when they were written to call.out. binary_cross_entropy throws
// std::invalid_argument ("all elements of input should be between 0 and 1", then the same for
// target) after the computation when a value is outside [0, 1] or NaN; call.out then holds
// partial results the caller must discard, and so does call.grad (which may be the input).
template <class S>
double elementwise_loss(ElementwiseLoss kind, const ElementwiseLossCall<S>& call);

}  // namespace fastloss
