// store_row: a row of results written with non-temporal stores when the caller streams its output
// (outputs much larger than the caches, see streaming_store_min_bytes in ops/streaming_stores.hpp). Included by per-ISA kernel
// files only.
#pragma once

#include <cstdint>

#include "simd/vector_math-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

// Stores y[i] for i in [0, n) from f(i) (a vector of lanes i..i+W), with non-temporal stores for
// the aligned middle when `stream` is set: ordinary stores up to the first aligned address and
// for the tail. Forced inline: its loop is the writers' inner loop, and called as a function it
// kept the state that f captures by reference (the next row's online statistics) in memory.
template <class S, class F>
[[gnu::always_inline]] inline void store_row(S* y, int64_t n, bool stream, F&& f) {
    constexpr int64_t W = VecOf<S>::width;
    int64_t i = 0;
    if (stream) {
        const auto misalignment = reinterpret_cast<uintptr_t>(y) % (W * sizeof(S));
        if (misalignment % sizeof(S) == 0) {  // element-aligned: peel up to a vector boundary
            const int64_t head = misalignment ? int64_t((W * sizeof(S) - misalignment) / sizeof(S)) : 0;
            if (head > 0) {
                store_partial(y, head < n ? head : n, f(int64_t(0)));
                i = head;
            }
            for (; i + W <= n; i += W) store_stream(y + i, f(i));
        }
    }
    for (; i + W <= n; i += W) store(y + i, f(i));
    if (i < n) store_partial(y + i, n - i, f(i));
}

}  // namespace
}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
