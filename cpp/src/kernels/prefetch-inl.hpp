// Software prefetch: asking for cache lines before a loop reads them, where the hardware
// prefetcher alone does not run far enough ahead. Included by per-ISA kernel files only.
#pragma once

#include <cstdint>

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

// The cache a prefetch fills: L1 (and those below it), or L2 only.
enum class PrefetchInto { l1, l2 };

// [Note: prefetch helpers are forced inline] GCC takes a function whose only statements are
// __builtin_prefetch calls for one without side effects, and deletes the calls to it where it did
// not inline it first: the column sweeps' prefetches (through prefetch_column_chunk_ahead) and
// distillation's (prefetch_column_class) were compiled to nothing, which only their object code
// showed. So every function that only prefetches is forced inline, here and where it is defined.
#define FASTLOSS_PREFETCH_HELPER [[gnu::always_inline]] inline

// Asks for the cache lines of [p, p + count) to be fetched: a hint, which never faults.
template <PrefetchInto into = PrefetchInto::l1, class S>
FASTLOSS_PREFETCH_HELPER void prefetch_elements(const S* p, int64_t count) {
    constexpr int64_t kLineBytes = 64;
    constexpr int kLocality = into == PrefetchInto::l1 ? 3 : 2;  // prefetcht0 / prefetcht1
    const char* bytes = reinterpret_cast<const char*>(p);
    for (int64_t offset = 0; offset < count * int64_t(sizeof(S)); offset += kLineBytes) {
        __builtin_prefetch(bytes + offset, /*rw=*/0, kLocality);
    }
}

// The same, into the cache `into` names at run time.
template <class S>
FASTLOSS_PREFETCH_HELPER void prefetch_elements(PrefetchInto into, const S* p, int64_t count) {
    if (into == PrefetchInto::l1) {
        prefetch_elements<PrefetchInto::l1>(p, count);
    } else {
        prefetch_elements<PrefetchInto::l2>(p, count);
    }
}

// [Note: the next row into L1 or L2] A two-sweep row kernel (the max from memory, then the sums
// from cache) fetches the next row while it takes the sums, so the next max reads from cache and
// the memory stream runs under the exponentials. A row of up to 16 KiB (half of L1) is fetched
// into L1; a longer one into L2 only (prefetcht1), where it does not hold L1's few miss buffers
// against the current row's loads. Measured side by side (AMD Zen 4, 1 and 2 threads), fetched
// into L2 rather than L1: cross_entropy's gradient rows of 32 and 64 KB (8000 classes, float32
// and float64) 0.77-0.88x the time, of 32 KB (4000 float64 classes) 0.89-0.92x; its forward with
// label smoothing at 32000 and 128256 float32 classes 0.71-0.89x (L1: 0.89-0.93x). But rows of
// 16 KB (4000 float32 classes) took 1.07-1.13x and rows of 8 KB (1000 float64) 1.19x.
constexpr int64_t kNextRowInL1Bytes = 16 << 10;

inline PrefetchInto next_row_cache(int64_t row_bytes) {
    return row_bytes <= kNextRowInL1Bytes ? PrefetchInto::l1 : PrefetchInto::l2;
}

// The line holding element i of p, where i may lie past the array's end (the ahead-prefetch of a
// stream's last stretch): the address is formed as an integer, and a prefetch never faults.
template <class S>
FASTLOSS_PREFETCH_HELPER void prefetch_element_at(const S* p, int64_t i) {
    const uintptr_t address = reinterpret_cast<uintptr_t>(p) + uintptr_t(i) * sizeof(S);
    __builtin_prefetch(reinterpret_cast<const void*>(address), /*rw=*/0, /*locality=*/3);
}

// [Note: prefetch ahead in the online sweep] The online sweep computes its exponentials as the
// row streams in, and the hardware prefetcher alone does not run far enough ahead of it: the core
// stalls on each line's arrival, then computes, and time adds up as memory time plus exp time.
// Asking for the line kPrefetchAheadBytes ahead of the one being read keeps 32 lines in flight.
// Measured in the native harness (AVX-512, float32 and float64 4096 x 32000, 1 and 2 threads),
// 2 KiB ahead beat 1, 4 and 16 KiB and took logsumexp from 1.9x to 1.3x its roofline
// (BENCHMARKS.md). The row's last 2 KiB are not fetched ahead: the next row need not follow it.
// The elementwise losses stall the same way, their logs and exps between the loads: the same
// distance took binary_cross_entropy_with_logits (float32, 4096 x 32000, 2 threads) from 109 to
// 45 ms, kl_div from 45 to 35 ms (elementwise_segment-inl.hpp).
constexpr int64_t kPrefetchAheadBytes = 2048;

}  // namespace
}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
