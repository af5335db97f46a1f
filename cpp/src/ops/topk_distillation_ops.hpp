// distillation_loss from a top-k teacher over rows of student logits (the Python layer moves the
// class axis last): the teacher's indices and target checked, soft-capping and half-precision rows
// staged one row at a time, threads. The caller combines and reduces the per-position terms.
#pragma once

#include <cstdint>

#include "fastloss/half.hpp"
#include "fastloss/kernel_table.hpp"

namespace fastloss {

template <class S>
struct TopkDistillationCall {
    using T = compute_t<S>;
    // rows x classes student logits, each row's classes contiguous, rows student_stride apart.
    const S* student = nullptr;
    int64_t rows = 0;
    int64_t classes = 0;
    int64_t student_stride = 0;
    // (rows, k), C-contiguous: the teacher's classes (any integers: checked here to be distinct
    // and in [0, classes)) and its log-probabilities at temperature T there.
    const int64_t* indices = nullptr;
    const T* logprobs = nullptr;
    int64_t k = 0;
    const int64_t* target = nullptr;  // (rows,) class indices or ignore_index (checked); or nullptr
    const T* weight = nullptr;        // (classes,), or nullptr
    int64_t ignore_index = -100;
    double label_smoothing = 0.0;
    double temperature = 2.0;
    Divergence divergence = Divergence::kl;
    double beta = 0.5;
    TopkResidual residual = TopkResidual::renormalize;
    double softcap = 0.0;  // the student's logits capped as cap tanh(s / cap) first; 0: none
    // The gradient's factors (TopkDistillationParams) and the z-loss's (CrossEntropyParams).
    double hard_grad = 0.0;
    double soft_grad = 0.0;
    double z_loss_grad = 0.0;
    // Outputs, (rows,) each: TopkDistillationRows's hard, soft and lse.
    T* hard = nullptr;
    T* soft = nullptr;
    T* lse = nullptr;
    // Or nullptr: the gradient, with the student's row layout (grad_stride); may be the student.
    S* grad = nullptr;
    int64_t grad_stride = 0;
    const T* scale = nullptr;  // (rows,), with grad
};

template <class S>
void topk_distillation(const TopkDistillationCall<S>& call);

}  // namespace fastloss
