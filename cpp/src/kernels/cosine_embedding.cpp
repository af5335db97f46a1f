// The three dot products of the cosine embedding loss, in one sweep over both rows:
//   ab = sum_d a_d b_d,  aa = sum_d a_d^2,  bb = sum_d b_d^2.
// The loss itself (PyTorch's cos = ab / sqrt((aa + 1e-12)(bb + 1e-12)), margin, target) is formed
// per row by the caller (ops/cosine_embedding_ops.cpp): it is O(1) per row and needs sqrt.
// Sums are two-level (partial sums of kFoldVectors vectors folded into a total).
#include "fastloss/kernel_table.hpp"
#include "simd/vec-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

constexpr int64_t kFoldVectors = 32;

template <class S, class T = compute_t<S>>
void dot3_rows(const S* a, int64_t a_row_stride, const S* b, int64_t b_row_stride, T* out3, int64_t rows,
               int64_t n) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V zero = V::broadcast(T(0));
    for (int64_t r = 0; r < rows; ++r) {
        const S* ar = a + r * a_row_stride;
        const S* br = b + r * b_row_stride;
        V ab = zero, aa = zero, bb = zero;
        const int64_t full_end = n - n % W;
        int64_t i = 0;
        while (i < full_end) {
            const int64_t fold_end = full_end - i > kFoldVectors * W ? i + kFoldVectors * W : full_end;
            V pab = zero, paa = zero, pbb = zero;
            for (; i < fold_end; i += W) {
                const V va = vload(ar + i), vb = vload(br + i);
                pab = fma(va, vb, pab);
                paa = fma(va, va, paa);
                pbb = fma(vb, vb, pbb);
            }
            ab = ab + pab;
            aa = aa + paa;
            bb = bb + pbb;
        }
        if (i < n) {  // zero padding adds nothing
            const V va = vload_partial(ar + i, n - i, T(0)), vb = vload_partial(br + i, n - i, T(0));
            ab = fma(va, vb, ab);
            aa = fma(va, va, aa);
            bb = fma(vb, vb, bb);
        }
        out3[3 * r] = reduce_sum(ab);
        out3[3 * r + 1] = reduce_sum(aa);
        out3[3 * r + 2] = reduce_sum(bb);
    }
}

// The gradient's sweep: grad_r = coef[2r] a_r + coef[2r + 1] b_r (the coefficients are formed per
// row by the caller from the dot products, ops/cosine_embedding_ops.cpp). The caller runs it right
// after dot3_rows on the same few rows, so a and b come from L1/L2. Element i of a is read before
// element i of grad is written, so grad may be a.
template <class S, class T = compute_t<S>>
void combine_rows(const S* a, int64_t a_row_stride, const S* b, int64_t b_row_stride, const T* coef, S* grad,
                  int64_t grad_row_stride, int64_t rows, int64_t n) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    for (int64_t r = 0; r < rows; ++r) {
        const S* ar = a + r * a_row_stride;
        const S* br = b + r * b_row_stride;
        S* gr = grad + r * grad_row_stride;
        const V ca = V::broadcast(coef[2 * r]), cb = V::broadcast(coef[2 * r + 1]);
        int64_t i = 0;
        for (; i + W <= n; i += W) store(gr + i, fma(ca, vload(ar + i), cb * vload(br + i)));
        if (i < n) {
            const V va = vload_partial(ar + i, n - i, T(0)), vb = vload_partial(br + i, n - i, T(0));
            store_partial(gr + i, n - i, fma(ca, va, cb * vb));
        }
    }
}

}  // namespace

void register_cosine_kernels(KernelTable& table) {
    for_each_kernel_set(table, [](auto& set) {
        using S = typename std::decay_t<decltype(set)>::Storage;
        set.cosine = {&dot3_rows<S>, &combine_rows<S>};
    });
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
