#include "roofline.hpp"

#include <omp.h>

#include <algorithm>

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

volatile double g_sink;  // keeps the read_sum results observable

// Streams are split by fastloss::parallel_for, exactly as the kernels split their rows: fixed
// chunks of 32k floats, contiguous blocks of chunks per thread.
template <class Body>
void for_chunks(int64_t n, Body&& body) {
    fastloss::parallel_for(n, 1, body);
}

}  // namespace

const BandwidthResult* Roofline::find(int threads) const {
    for (const auto& r : by_threads) {
        if (r.threads == threads) return &r;
    }
    return nullptr;
}

double Roofline::read_seconds(int threads, int64_t bytes) const {
    const BandwidthResult* r = find(threads);
    return r ? double(bytes) / r->best_read_bytes_per_s() : -1;
}

double Roofline::copy_seconds(int threads, int64_t bytes) const {
    const BandwidthResult* r = find(threads);
    return r ? double(bytes) / 4.0 * r->best_copy_seconds_per_float() : -1;
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

    print_section(format("Memory roofline: %s bandwidth kernels, %lld MiB arrays (copy %lld MiB -> "
                         "%lld MiB), %d repeats",
                         roof.isa.c_str(), (long long)(plan.bandwidth_bytes >> 20),
                         (long long)(half * 4 >> 20), (long long)(half * 4 >> 20), plan.repeats));
    std::printf("copy GB/s counts 8 bytes per float (4 read + 4 written); ns/float is per float "
                "streamed.\nThe kernel roofline below uses the best run of each test (a ceiling: "
                "interference only slows runs).\n\n");
    const Table table({{"test", 6, true}, {"threads", 7}, {"GB/s median", 11}, {"GB/s best", 9},
                       {"ms median", 9}, {"ms best", 8},
                       {"ns/float best", 13}});
    table.print_header();

    for (int threads : plan.threads) {
        fastloss::set_num_threads(threads);
        BandwidthResult r;
        r.threads = threads;
        r.read_floats = n;
        r.write_floats = n;
        r.copy_floats = half;
        r.read = measure(plan.repeats, [&] {
            for (auto& s : sums) s.value = 0;
            for_chunks(n, [&](int64_t begin, int64_t end) {
                sums[static_cast<size_t>(omp_get_thread_num())].value +=
                    bw.read_sum(a.data() + begin, end - begin);
            });
            double total = 0;
            for (const auto& s : sums) total += s.value;
            g_sink = total;
        });
        r.write = measure(plan.repeats, [&] {
            for_chunks(n, [&](int64_t begin, int64_t end) { bw.fill(a.data() + begin, end - begin, 1.0f); });
        });
        r.copy = measure(plan.repeats, [&] {
            for_chunks(half, [&](int64_t begin, int64_t end) {
                bw.copy(a.data() + begin, b.data() + begin, end - begin);
            });
        });
        roof.by_threads.push_back(r);

        struct Line {
            const char* name;
            const Timing& t;
            int64_t floats;
            double bytes_per_float;
        };
        const Line lines[] = {{"read", r.read, r.read_floats, 4.0},
                              {"write", r.write, r.write_floats, 4.0},
                              {"copy", r.copy, r.copy_floats, 8.0}};
        for (const Line& l : lines) {
            const double bytes = l.bytes_per_float * double(l.floats);
            table.print_row({l.name, format("%d", threads), format("%.1f", bytes / l.t.median_s / 1e9),
                             format("%.1f", bytes / l.t.min_s / 1e9), format("%.2f", l.t.median_s * 1e3),
                             format("%.2f", l.t.min_s * 1e3),
                             format("%.3f", l.t.min_s / double(l.floats) * 1e9)});
            CsvRow row;
            row.op = std::string("memory.") + l.name;
            row.isa = roof.isa;
            row.threads = threads;
            row.dtype = "float32";
            row.shape = format("%lld", (long long)l.floats);
            row.median_ms = l.t.median_s * 1e3;
            row.min_ms = l.t.min_s * 1e3;
            row.gbps = bytes / l.t.median_s / 1e9;
            csv.write(row);
        }
    }
    return roof;
}

}  // namespace fastloss_bench
