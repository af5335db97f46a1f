// The machine's memory roofline: how fast one and all threads can read, write, and read+write
// DRAM. Each test runs several probes and keeps the fastest, so that no kernel is compared with a
// ceiling it can beat:
//  * the library's own streaming kernels (KernelTable::bandwidth), with ordinary and with
//    non-temporal stores, at the kernels' vector width;
//  * independent plain loops: an OpenMP `simd` reduction for read, memset and memcpy for write and
//    copy.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "options.hpp"
#include "report.hpp"
#include "timing.hpp"

namespace fastloss_bench {

// One probe's timing of one test.
struct Probe {
    std::string name;
    Timing timing;
};

struct BandwidthResult {
    int threads = 1;
    int64_t read_floats = 0, write_floats = 0, copy_floats = 0;
    std::vector<Probe> read, write, copy;

    // The roofline uses the best run of the best probe, not a median: a ceiling is what the
    // machine can do, and interference (other processes, a noisy neighbour on a shared host) only
    // ever slows a run down.
    double best_read_seconds_per_float() const;
    double best_write_seconds_per_float() const;
    // Per float copied, i.e. 4 bytes read plus 4 written.
    double best_copy_seconds_per_float() const;
};

struct Roofline {
    std::string isa;  // whose bandwidth kernels were used
    std::vector<BandwidthResult> by_threads;

    // nullptr if this thread count was not measured.
    const BandwidthResult* find(int threads) const;
    // Seconds to read `reads` arrays of `bytes` each and write `writes` of them: min(reads, writes)
    // copies, and the rest read-only or write-only streams, each at its best measured speed for
    // this thread count. -1 if the thread count was not measured.
    double seconds(int threads, int64_t bytes, int reads, int writes) const;
};

// Measures every thread count of the plan with the widest available ISA (the roofline is the
// machine's, not a variant's), prints the table, writes CSV rows.
Roofline measure_roofline(const Plan& plan, CsvWriter& csv);

}  // namespace fastloss_bench
