#include "ops/cosine_embedding_ops.hpp"

#include <cmath>
#include <vector>

#include "fastloss/dispatch.hpp"
#include "fastloss/parallel.hpp"
#include "fastloss/scratch.hpp"
#include "ops/loss_vocabulary.hpp"

namespace fastloss {
namespace {

// Rows per kernel call: the three dot products of a block land in a small stack buffer.
constexpr int64_t kRowBlock = 64;
// With the gradient, a block's rows of x1 and x2 should still be in L1/L2 when the gradient sweep
// re-reads them: at most this many bytes of both per block (and at least one row).
constexpr int64_t kGradBlockBytes = 32 * 1024;

// Staged rows (see cosine_embedding_forward): at most this many bytes of x1, x2 and gradient rows
// per block, so a block stays in L2 between its gather, its kernels and its scatter.
constexpr int64_t kStagedBlockBytes = 512 * 1024;

// to[r, d] = from[r, d] for a (rows, dim) tile, each with its own row and feature strides; the
// inner loop runs along the axis whose strides are smaller in both together (in Fortran order,
// rows are next to each other and a row's features far apart).
template <class S>
void copy_tile(const S* from, int64_t from_row_stride, int64_t from_feature_stride, S* to, int64_t to_row_stride,
               int64_t to_feature_stride, int64_t rows, int64_t dim) {
    const auto magnitude = [](int64_t s) { return s < 0 ? -s : s; };
    if (magnitude(from_feature_stride) + magnitude(to_feature_stride) <=
        magnitude(from_row_stride) + magnitude(to_row_stride)) {
        for (int64_t r = 0; r < rows; ++r) {
            for (int64_t d = 0; d < dim; ++d) {
                to[r * to_row_stride + d * to_feature_stride] = from[r * from_row_stride + d * from_feature_stride];
            }
        }
    } else {
        for (int64_t d = 0; d < dim; ++d) {
            for (int64_t r = 0; r < rows; ++r) {
                to[r * to_row_stride + d * to_feature_stride] = from[r * from_row_stride + d * from_feature_stride];
            }
        }
    }
}

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
    // Rows whose values are not contiguous (Fortran order, a strided view) are gathered a block
    // at a time into scratch and run through the same kernels, so every layout gives the same
    // bits; the gradient is scattered back the same way.
    const bool staged = call.dim > 1 && (call.x1_feature_stride != 1 || call.x2_feature_stride != 1 ||
                                         (with_grad && call.grad_feature_stride != 1));
    int64_t block_rows = kRowBlock;
    const int64_t block_bytes = staged ? kStagedBlockBytes : with_grad ? kGradBlockBytes : 0;
    if (block_bytes > 0 && call.dim > 0) {
        const int64_t fit = block_bytes / ((staged ? 3 : 2) * call.dim * int64_t(sizeof(S)));
        block_rows = fit < 1 ? 1 : (fit < kRowBlock ? fit : kRowBlock);
    }
    // The gradient's scale: grad_output (none), its scalar (sum), or the scalar / n (mean).
    const T constant_scale =
        call.grad_output_scalar / (call.reduction == Reduction::mean ? T(n) : T(1));
    auto finish_row = [&](int64_t row, const T* dots, T* coef) {
        const double y = call.target[row * call.target_stride];
        loss[row] = cosine_embedding_row_loss(dots[0], dots[1], dots[2], y, call.margin);
        if (with_grad) {
            const T g = call.grad_output ? T(call.grad_output[row * call.grad_output_stride]) : constant_scale;
            cosine_embedding_row_grad(dots[0], dots[1], dots[2], y, call.margin, g, coef);
        }
    };
    const int64_t blocks = (n + block_rows - 1) / block_rows;
    const int64_t per_block = block_rows * (call.dim > 0 ? 2 * call.dim : 1);
    parallel_for(blocks, per_block, [&](int64_t begin, int64_t end) {
        T dots[3 * kRowBlock];
        T coef[2 * kRowBlock];
        std::vector<S> rows_buffer = scratch_vector<S>(staged ? count_product(3 * block_rows, call.dim) : 0, "staged rows");
        for (int64_t b = begin; b < end; ++b) {
            const int64_t first = b * block_rows;
            const int64_t rows = n - first < block_rows ? n - first : block_rows;
            const S* x1 = call.x1 + first * call.x1_row_stride;
            const S* x2 = call.x2 + first * call.x2_row_stride;
            S* grad = with_grad ? call.grad + first * call.grad_row_stride : nullptr;
            if (!staged) {
                k.dot3_rows(x1, call.x1_row_stride, x2, call.x2_row_stride, dots, rows, call.dim);
                for (int64_t r = 0; r < rows; ++r) finish_row(first + r, dots + 3 * r, coef + 2 * r);
                if (with_grad) {
                    k.combine_rows(x1, call.x1_row_stride, x2, call.x2_row_stride, coef, grad, call.grad_row_stride,
                                   rows, call.dim);
                }
                continue;
            }
            const int64_t dim = call.dim;
            S* a_rows = rows_buffer.data();
            S* b_rows = a_rows + block_rows * dim;
            S* grad_rows = b_rows + block_rows * dim;
            copy_tile(x1, call.x1_row_stride, call.x1_feature_stride, a_rows, dim, 1, rows, dim);
            copy_tile(x2, call.x2_row_stride, call.x2_feature_stride, b_rows, dim, 1, rows, dim);
            k.dot3_rows(a_rows, dim, b_rows, dim, dots, rows, dim);
            for (int64_t r = 0; r < rows; ++r) finish_row(first + r, dots + 3 * r, coef + 2 * r);
            if (with_grad) {
                k.combine_rows(a_rows, dim, b_rows, dim, coef, grad_rows, dim, rows, dim);
                copy_tile(grad_rows, dim, 1, grad, call.grad_row_stride, call.grad_feature_stride, rows, dim);
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
