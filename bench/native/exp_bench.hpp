// Throughput of the library's vector exp (KernelTable::math_f32.exp / math_f64.exp) on a
// cache-resident buffer: the compute ceiling of every softmax-family kernel, which evaluates one
// exp per element.
#pragma once

#include <string>
#include <vector>

#include "options.hpp"
#include "report.hpp"
#include "timing.hpp"

namespace fastloss_bench {

struct ExpResult {
    std::string isa;
    int threads = 1;
    DType dtype = DType::f32;
    int64_t elements = 0;  // per timed call, all threads together
    Timing timing;

    double elements_per_s() const { return double(elements) / timing.median_s; }
    double best_elements_per_s() const { return double(elements) / timing.min_s; }
};

struct ExpRates {
    std::vector<ExpResult> results;
    // Best elements/s (a ceiling, like the memory roofline), or -1 if not measured.
    double best_elements_per_s(const std::string& isa, int threads, DType dtype) const;
};

// Every ISA x thread count of the plan, float32 and float64; prints the table and CSV rows.
ExpRates bench_exp(const Plan& plan, CsvWriter& csv);

}  // namespace fastloss_bench
