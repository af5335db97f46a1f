#include "ops/cosine_embedding_ops.hpp"

#include <cmath>
#include <vector>

#include "fastloss/dispatch.hpp"
#include "fastloss/parallel.hpp"
#include "ops/class_targets.hpp"

namespace fastloss {
namespace {

// Rows per kernel call: the three dot products of a block land in a small stack buffer.
constexpr int64_t kRowBlock = 64;

template <class T>
T cosine_embedding_row_loss(T ab, T aa, T bb, double y, double margin) {
    if (y != 1.0 && y != -1.0) return T(0);
    // PyTorch's EPSILON is the float constant 1e-12f (9.99999996e-13), for float64 inputs too.
    const T epsilon = T(1e-12f);
    const T cos = ab / std::sqrt((aa + epsilon) * (bb + epsilon));
    if (y == 1.0) return T(1) - cos;
    const T excess = cos - T(margin);
    return excess < T(0) ? T(0) : excess;  // clamp_min(0): NaN passes through
}

}  // namespace

template <class T>
double cosine_embedding_forward(const CosineEmbeddingCall<T>& call) {
    const int64_t n = call.rows;
    std::vector<T> scratch;
    T* loss = call.loss;
    if (call.reduction != Reduction::none) {
        scratch.assign(size_t(n), T(0));
        loss = scratch.data();
    }
    const CosineKernels<T>& k = cosine_kernels<T>(active_kernels());
    const int64_t blocks = (n + kRowBlock - 1) / kRowBlock;
    const int64_t per_block = kRowBlock * (call.dim > 0 ? 2 * call.dim : 1);
    parallel_for(blocks, per_block, [&](int64_t begin, int64_t end) {
        T dots[3 * kRowBlock];
        for (int64_t b = begin; b < end; ++b) {
            const int64_t first = b * kRowBlock;
            const int64_t rows = n - first < kRowBlock ? n - first : kRowBlock;
            k.dot3_rows(call.x1 + first * call.x1_row_stride, call.x1_row_stride, call.x2 + first * call.x2_row_stride,
                        call.x2_row_stride, dots, rows, call.dim);
            for (int64_t r = 0; r < rows; ++r) {
                loss[first + r] = cosine_embedding_row_loss(dots[3 * r], dots[3 * r + 1], dots[3 * r + 2],
                                                            call.target[(first + r) * call.target_stride], call.margin);
            }
        }
    });
    if (call.reduction == Reduction::none) return 0.0;
    const double total = sum_in_order(scratch);
    return call.reduction == Reduction::sum ? total : total / double(n);  // n = 0: NaN, as PyTorch
}

template double cosine_embedding_forward<float>(const CosineEmbeddingCall<float>&);
template double cosine_embedding_forward<double>(const CosineEmbeddingCall<double>&);

}  // namespace fastloss
