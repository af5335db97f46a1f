// kl_div, binary_cross_entropy and binary_cross_entropy_with_logits over broadcast operands:
// layout (broadcast_geometry.hpp), threads, the fixed-order float64 sum, and the range check of
// binary_cross_entropy.
#pragma once

#include <cstdint>
#include <vector>

#include "fastloss/half.hpp"

namespace fastloss {

enum class ElementwiseLoss { kl_div, kl_div_log_target, binary_cross_entropy, binary_cross_entropy_with_logits };

// Every operand has the common `shape` (broadcast operands carry stride 0 along broadcast axes);
// strides are in elements, one per axis. Absent operands are nullptr.
template <class S>
struct ElementwiseLossCall {
    using T = compute_t<S>;
    std::vector<int64_t> shape;
    const S* input = nullptr;
    std::vector<int64_t> input_strides;
    const S* target = nullptr;
    std::vector<int64_t> target_strides;
    const S* weight = nullptr;  // binary cross-entropy only
    std::vector<int64_t> weight_strides;
    const S* pos_weight = nullptr;  // with logits only
    std::vector<int64_t> pos_weight_strides;
    S* out = nullptr;  // reduction 'none': one loss per element, written here
    std::vector<int64_t> out_strides;
    // The gradient with respect to the input, written in the same pass when grad is set (it may
    // be input itself, same strides): (d loss / d input) * grad_output, or * grad_scale when
    // grad_output is nullptr (the caller folds the mean's 1/D into grad_scale).
    S* grad = nullptr;
    std::vector<int64_t> grad_strides;
    const S* grad_output = nullptr;
    std::vector<int64_t> grad_output_strides;
    T grad_scale = T(1);
};

// Returns the sum of the losses, in float64, combined in a fixed order (bit-identical for any
// number of threads); 0 when they were written to call.out. binary_cross_entropy throws
// std::invalid_argument ("all elements of input should be between 0 and 1", then the same for
// target) after the computation when a value is outside [0, 1] or NaN; call.out then holds
// partial results the caller must discard, and so does call.grad (which may be the input).
template <class S>
double elementwise_loss(ElementwiseLoss kind, const ElementwiseLossCall<S>& call);

}  // namespace fastloss
