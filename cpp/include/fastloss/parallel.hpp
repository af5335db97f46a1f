// The only place that decides how work is split across threads.
//
// [Note: fixed chunking] Work is cut into chunks whose size depends only on the problem, never on
// the thread count, and anything combined across chunks is combined in chunk order. Results are
// therefore bit-identical for any number of threads.
#pragma once

#include <cstdint>
#include <type_traits>

namespace fastloss {

// Threads used by parallel regions: the OpenMP runtime's omp_get_max_threads() (so OMP_NUM_THREADS
// and threadpoolctl's limits are honoured) until set_num_threads() chooses a number.
// [Note: fork] In a child forked after this process ran a parallel region, always 1: libgomp's
// worker threads do not survive fork(), and its next parallel region would wait for them forever.
// Results are the same bits (see [Note: fixed chunking]); only the speed differs. (libgomp
// builds only: LLVM's libomp re-creates its threads. Only fastloss's own regions are seen: a
// libgomp shared with another library that ran one is not; the wheel bundles its own copy.)
int get_num_threads();
void set_num_threads(int n);  // n >= 1

// Whether this process is a child forked after a parallel region, and so runs serially.
bool forked_child_runs_serially();

// Below this many element-visits a call stays serial: a parallel region costs a few microseconds,
// more than the whole computation on small inputs.
constexpr int64_t kParallelMinWork = int64_t(1) << 16;
// [Note: chunk size] A chunk holds total work / kChunksWanted element-visits, but no fewer than
// kChunkWork and no more than kMaxChunkWork. Many chunks let dynamic scheduling even out threads
// that other processes delay (kChunksWanted = 4 for each of 16 cores); long ones let a kernel that
// fetches its next row while it works on this one ([Note: the next row's statistics while a row
// is written], row_max_sum's prefetch) do so for every row but the chunk's first: with 32k
// visits a chunk, a row of 32000 classes was a chunk of its own and never had its next row
// fetched. The size depends on the problem only ([Note: fixed chunking]).
constexpr int64_t kChunkWork = int64_t(1) << 15;
constexpr int64_t kMaxChunkWork = int64_t(1) << 20;
constexpr int64_t kChunksWanted = 64;

// Items per chunk for `items` items of `work_per_item` element-visits each.
int64_t chunk_items(int64_t items, int64_t work_per_item);

// Whether a call of this much total work should run in parallel.
bool should_parallelize(int64_t total_work);

namespace detail {
using ChunkFn = void (*)(void* context, int64_t begin, int64_t end);
void run_chunks(int64_t items, int64_t chunk, bool parallel, ChunkFn fn, void* context);
}  // namespace detail

// Calls body(begin, end) for consecutive chunks of [0, items). Chunks run on several threads when
// the total work is large enough. If body throws (AllocationFailure, say), the chunks not yet
// started are skipped and the first exception is rethrown here, after the parallel region.
template <class Body>
void parallel_for(int64_t items, int64_t work_per_item, Body&& body) {
    if (items <= 0) return;
    const int64_t chunk = chunk_items(items, work_per_item);
    const bool parallel = should_parallelize(items * (work_per_item > 0 ? work_per_item : 1));
    auto trampoline = [](void* context, int64_t begin, int64_t end) {
        (*static_cast<std::remove_reference_t<Body>*>(context))(begin, end);
    };
    detail::run_chunks(items, chunk, parallel, trampoline, const_cast<void*>(static_cast<const void*>(&body)));
}

// Name and version of the OpenMP runtime this build links, for show_config().
const char* openmp_runtime();

}  // namespace fastloss
