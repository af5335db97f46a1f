// cosine_embedding_loss over the rows of two (N, D) arrays.
#pragma once

#include <cstdint>

#include "fastloss/half.hpp"
#include "ops/loss_vocabulary.hpp"

namespace fastloss {

// Per row, PyTorch's own cosine (not F.cosine_similarity's): EPSILON = 1e-12f (a float constant,
// 9.99999996e-13, also for float64 inputs) is added to each
// squared norm, cos = sum x1 x2 / sqrt((sum x1^2 + EPSILON)(sum x2^2 + EPSILON)), computed in T
// as PyTorch does (so huge norms overflow the same way), and
//   loss = 1 - cos if y == 1;  max(0, cos - margin) if y == -1 (NaN stays NaN);  0 otherwise.
template <class S>
struct CosineEmbeddingCall {
    using T = compute_t<S>;
    // Row r's value d of x1 at x1[r * x1_row_stride + d * x1_feature_stride] (any strides).
    const S* x1 = nullptr;
    int64_t x1_row_stride = 0;
    int64_t x1_feature_stride = 1;
    const S* x2 = nullptr;
    int64_t x2_row_stride = 0;
    int64_t x2_feature_stride = 1;
    const double* target = nullptr;  // (rows,), target_stride apart
    int64_t target_stride = 1;
    int64_t rows = 0;
    int64_t dim = 0;
    double margin = 0.0;
    Reduction reduction = Reduction::mean;
    S* loss = nullptr;  // Reduction::none: (rows,) contiguous

    // Optional gradient of the returned loss w.r.t. x1 (of sum(grad_output * loss) for
    // Reduction::none), any strides; it may be x1 itself, never x2.
    S* grad = nullptr;
    int64_t grad_row_stride = 0;
    int64_t grad_feature_stride = 1;
    const S* grad_output = nullptr;  // Reduction::none: (rows,), grad_output_stride apart; null: ones
    int64_t grad_output_stride = 0;
    T grad_output_scalar = T(1);  // mean and sum: the gradient of grad_output_scalar * loss
};

// Returns the mean (over rows) or sum; 0 for Reduction::none, whose values go to call.loss.
template <class S>
double cosine_embedding_forward(const CosineEmbeddingCall<S>& call);

}  // namespace fastloss
