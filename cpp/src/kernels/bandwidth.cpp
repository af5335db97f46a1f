// Streaming loops for the roofline of the native benchmark harness: the fastest this ISA can read
// and write memory, with the same vector width the loss kernels use.
#include "fastloss/kernel_table.hpp"
#include "simd/vec-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

double read_sum(const float* x, int64_t n) {
    using V = Vec<float>;
    constexpr int64_t W = V::width;
    const V zero = V::broadcast(0.0f);
    V s0 = zero, s1 = zero, s2 = zero, s3 = zero;
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        s0 = s0 + vload(x + i);
        s1 = s1 + vload(x + i + W);
        s2 = s2 + vload(x + i + 2 * W);
        s3 = s3 + vload(x + i + 3 * W);
    }
    for (; i < n; i += W) s0 = s0 + vload_partial(x + i, n - i, 0.0f);
    return double(reduce_sum((s0 + s1) + (s2 + s3)));
}

void copy(const float* x, float* y, int64_t n) {
    using V = Vec<float>;
    constexpr int64_t W = V::width;
    int64_t i = 0;
    for (; i + W <= n; i += W) store(y + i, vload(x + i));
    if (i < n) store_partial(y + i, n - i, vload_partial(x + i, n - i, 0.0f));
}

void fill(float* y, int64_t n, float value) {
    using V = Vec<float>;
    constexpr int64_t W = V::width;
    const V v = V::broadcast(value);
    int64_t i = 0;
    for (; i + W <= n; i += W) store(y + i, v);
    if (i < n) store_partial(y + i, n - i, v);
}

}  // namespace

void register_bandwidth_kernels(KernelTable& table) {
    table.bandwidth.read_sum = &read_sum;
    table.bandwidth.copy = &copy;
    table.bandwidth.fill = &fill;
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
