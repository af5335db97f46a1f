// The machine's memory roofline: how fast one and all threads can read, write, and read+write
// DRAM, measured with the library's own streaming kernels (KernelTable::bandwidth) so the
// ceiling uses the same vector width, stores and threading as the loss kernels.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "options.hpp"
#include "report.hpp"
#include "timing.hpp"

namespace fastloss_bench {

struct BandwidthResult {
    int threads = 1;
    int64_t read_floats = 0, write_floats = 0, copy_floats = 0;
    Timing read, write, copy;

    // The roofline uses each test's best run, not its median: a ceiling is what the machine can
    // do, and interference (other processes, a noisy neighbour on a shared host) only ever slows
    // a run down.
    double best_read_bytes_per_s() const { return 4.0 * double(read_floats) / read.min_s; }
    // Per float copied, i.e. 4 bytes read plus 4 written. (bandwidth.copy uses ordinary stores,
    // so the bus also reads each destination line before overwriting it, as it does for kernels
    // that store the same way; one with non-temporal stores can get closer to 1.)
    double best_copy_seconds_per_float() const { return copy.min_s / double(copy_floats); }
};

struct Roofline {
    std::string isa;  // whose bandwidth kernels were used
    std::vector<BandwidthResult> by_threads;

    // nullptr if this thread count was not measured.
    const BandwidthResult* find(int threads) const;
    // Seconds to read `bytes` once at the best measured read bandwidth.
    double read_seconds(int threads, int64_t bytes) const;
    // Seconds to read `bytes` and write as many: the best measured copy time for that many bytes
    // at this thread count.
    double copy_seconds(int threads, int64_t bytes) const;
};

// Measures every thread count of the plan with the widest available ISA (the roofline is the
// machine's, not a variant's), prints the table, writes CSV rows.
Roofline measure_roofline(const Plan& plan, CsvWriter& csv);

}  // namespace fastloss_bench
