// Throughput of the library's vector math (KernelTable::math_f32 / math_f64: exp, log, log1p and
// log1p on [0, 1]) on a cache-resident buffer: the compute ceiling of every kernel, counted per
// element by kernel_cases.hpp's MathCounts (the softmax family evaluates one exp per element,
// binary_cross_entropy a log and a log1p).
#pragma once

#include <string>
#include <vector>

#include "options.hpp"
#include "report.hpp"
#include "timing.hpp"

namespace fastloss_bench {

enum class MathFunction { exp, log, log1p, log1p_unit };
const char* math_function_name(MathFunction f);

struct MathResult {
    std::string isa;
    int threads = 1;
    DType dtype = DType::f32;
    MathFunction function = MathFunction::exp;
    int64_t elements = 0;  // per timed call, all threads together
    Timing timing;

    double elements_per_s() const { return double(elements) / timing.median_s; }
    double best_elements_per_s() const { return double(elements) / timing.min_s; }
};

struct MathRates {
    std::vector<MathResult> results;
    // Best elements/s (a ceiling, like the memory roofline), or -1 if not measured.
    double best_elements_per_s(const std::string& isa, int threads, DType dtype, MathFunction f) const;
};

// Every function x ISA x thread count of the plan, float32 and float64; prints the table and CSV
// rows.
MathRates bench_math(const Plan& plan, CsvWriter& csv);

}  // namespace fastloss_bench
