// cross_entropy and nll_loss over one class axis of strided arrays: target checks, layout choice,
// threads, and the reduction over positions.
#pragma once

#include <cstdint>

#include "fastloss/half.hpp"
#include "ops/loss_vocabulary.hpp"
#include "ops/inline_vector.hpp"

namespace fastloss {

// S is the storage type of the arrays (float, double, Half, BFloat16); numbers are in its compute type.
template <class S>
struct ClassificationLossCall {
    using T = compute_t<S>;
    const S* input = nullptr;  // logits (cross_entropy) or log-probabilities (nll_loss)
    Extents input_strides;
    Extents shape;  // the input's shape
    int axis = 0;                // the class axis

    // Exactly one kind of target. Strides have one entry per axis of `shape`; the entry for
    // `axis` is ignored for the per-position arrays (target, loss).
    const int64_t* target = nullptr;
    Extents target_strides;
    const S* probabilities = nullptr;  // cross_entropy only: same shape as the input
    Extents probability_strides;

    const S* weight = nullptr;  // (C,) contiguous, or nullptr
    int64_t ignore_index = -100;
    T label_smoothing = T(0);
    Reduction reduction = Reduction::mean;

    S* loss = nullptr;  // Reduction::none: per-position output
    Extents loss_strides;

    // cross_entropy only. z-loss: z lse^2 added per non-ignored position, reduced as Liger reduces
    // it (see cross_entropy_forward). lse, or nullptr: each position's log-sum-exp of its logits
    // (ignored positions' too), an output of the per-position shape.
    double z_loss = 0.0;
    S* lse = nullptr;
    Extents lse_strides;
    // Logit soft-capping: the loss of softcap tanh(x / softcap) (0: none).
    double softcap = 0.0;

    // Optional gradient of the returned loss w.r.t. the input, same shape (may be the input).
    // For Reduction::none it is the gradient of sum(grad_output * loss); grad_output is a
    // per-position array (nullptr: all ones).
    S* grad = nullptr;
    Extents grad_strides;
    const S* grad_output = nullptr;
    Extents grad_output_strides;
    T grad_output_scalar = T(1);  // mean and sum: the gradient of grad_output_scalar * loss
};

// Returns the mean or sum (0 for Reduction::none, whose values go to call.loss).
template <class S>
double cross_entropy_forward(const ClassificationLossCall<S>& call);

template <class S>
double nll_loss_forward(const ClassificationLossCall<S>& call);

}  // namespace fastloss
