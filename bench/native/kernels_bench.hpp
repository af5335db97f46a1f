// Throughput of log_softmax, softmax and logsumexp through the library's drivers
// (ops/softmax_ops.hpp: layout choice, threading, dispatch), on contiguous (rows, classes)
// arrays reduced over the last axis, compared against the memory roofline.
#pragma once

#include "exp_bench.hpp"
#include "options.hpp"
#include "report.hpp"
#include "roofline.hpp"

namespace fastloss_bench {

void bench_kernels(const Plan& plan, const Roofline& roof, const ExpRates& exp_rates, CsvWriter& csv);

}  // namespace fastloss_bench
