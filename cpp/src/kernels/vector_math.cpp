// Elementwise exp, log, log1p and tanh over arrays: the test hook for the error bounds documented in
// simd/vector_math-inl.hpp, and the exp throughput of the native benchmark's roofline.
#include "fastloss/kernel_table.hpp"
#include "simd/vector_math-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

template <class T, class V, V (*F)(V)>
void apply_elementwise(const T* x, T* y, int64_t n) {
    constexpr int64_t W = V::width;
    int64_t i = 0;
    for (; i + W <= n; i += W) store(y + i, F(vload(x + i)));
    if (i < n) store_partial(y + i, n - i, F(vload_partial(x + i, n - i, T(1))));
}

template <class T>
VectorMathKernels<T> make_math_kernels() {
    VectorMathKernels<T> k;
    k.exp = &apply_elementwise<T, Vec<T>, &vexp<Vec<T>>>;
    k.log = &apply_elementwise<T, Vec<T>, &vlog<Vec<T>>>;
    k.log1p = &apply_elementwise<T, Vec<T>, &vlog1p<Vec<T>>>;
    k.log1p_unit = &apply_elementwise<T, Vec<T>, &vlog1p_unit<Vec<T>>>;
    k.tanh = &apply_elementwise<T, Vec<T>, &vtanh<Vec<T>>>;
    return k;
}

}  // namespace

void register_vector_math_kernels(KernelTable& table) {
    table.math_f32 = make_math_kernels<float>();
    table.math_f64 = make_math_kernels<double>();
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
