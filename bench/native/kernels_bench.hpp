// Every op of kernel_cases.hpp through the library's drivers (layout choice, threading,
// dispatch), per shape, dtype, layout, ISA and thread count, compared with its ceiling:
// max(its traffic at the memory roofline, its exps at the exp throughput).
#pragma once

#include "exp_bench.hpp"
#include "options.hpp"
#include "report.hpp"
#include "roofline.hpp"

namespace fastloss_bench {

void bench_kernels(const Plan& plan, const Roofline& roof, const ExpRates& exp_rates, CsvWriter& csv);

}  // namespace fastloss_bench
