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
// With the gradient, a block's rows of x1 and x2 should still be in L1/L2 when the gradient sweep
// re-reads them: at most this many bytes of both per block (and at least one row).
constexpr int64_t kGradBlockBytes = 32 * 1024;

// PyTorch's EPSILON is the float constant 1e-12f (9.99999996e-13), for float64 inputs too.
template <class T>
constexpr T kEpsilon = T(1e-12f);

// The gradient of one row's loss (times g) is coef_a x1 + coef_b x2. With m1 = |x1|^2 + eps,
// Dn = sqrt(m1 (|x2|^2 + eps)) and cos = x1.x2 / Dn:
//   d cos / d x1 = x2 / Dn - cos x1 / m1
// and d loss / d cos is -1 for y = 1, +1 for y = -1 where cos >= margin (PyTorch's clamp_min
// passes the gradient where its input is >= the bound, the boundary included), 0 otherwise.
template <class T>
void cosine_embedding_row_grad(T ab, T aa, T bb, double y, double margin, T g, T* coef) {
    const T m1 = aa + kEpsilon<T>;
    const T dn = std::sqrt(m1 * (bb + kEpsilon<T>));
    const T cos = ab / dn;
    T sign = T(0);
    if (y == 1.0) {
        sign = T(-1);
    } else if (y == -1.0 && cos >= T(margin)) {
        sign = T(1);
    }
    if (sign == T(0)) {
        coef[0] = coef[1] = T(0);
        return;
    }
    coef[0] = -sign * g * cos / m1;
    coef[1] = sign * g / dn;
}

template <class T>
T cosine_embedding_row_loss(T ab, T aa, T bb, double y, double margin) {
    if (y != 1.0 && y != -1.0) return T(0);
    const T epsilon = kEpsilon<T>;
    const T cos = ab / std::sqrt((aa + epsilon) * (bb + epsilon));
    if (y == 1.0) return T(1) - cos;
    const T excess = cos - T(margin);
    return excess < T(0) ? T(0) : excess;  // clamp_min(0): NaN passes through
}

}  // namespace

template <class S>
double cosine_embedding_forward(const CosineEmbeddingCall<S>& call) {
    using T = compute_t<S>;
    const int64_t n = call.rows;
    // Losses go to the caller's array for 'none' when it is of type T, else to scratch.
    constexpr bool loss_in_caller_array = std::is_same_v<S, T>;
    std::vector<T> scratch;
    T* loss = nullptr;
    if constexpr (loss_in_caller_array) loss = call.loss;
    if (call.reduction != Reduction::none || !loss_in_caller_array) {
        scratch = scratch_vector<T>(n, "per-row losses");
        loss = scratch.data();
    }
    const CosineKernels<S>& k = active_kernels().kernels<S>().cosine;
    const bool with_grad = call.grad != nullptr;
    int64_t block_rows = kRowBlock;
    if (with_grad && call.dim > 0) {
        const int64_t fit = kGradBlockBytes / (2 * call.dim * int64_t(sizeof(S)));
        block_rows = fit < 1 ? 1 : (fit < kRowBlock ? fit : kRowBlock);
    }
    // The gradient's scale: grad_output (none), its scalar (sum), or the scalar / n (mean).
    const T constant_scale =
        call.grad_output_scalar / (call.reduction == Reduction::mean ? T(n) : T(1));
    const int64_t blocks = (n + block_rows - 1) / block_rows;
    const int64_t per_block = block_rows * (call.dim > 0 ? 2 * call.dim : 1);
    parallel_for(blocks, per_block, [&](int64_t begin, int64_t end) {
        T dots[3 * kRowBlock];
        T coef[2 * kRowBlock];
        for (int64_t b = begin; b < end; ++b) {
            const int64_t first = b * block_rows;
            const int64_t rows = n - first < block_rows ? n - first : block_rows;
            const S* x1 = call.x1 + first * call.x1_row_stride;
            const S* x2 = call.x2 + first * call.x2_row_stride;
            k.dot3_rows(x1, call.x1_row_stride, x2, call.x2_row_stride, dots, rows, call.dim);
            for (int64_t r = 0; r < rows; ++r) {
                const double y = call.target[(first + r) * call.target_stride];
                loss[first + r] =
                    cosine_embedding_row_loss(dots[3 * r], dots[3 * r + 1], dots[3 * r + 2], y, call.margin);
                if (with_grad) {
                    const T g = call.grad_output ? T(call.grad_output[(first + r) * call.grad_output_stride])
                                                 : constant_scale;
                    cosine_embedding_row_grad(dots[3 * r], dots[3 * r + 1], dots[3 * r + 2], y, call.margin, g,
                                              coef + 2 * r);
                }
            }
            if (with_grad) {
                k.combine_rows(x1, call.x1_row_stride, x2, call.x2_row_stride, coef,
                               call.grad + first * call.grad_row_stride, call.grad_row_stride, rows, call.dim);
            }
        }
    });
    if (call.reduction == Reduction::none) {
        if (!loss_in_caller_array) {
            for (int64_t i = 0; i < n; ++i) call.loss[i] = S(scratch[size_t(i)]);
        }
        return 0.0;
    }
    const double total = sum_in_order(scratch);
    return call.reduction == Reduction::sum ? total : total / double(n);  // n = 0: NaN, as PyTorch
}

#define FASTLOSS_INSTANTIATE(S) template double cosine_embedding_forward<S>(const CosineEmbeddingCall<S>&);
FASTLOSS_FOR_EACH_STORAGE_TYPE(FASTLOSS_INSTANTIATE)
#undef FASTLOSS_INSTANTIATE

}  // namespace fastloss
