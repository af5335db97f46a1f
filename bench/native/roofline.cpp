#include "roofline.hpp"

#include <omp.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>

#include "buffer.hpp"
#include "fastloss/dispatch.hpp"
#include "fastloss/kernel_table.hpp"
#include "fastloss/parallel.hpp"

namespace fastloss_bench {
namespace {

// One sum per thread, each on its own cache line so the threads never share one.
struct alignas(64) PaddedSum {
    double value = 0;
};

volatile double g_sink;  // keeps the read results observable

// Streams are split by fastloss::parallel_for, exactly as the kernels split their rows: fixed
// chunks of 32k floats, contiguous blocks of chunks per thread.
template <class Body>
void for_chunks(int64_t n, Body&& body) {
    fastloss::parallel_for(n, 1, body);
}

// The independent read probe: a plain loop the compiler vectorises (baseline ISA), not the
// library's kernel.
float plain_read_sum(const float* x, int64_t n) {
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; ++i) s += x[i];
    return s;
}

// The kernels ask for each stream's lines 2-4 KiB ahead (cpp/src/kernels/prefetch-inl.hpp), and
// from DRAM that reads faster than the plain loops do (AMD Zen 4, 2 threads: logsumexp read its
// rows at 1.14x the best plain probe). So that no ratio flatters a kernel, the read and copy tests
// also run independent plain loops that prefetch a line kProbeAheadBytes ahead, a line at a time.
constexpr int64_t kProbeAheadBytes = 2048;
constexpr int64_t kLineFloats = 16;

inline void prefetch_ahead(const float* x, int64_t i) {
    // An integer address: the line ahead may lie past the array, and a prefetch never faults.
    const uintptr_t address = reinterpret_cast<uintptr_t>(x + i) + uintptr_t(kProbeAheadBytes);
    __builtin_prefetch(reinterpret_cast<const void*>(address), /*rw=*/0, /*locality=*/3);
}

float prefetched_read_sum(const float* x, int64_t n) {
    float s = 0;
    int64_t i = 0;
    for (; i + kLineFloats <= n; i += kLineFloats) {
        prefetch_ahead(x, i);
#pragma omp simd reduction(+ : s)
        for (int64_t k = 0; k < kLineFloats; ++k) s += x[i + k];
    }
    for (; i < n; ++i) s += x[i];
    return s;
}

// A prefetched copy with non-temporal stores (SSE's, which every x86-64 has) from the first
// 16-byte boundary of y on.
void prefetched_stream_copy(const float* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i < n && reinterpret_cast<uintptr_t>(y + i) % 16 != 0; ++i) y[i] = x[i];
    for (; i + kLineFloats <= n; i += kLineFloats) {
        prefetch_ahead(x, i);
        for (int64_t k = 0; k < kLineFloats; k += 4) _mm_stream_ps(y + i + k, _mm_loadu_ps(x + i + k));
    }
    for (; i < n; ++i) y[i] = x[i];
    _mm_sfence();
}

double best_seconds_per_float(const std::vector<Probe>& probes, int64_t floats) {
    double best = std::numeric_limits<double>::infinity();
    for (const Probe& p : probes) best = std::min(best, p.timing.min_s);
    return best / double(floats);
}

}  // namespace

double BandwidthResult::best_read_seconds_per_float() const {
    return best_seconds_per_float(read, read_floats);
}
double BandwidthResult::best_write_seconds_per_float() const {
    return best_seconds_per_float(write, write_floats);
}
double BandwidthResult::best_copy_seconds_per_float() const {
    return best_seconds_per_float(copy, copy_floats);
}

const BandwidthResult* Roofline::find(int threads) const {
    for (const auto& r : by_threads) {
        if (r.threads == threads) return &r;
    }
    return nullptr;
}

double Roofline::seconds(int threads, int64_t bytes, int reads, int writes) const {
    const BandwidthResult* r = find(threads);
    if (!r) return -1;
    const double floats = double(bytes) / 4.0;
    const int copies = std::min(reads, writes);
    return floats * (copies * r->best_copy_seconds_per_float() +
                     (reads - copies) * r->best_read_seconds_per_float() +
                     (writes - copies) * r->best_write_seconds_per_float());
}

