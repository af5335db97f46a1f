#include "ops/streaming_stores.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "fastloss/dispatch.hpp"
#include "fastloss/kernel_table.hpp"

namespace fastloss {
namespace {
int64_t last_level_cache_bytes() {
#ifdef _SC_LEVEL3_CACHE_SIZE
    const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (l3 > 0) return l3;
#endif
#ifdef _SC_LEVEL2_CACHE_SIZE
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (l2 > 0) return l2;
#endif
    return 0;
}

int64_t default_min_bytes() {  // [Note: when to stream]
    static const int64_t bytes = [] {
        const int64_t cache = last_level_cache_bytes();
        return cache > 0 ? std::min(cache / 4, int64_t(32) << 20) : int64_t(8) << 20;
    }();
    return bytes;
}

std::atomic<int64_t> g_min_bytes{-1};  // -1: the default
}  // namespace

int64_t streaming_store_min_bytes() {
    const int64_t set = g_min_bytes.load(std::memory_order_relaxed);
    return set >= 0 ? set : default_min_bytes();
}

void zero_bytes_streamed(void* p, int64_t bytes) {
    char* begin = static_cast<char*>(p);
    const int64_t head = std::min<int64_t>(bytes, int64_t((4 - reinterpret_cast<uintptr_t>(begin) % 4) % 4));
    const int64_t floats = (bytes - head) / 4;
    const int64_t tail = bytes - head - 4 * floats;
    std::memset(begin, 0, size_t(head));
    active_kernels().bandwidth.fill_stream(reinterpret_cast<float*>(begin + head), floats, 0.0f);
    std::memset(begin + head + 4 * floats, 0, size_t(tail));
}

int64_t set_streaming_store_min_bytes(int64_t bytes) {
    const int64_t previous = streaming_store_min_bytes();
    g_min_bytes.store(bytes < 0 ? -1 : bytes, std::memory_order_relaxed);
    return previous;
}

}  // namespace fastloss
