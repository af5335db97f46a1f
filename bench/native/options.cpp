#include "options.hpp"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "fastloss/dispatch.hpp"
#include "fastloss/parallel.hpp"

namespace fastloss_bench {
namespace {

std::vector<std::string> split_commas(const std::string& s) {
    std::vector<std::string> parts;
    size_t start = 0;
    while (start <= s.size()) {
        const size_t comma = s.find(',', start);
        const size_t end = comma == std::string::npos ? s.size() : comma;
        if (end > start) parts.push_back(s.substr(start, end - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return parts;
}

int parse_positive_int(const std::string& flag, const std::string& text) {
    size_t used = 0;
    int value = 0;
    try {
        value = std::stoi(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used != text.size() || value < 1) {
        throw std::invalid_argument(flag + " expects positive integers, got '" + text + "'");
    }
    return value;
}

}  // namespace

const char* usage() {
    return "usage: fastloss_bench [--quick] [--isa NAME[,NAME...]]... [--threads N[,N...]]...\n"
           "                      [--repeats N] [--csv FILE]\n"
           "\n"
           "  --quick        256 MiB bandwidth arrays, 3 repeats, float32 4096x1000 and 1024x32000 only\n"
           "  --isa NAME     kernel variants to benchmark (default: every available one)\n"
           "  --threads N    thread counts (default: 1 and fastloss::get_num_threads())\n"
           "  --repeats N    timed calls per measurement (default: 9, or 3 with --quick)\n"
           "  --csv FILE     also write one row per measurement to FILE\n";
}

bool make_plan(int argc, char** argv, Plan& plan) {
    std::vector<std::string> isas;
    std::vector<int> threads;
    int repeats = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "--help" || arg == "-h") {
            std::fputs(usage(), stdout);
            return false;
        } else if (arg == "--quick") {
            plan.quick = true;
        } else if (arg == "--isa") {
            for (const auto& name : split_commas(value())) isas.push_back(name);
        } else if (arg == "--threads") {
            for (const auto& n : split_commas(value())) threads.push_back(parse_positive_int(arg, n));
        } else if (arg == "--repeats") {
            repeats = parse_positive_int(arg, value());
        } else if (arg == "--csv") {
            plan.csv_path = value();
        } else {
            throw std::invalid_argument("unknown argument '" + arg + "'");
        }
    }

    // ISAs: validated by the library itself (set_capability throws for unknown or unsupported
    // names), kept in the library's slowest-first order, duplicates dropped.
    const std::vector<std::string> available = fastloss::available_capabilities();
    if (isas.empty()) isas = available;
    for (const auto& name : isas) fastloss::set_capability(name);
    for (const auto& name : available) {
        if (std::find(isas.begin(), isas.end(), name) != isas.end()) plan.isas.push_back(name);
    }

    // Read before any set_num_threads(): honours OMP_NUM_THREADS.
    plan.max_threads = fastloss::get_num_threads();
    if (threads.empty()) threads = {1, plan.max_threads};
    std::sort(threads.begin(), threads.end());
    threads.erase(std::unique(threads.begin(), threads.end()), threads.end());
    plan.threads = threads;

    // Bandwidth arrays far larger than any L3 (32 MiB on the development machine), so every
    // byte comes from DRAM.
    plan.repeats = repeats > 0 ? repeats : (plan.quick ? 3 : 9);
    plan.bandwidth_bytes = plan.quick ? (int64_t(256) << 20) : (int64_t(1) << 30);
    plan.exp_seconds = plan.quick ? 0.01 : 0.05;

    // 4096 x 1000: ImageNet-sized classifier batch (16 MiB in, 16 MiB out: about the L3).
    // 4096 x 32000: LLM-vocabulary batch (512 MiB float32), the shape the goals are stated for.
    // --quick cuts the latter to 1024 rows (128 MiB, still 4x the L3), mostly for the scalar
    // variant, whose ~0.7 s per call would otherwise take most of the time budget.
    if (plan.quick) {
        plan.shapes = {{DType::f32, 4096, 1000}, {DType::f32, 1024, 32000}};
    } else {
        plan.shapes = {{DType::f32, 4096, 1000}, {DType::f32, 4096, 32000}, {DType::f64, 4096, 32000}};
    }
    return true;
}

}  // namespace fastloss_bench
