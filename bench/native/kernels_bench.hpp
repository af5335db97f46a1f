// Every op of kernel_cases.hpp through the library's drivers (layout choice, threading,
// dispatch), per shape, dtype, layout, ISA and thread count, compared with its ceiling:
// max(its traffic at the memory roofline, its exps and logs at their measured throughputs).
#pragma once

#include "math_bench.hpp"
#include "options.hpp"
#include "report.hpp"
#include "roofline.hpp"

namespace fastloss_bench {

void bench_kernels(const Plan& plan, const Roofline& roof, const MathRates& math_rates, CsvWriter& csv);

}  // namespace fastloss_bench
