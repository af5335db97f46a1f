// When a kernel writes its output with non-temporal stores.
#pragma once

#include <cstdint>

namespace fastloss {

// [Note: when to stream] Non-temporal stores send an output straight to DRAM: it does not evict
// the input on its way through the caches, and its lines are not read before being written. An
// output that the last-level cache would have held, with its input, is only slowed by them. Outputs
// of at least this many bytes are streamed: a quarter of the last-level cache (the output then
// fills at least half of it with its input), at most 32 MiB, or 8 MiB where the cache size is
// unknown. Measured (BENCHMARKS.md):
//  * with a 32 MiB L3, streaming 4096 x 1000 float32 (16 MB) took log_softmax from 0.78-0.88 ms to
//    0.63-0.66 ms;
//  * on a VM that reports its host's 480 MiB L3, shared with every neighbour, streaming that shape
//    slowed log_softmax from 0.65 to 0.78 ms and cross_entropy's gradient from 0.63 to 1.5 ms; but
//    a quarter of 480 MiB left 64 MB outputs unstreamed, and streaming them was faster:
//    4096 x 4000 float32 log_softmax 8.3-11.9 -> 5.3-5.8 ms on one thread, bfloat16
//    1024 x 32000 12.1-14.2 -> 10.3-10.5 ms. Hence the cap.
int64_t streaming_store_min_bytes();

// Sets it (tests exercise both store policies on any machine); a negative value restores the
// default. Returns the previous value.
int64_t set_streaming_store_min_bytes(int64_t bytes);

// Zeroes `bytes` bytes at p, the aligned middle with non-temporal stores (the active ISA's
// bandwidth.fill_stream: zero bits are 0.0f): for outputs that are mostly zeros, as nll_loss's
// gradient, past streaming_store_min_bytes().
void zero_bytes_streamed(void* p, int64_t bytes);

}  // namespace fastloss
