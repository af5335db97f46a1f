// distillation_loss over one class axis of strided arrays: target checks, layout choice, threads,
// and how the hard and soft terms are combined and reduced.
#pragma once

#include <cstdint>

#include "fastloss/half.hpp"
#include "fastloss/kernel_table.hpp"

#include "ops/loss_vocabulary.hpp"
#include "ops/inline_vector.hpp"

namespace fastloss {

// L = alpha CE(s, target) + (1 - alpha) T^2 D, D the divergence between p = softmax(t/T) and
// sigma = softmax(s/T) (kernel_table.hpp's Divergence; by default KL(p || sigma)), where
//  * mean: CE is cross_entropy's mean (weighted by the targets' weights, or over positions for
//          probability targets) and KL is kl_div's batchmean: the sum over every position divided
//          by shape[0], exactly as
//          alpha*F.cross_entropy(s, y) + (1-alpha)*T*T*F.kl_div(F.log_softmax(s/T, 1),
//                                                               F.softmax(t/T, 1), reduction="batchmean")
//  * sum:  alpha CE_sum + (1 - alpha) T^2 KL_sum
//  * none: per position alpha CE_i + (1 - alpha) T^2 KL_i (CE_i = 0 at ignored positions; KL_i
//          counts there, as kl_div has no ignore_index)
// and the other divergences are reduced as KL is (reverse_kl and jsd: batchmean for mean).
template <class S>
struct DistillationCall {
    using T = compute_t<S>;
    const S* student = nullptr;
    Extents student_strides;
    const S* teacher = nullptr;
    Extents teacher_strides;
    Extents shape;  // shared by student and teacher
    int axis = 0;                // the class axis

    // Exactly one kind of target, as in ClassificationLossCall.
    const int64_t* target = nullptr;
    Extents target_strides;  // full rank, class-axis entry ignored
    const S* probabilities = nullptr;
    Extents probability_strides;

    const S* weight = nullptr;  // (C,) contiguous, or nullptr
    int64_t ignore_index = -100;
    T label_smoothing = T(0);
    double temperature = 2.0;
    double alpha = 0.5;
    Divergence divergence = Divergence::kl;
    double beta = 0.5;  // Divergence::jsd, 0 < beta < 1
    // The hard term's z-loss, cross_entropy's (z lse^2 per position that counts, reduced as Liger
    // reduces it); the hard term, z-loss included, is then weighed by alpha. 0: none.
    double z_loss = 0.0;
    // Logit soft-capping of the student (0: none): both terms take s' = softcap tanh(s / softcap)
    // in place of s, the hard term's z-loss its log-sum-exp; the teacher's logits are not capped.
    // The gradient is with respect to s, through the tanh.
    double softcap = 0.0;
    Reduction reduction = Reduction::mean;

    S* loss = nullptr;  // Reduction::none: C-contiguous array of the per-position shape

    // Optional gradient of the returned loss w.r.t. the student logits, as in
    // ClassificationLossCall: the student's shape (may be the student array itself, never the
    // teacher's or the target's); for Reduction::none the gradient of sum(grad_output * loss).
    S* grad = nullptr;
    Extents grad_strides;
    const S* grad_output = nullptr;  // per position (full-rank strides), or nullptr: all ones
    Extents grad_output_strides;
    T grad_output_scalar = T(1);  // mean and sum: the gradient of grad_output_scalar * loss
};

// Returns the mean or sum (0 for Reduction::none, whose values go to call.loss).
template <class S>
double distillation_forward(const DistillationCall<S>& call);

}  // namespace fastloss
