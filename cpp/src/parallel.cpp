#include "fastloss/parallel.hpp"

#include <omp.h>

#include <atomic>

namespace fastloss {
namespace {
// 0: not set by set_num_threads(), follow the OpenMP runtime's setting.
std::atomic<int> g_num_threads{0};
}

int get_num_threads() {
    const int n = g_num_threads.load(std::memory_order_relaxed);
    if (n > 0) return n;
    // Read every time, not cached: OMP_NUM_THREADS sets it at start-up, and
    // threadpoolctl.threadpool_limits changes it at any time through omp_set_num_threads().
    const int runtime = omp_get_max_threads();
    return runtime < 1 ? 1 : runtime;
}

void set_num_threads(int n) {
    if (n < 1) n = 1;
    g_num_threads.store(n, std::memory_order_relaxed);
    omp_set_num_threads(n);  // so that threadpoolctl.threadpool_info() reports the same number
}

int64_t chunk_items(int64_t items, int64_t work_per_item) {
    if (work_per_item < 1) work_per_item = 1;
    int64_t chunk = kChunkWork / work_per_item;
    if (chunk < 1) chunk = 1;
    return chunk < items ? chunk : items;
}

bool should_parallelize(int64_t total_work) {
    return total_work >= kParallelMinWork && get_num_threads() > 1 && !omp_in_parallel();
}

namespace detail {
void run_chunks(int64_t items, int64_t chunk, bool parallel, ChunkFn fn, void* context) {
    const int64_t chunks = (items + chunk - 1) / chunk;
    if (!parallel || chunks < 2) {
        for (int64_t c = 0; c < chunks; ++c) {
            const int64_t begin = c * chunk;
            fn(context, begin, begin + chunk < items ? begin + chunk : items);
        }
        return;
    }
    const int threads = int(chunks < get_num_threads() ? chunks : get_num_threads());
    // Dynamic: a thread delayed by another process (shared machines) does not hold up the rest.
    // Chunk boundaries, not thread assignment, decide every result (see [Note: fixed chunking]).
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t c = 0; c < chunks; ++c) {
        const int64_t begin = c * chunk;
        fn(context, begin, begin + chunk < items ? begin + chunk : items);
    }
}
}  // namespace detail

const char* openmp_runtime() {
#if defined(__clang__)
    return "libomp (LLVM OpenMP)";
#elif defined(__GNUC__)
    return "libgomp (GNU OpenMP)";
#else
    return "OpenMP";
#endif
}

}  // namespace fastloss