Roofline measure_roofline(const Plan& plan, CsvWriter& csv) {
    Roofline roof;
    roof.isa = fastloss::available_capabilities().back();
    fastloss::set_capability(roof.isa);
    const fastloss::BandwidthKernels& bw = fastloss::active_kernels().bandwidth;

    // One array for read and write; copy streams its first half into a second array of that
    // size, so every test moves at least half of bandwidth_bytes through DRAM.
    const int64_t n = plan.bandwidth_bytes / 4;
    const int64_t half = n / 2;
    Buffer<float> a(n), b(half);

    // First touch with the most threads used, outside any timing: page faults cost more than
    // the streaming itself and would otherwise land in the first measurement.
    const int most_threads = plan.threads.back();
    fastloss::set_num_threads(most_threads);
    for_chunks(n, [&](int64_t begin, int64_t end) { bw.fill(a.data() + begin, end - begin, 1.0f); });
    for_chunks(half, [&](int64_t begin, int64_t end) { bw.fill(b.data() + begin, end - begin, 0.0f); });
    std::vector<PaddedSum> sums(static_cast<size_t>(std::max(most_threads, omp_get_max_threads())));

    print_section(format("Memory roofline: %lld MiB arrays (copy %lld MiB -> %lld MiB), %d repeats",
                         (long long)(plan.bandwidth_bytes >> 20), (long long)(half * 4 >> 20),
                         (long long)(half * 4 >> 20), plan.repeats));
    std::printf(
        "Probes: %s = the library's bandwidth kernels (nt: non-temporal stores); omp simd, memset,\n"
        "memcpy, prefetched (2 KiB ahead, as the kernels fetch) = independent plain loops.\n"
        "copy GB/s counts 8 bytes per float (4 read + 4 "
        "written).\nThe kernel ceilings below use the best run of the best probe of each test "
        "(marked *).\n\n",
        roof.isa.c_str());
    const Table table({{"test", 6, true}, {"probe", 14, true}, {"threads", 7}, {"GB/s median", 11},
                       {"GB/s best", 9}, {"ms median", 9}, {"ms best", 8}, {"ns/float best", 13},
                       {"", 1, true}});
    table.print_header();

    using ReadProbe = std::function<double(const float*, int64_t)>;
    using WriteProbe = std::function<void(float*, int64_t)>;
    using CopyProbe = std::function<void(const float*, float*, int64_t)>;
    const std::vector<std::pair<std::string, ReadProbe>> read_probes = {
        {roof.isa, bw.read_sum},
        {"omp simd", [](const float* x, int64_t m) { return double(plain_read_sum(x, m)); }},
        {"prefetched", [](const float* x, int64_t m) { return double(prefetched_read_sum(x, m)); }}};
    const std::vector<std::pair<std::string, WriteProbe>> write_probes = {
        {roof.isa, [&](float* y, int64_t m) { bw.fill(y, m, 1.0f); }},
        {roof.isa + " nt", [&](float* y, int64_t m) { bw.fill_stream(y, m, 1.0f); }},
        {"memset", [](float* y, int64_t m) { std::memset(y, 0, size_t(m) * sizeof(float)); }}};
    const std::vector<std::pair<std::string, CopyProbe>> copy_probes = {
        {roof.isa, bw.copy},
        {roof.isa + " nt", bw.copy_stream},
        {"memcpy", [](const float* x, float* y, int64_t m) {
             std::memcpy(y, x, size_t(m) * sizeof(float));
         }},
        {"prefetched nt", prefetched_stream_copy}};

    for (int threads : plan.threads) {
        fastloss::set_num_threads(threads);
        BandwidthResult r;
        r.threads = threads;
        r.read_floats = n;
        r.write_floats = n;
        r.copy_floats = half;
        for (const auto& [name, read] : read_probes) {
            r.read.push_back({name, measure(plan.repeats, [&] {
                                  for (auto& s : sums) s.value = 0;
                                  for_chunks(n, [&](int64_t begin, int64_t end) {
                                      sums[static_cast<size_t>(omp_get_thread_num())].value +=
                                          read(a.data() + begin, end - begin);
                                  });
                                  double total = 0;
                                  for (const auto& s : sums) total += s.value;
                                  g_sink = total;
                              })});
        }
        for (const auto& [name, write] : write_probes) {
            r.write.push_back({name, measure(plan.repeats, [&] {
                                   for_chunks(n, [&](int64_t begin, int64_t end) {
                                       write(a.data() + begin, end - begin);
                                   });
                               })});
        }
        for (const auto& [name, copy] : copy_probes) {
            r.copy.push_back({name, measure(plan.repeats, [&] {
                                  for_chunks(half, [&](int64_t begin, int64_t end) {
                                      copy(a.data() + begin, b.data() + begin, end - begin);
                                  });
                              })});
        }
        roof.by_threads.push_back(r);

        struct Test {
            const char* name;
            const std::vector<Probe>& probes;
            int64_t floats;
            double bytes_per_float;
        };
        const Test tests[] = {{"read", r.read, r.read_floats, 4.0},
                              {"write", r.write, r.write_floats, 4.0},
                              {"copy", r.copy, r.copy_floats, 8.0}};
        for (const Test& test : tests) {
            const double best = best_seconds_per_float(test.probes, test.floats);
            for (const Probe& p : test.probes) {
                const Timing& t = p.timing;
                const double bytes = test.bytes_per_float * double(test.floats);
                table.print_row({test.name, p.name, format("%d", threads),
                                 format("%.1f", bytes / t.median_s / 1e9),
                                 format("%.1f", bytes / t.min_s / 1e9), format("%.2f", t.median_s * 1e3),
                                 format("%.2f", t.min_s * 1e3),
                                 format("%.3f", t.min_s / double(test.floats) * 1e9),
                                 t.min_s / double(test.floats) == best ? "*" : ""});
                CsvRow row;
                row.op = std::string("memory.") + test.name + "." + p.name;
                row.isa = roof.isa;
                row.threads = threads;
                row.dtype = "float32";
                row.shape = format("%lld", (long long)test.floats);
                row.median_ms = t.median_s * 1e3;
                row.min_ms = t.min_s * 1e3;
                row.gbps = bytes / t.median_s / 1e9;
                csv.write(row);
            }
        }
    }
    return roof;
}

}  // namespace fastloss_bench
