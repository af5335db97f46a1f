#include "ops/vector_math_ops.hpp"

#include "fastloss/dispatch.hpp"
#include "fastloss/parallel.hpp"

namespace fastloss {

namespace {
// Applies one of the active table's elementwise functions over [0, n), in parallel chunks.
template <class T>
void apply_in_parallel(void (*f)(const T*, T*, int64_t), const T* x, T* y, int64_t n) {
    parallel_for(n, 1, [&](int64_t b, int64_t e) { f(x + b, y + b, e - b); });
}
}  // namespace

template <class T>
void vector_exp(const T* x, T* y, int64_t n) {
    apply_in_parallel(active_kernels().math<T>().exp, x, y, n);
}

template <class T>
void vector_log(const T* x, T* y, int64_t n) {
    apply_in_parallel(active_kernels().math<T>().log, x, y, n);
}

template <class T>
void vector_log1p(const T* x, T* y, int64_t n) {
    apply_in_parallel(active_kernels().math<T>().log1p, x, y, n);
}

template <class T>
void vector_log1p_unit(const T* x, T* y, int64_t n) {
    apply_in_parallel(active_kernels().math<T>().log1p_unit, x, y, n);
}

template <class T>
void vector_tanh(const T* x, T* y, int64_t n) {
    apply_in_parallel(active_kernels().math<T>().tanh, x, y, n);
}

template void vector_exp<float>(const float*, float*, int64_t);
template void vector_exp<double>(const double*, double*, int64_t);
template void vector_log<float>(const float*, float*, int64_t);
template void vector_log<double>(const double*, double*, int64_t);
template void vector_log1p<float>(const float*, float*, int64_t);
template void vector_log1p<double>(const double*, double*, int64_t);
template void vector_log1p_unit<float>(const float*, float*, int64_t);
template void vector_log1p_unit<double>(const double*, double*, int64_t);
template void vector_tanh<float>(const float*, float*, int64_t);
template void vector_tanh<double>(const double*, double*, int64_t);

}  // namespace fastloss
