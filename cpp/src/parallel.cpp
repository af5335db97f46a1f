#include "fastloss/parallel.hpp"

#include <omp.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <exception>

namespace fastloss {
namespace {
// 0: not set by set_num_threads(), follow the OpenMP runtime's setting.
std::atomic<int> g_num_threads{0};

// See [Note: fork]. The first is set before this process's first parallel region; the second in
// a child forked after it (by the at-fork handler, which runs in the child's only thread).
std::atomic<bool> g_ran_parallel_region{false};
std::atomic<bool> g_serial_after_fork{false};

// Only libgomp loses its threads for good; LLVM's libomp re-creates them in the child.
void after_fork_in_child() {
#if defined(__GNUC__) && !defined(__clang__)
    if (g_ran_parallel_region.load(std::memory_order_relaxed)) g_serial_after_fork.store(true);
#endif
}

const bool g_fork_handler_registered = pthread_atfork(nullptr, nullptr, after_fork_in_child) == 0;
}  // namespace

int get_num_threads() {
    if (g_serial_after_fork.load(std::memory_order_relaxed)) return 1;
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
    // [Note: chunk size]
    // The total work, capped where the clamp below caps it anyway, so that the product cannot overflow.
    const int64_t cap = kMaxChunkWork * kChunksWanted;
    const int64_t total = items <= cap / work_per_item ? items * work_per_item : cap;
    const int64_t work = std::clamp(total / kChunksWanted, kChunkWork, kMaxChunkWork);
    int64_t chunk = work / work_per_item;
    if (chunk < 1) chunk = 1;
    return chunk < items ? chunk : items;
}

bool forked_child_runs_serially() { return g_fork_handler_registered && g_serial_after_fork.load(); }

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
    g_ran_parallel_region.store(true, std::memory_order_relaxed);
    // No exception may leave the region (it would terminate the process): the first is kept and
    // rethrown after it, and the chunks that have not started yet are skipped.
    std::exception_ptr failure;
    std::atomic<bool> failed{false};
    // Dynamic: a thread delayed by another process (shared machines) does not hold up the rest.
    // Chunk boundaries, not thread assignment, decide every result (see [Note: fixed chunking]).
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t c = 0; c < chunks; ++c) {
        if (failed.load(std::memory_order_relaxed)) continue;
        const int64_t begin = c * chunk;
        try {
            fn(context, begin, begin + chunk < items ? begin + chunk : items);
        } catch (...) {
#pragma omp critical(fastloss_parallel_failure)
            if (!failure) failure = std::current_exception();
            failed.store(true, std::memory_order_relaxed);
        }
    }
    if (failure) std::rethrow_exception(failure);
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
