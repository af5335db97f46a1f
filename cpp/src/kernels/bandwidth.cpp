// Streaming loops for the roofline of the native benchmark harness: the fastest this ISA can read
// and write memory, with the same vector width the loss kernels use.
#include "fastloss/kernel_table.hpp"
#include "kernels/store_row-inl.hpp"
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

// Ordinary stores make the bus read each destination line before overwriting it (write-allocate);
// streamed (non-temporal) stores skip that read, as the kernels' stores do for outputs larger than
// the caches. The roofline takes the faster of the two, so that neither kind of kernel is
// compared with a ceiling it can beat.
void copy_with(const float* x, float* y, int64_t n, bool stream) {
    constexpr int64_t W = Vec<float>::width;
    store_row(y, n, stream, [&](int64_t i) {
        return i + W <= n ? vload(x + i) : vload_partial(x + i, n - i, 0.0f);
    });
    if (stream) stream_fence();
}

void fill_with(float* y, int64_t n, float value, bool stream) {
    const Vec<float> v = Vec<float>::broadcast(value);
    store_row(y, n, stream, [&](int64_t) { return v; });
    if (stream) stream_fence();
}

void copy(const float* x, float* y, int64_t n) { copy_with(x, y, n, false); }
void copy_stream(const float* x, float* y, int64_t n) { copy_with(x, y, n, true); }
void fill(float* y, int64_t n, float value) { fill_with(y, n, value, false); }
void fill_stream(float* y, int64_t n, float value) { fill_with(y, n, value, true); }

}  // namespace

void register_bandwidth_kernels(KernelTable& table) {
    table.bandwidth.read_sum = &read_sum;
    table.bandwidth.copy = &copy;
    table.bandwidth.fill = &fill;
    table.bandwidth.copy_stream = &copy_stream;
    table.bandwidth.fill_stream = &fill_stream;
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
