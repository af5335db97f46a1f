// fastloss_bench: the native benchmark harness (see bench/README.md).
//
//   1. memory roofline: read, write and copy bandwidth, one thread and all threads, the best of
//      several probes;
//   2. the compute ceiling: vector exp, log and log1p throughput per ISA;
//   3. every kernel family per dtype, shape, layout, ISA and thread count, against
//      max(memory, math).
#include <omp.h>

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "math_bench.hpp"
#include "fastloss/dispatch.hpp"
#include "fastloss/parallel.hpp"
#include "kernels_bench.hpp"
#include "ops/streaming_stores.hpp"
#include "options.hpp"
#include "report.hpp"
#include "roofline.hpp"
#include "system_info.hpp"

namespace {

std::string join(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
    return out;
}

std::string join(const std::vector<int>& items) {
    std::vector<std::string> strings;
    for (int i : items) strings.push_back(std::to_string(i));
    return join(strings);
}

void print_header(const fastloss_bench::Plan& plan) {
    std::printf("fastloss native benchmark%s\n", plan.quick ? " (--quick)" : "");
    std::printf("cpu:                  %s, %d logical CPUs\n", fastloss_bench::cpu_model().c_str(),
                omp_get_num_procs());
    std::printf("load average:         %s\n", fastloss_bench::load_average().c_str());
    std::printf("huge pages (THP):     %s\n", fastloss_bench::transparent_huge_pages().c_str());
    std::printf("openmp:               %s, max threads %d\n", fastloss::openmp_runtime(),
                plan.max_threads);
    std::printf("compiled variants:    %s\n", join(fastloss::compiled_capabilities()).c_str());
    std::printf("available variants:   %s\n", join(fastloss::available_capabilities()).c_str());
    std::printf("benchmarked variants: %s\n", join(plan.isas).c_str());
    std::printf("thread counts:        %s\n", join(plan.threads).c_str());
    std::printf("streamed outputs:     from %.1f MiB\n", double(fastloss::streaming_store_min_bytes()) / (1 << 20));
}

}  // namespace

int main(int argc, char** argv) {
    using namespace fastloss_bench;
    Plan plan;
    try {
        if (!make_plan(argc, argv, plan)) return 0;
        if (plan.stream_min_bytes >= 0) fastloss::set_streaming_store_min_bytes(plan.stream_min_bytes);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fastloss_bench: %s\n\n%s", e.what(), usage());
        return 2;
    }
    try {
        CsvWriter csv(plan.csv_path);
        print_header(plan);
        // Each section ends with how much CPU other processes took meanwhile: on a small shared
        // machine that, not the library, is the usual reason for a surprising number.
        const int cpus = omp_get_num_procs();
        const CpuUsage start = sample_cpu_usage();
        CpuUsage section_start = start;
        auto end_section = [&] {
            const CpuUsage now = sample_cpu_usage();
            std::printf("(%s)\n", describe_interference(section_start, now, cpus).c_str());
            section_start = now;
        };
        const Roofline roof = measure_roofline(plan, csv);
        end_section();
        const MathRates math_rates = bench_math(plan, csv);
        end_section();
        bench_kernels(plan, roof, math_rates, csv);
        end_section();
        const CpuUsage end = sample_cpu_usage();
        std::printf("\ntotal %.1f s; %s\n", end.wall_s - start.wall_s,
                    describe_interference(start, end, cpus).c_str());
        if (!plan.csv_path.empty()) std::printf("csv written to %s\n", plan.csv_path.c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fastloss_bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
