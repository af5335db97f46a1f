#include "options.hpp"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "fastloss/dispatch.hpp"
#include "fastloss/parallel.hpp"
#include "kernel_cases.hpp"

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

DType parse_dtype(const std::string& text) {
    for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
        if (text == dtype_name(t)) return t;
    }
    throw std::invalid_argument("--dtypes expects float32, float64, float16 or bfloat16, got '" + text + "'");
}

Layout parse_layout(const std::string& text) {
    for (Layout l : {Layout::rows, Layout::columns}) {
        if (text == layout_name(l)) return l;
    }
    throw std::invalid_argument("--layouts expects rows or columns, got '" + text + "'");
}

// "NxC": positions x classes.
KernelShape parse_shape(const std::string& text) {
    const size_t x = text.find('x');
    if (x == std::string::npos) {
        throw std::invalid_argument("--shapes expects NxC (positions x classes), got '" + text + "'");
    }
    return {parse_positive_int("--shapes", text.substr(0, x)),
            parse_positive_int("--shapes", text.substr(x + 1))};
}

template <class T>
void add_unique(std::vector<T>& items, const T& item) {
    if (std::find(items.begin(), items.end(), item) == items.end()) items.push_back(item);
}

}  // namespace

const char* dtype_name(DType t) {
    switch (t) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
    }
    return "?";
}

const char* layout_name(Layout l) { return l == Layout::rows ? "rows" : "columns"; }

const char* usage() {
    return "usage: fastloss_bench [--quick] [--isa NAME[,NAME...]]... [--threads N[,N...]]...\n"
           "                      [--ops OP[,OP...]]... [--dtypes T[,T...]]... [--layouts L[,L...]]...\n"
           "                      [--shapes NxC[,NxC...]]... [--repeats N] [--csv FILE]\n"
           "\n"
           "  --quick        256 MiB bandwidth arrays, 3 repeats, float32 and bfloat16,\n"
           "                 4096x1000 and 1024x32000 only\n"
           "  --isa NAME     kernel variants to benchmark (default: every available SIMD one;\n"
           "                 scalar only when asked for, or when it is the only one)\n"
           "  --threads N    thread counts (default: 1 and fastloss::get_num_threads())\n"
           "  --ops OP       ops to run (default: all): log_softmax, softmax, logsumexp, entropy,\n"
           "                 cross_entropy, cross_entropy+grad, nll_loss+grad, kl_div,\n"
           "                 binary_cross_entropy, bce_with_logits, bce_with_logits+grad,\n"
           "                 distillation, distillation+grad\n"
           "  --dtypes T     float32, float64, float16, bfloat16 (default: all)\n"
           "  --layouts L    rows, columns (default: both)\n"
           "  --shapes NxC   positions x classes (default: 4096x1000, 4096x32000, 1024x128256)\n"
           "  --stream-min-mib N  stream outputs of at least N MiB (default: the library's, a\n"
           "                 quarter of the last-level cache)\n"
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
        } else if (arg == "--ops") {
            for (const auto& name : split_commas(value())) {
                if (!find_op(name)) throw std::invalid_argument("--ops: unknown op '" + name + "'");
                add_unique(plan.ops, name);
            }
        } else if (arg == "--dtypes") {
            for (const auto& name : split_commas(value())) add_unique(plan.dtypes, parse_dtype(name));
        } else if (arg == "--layouts") {
            for (const auto& name : split_commas(value())) add_unique(plan.layouts, parse_layout(name));
        } else if (arg == "--shapes") {
            for (const auto& text : split_commas(value())) {
                const KernelShape s = parse_shape(text);
                plan.shapes.push_back(s);
            }
        } else if (arg == "--stream-min-mib") {
            const std::string text = value();
            plan.stream_min_bytes = text == "0" ? 0 : int64_t(parse_positive_int(arg, text)) << 20;
        } else if (arg == "--csv") {
            plan.csv_path = value();
        } else {
            throw std::invalid_argument("unknown argument '" + arg + "'");
        }
    }

    // ISAs: validated by the library itself (set_capability throws for unknown or unsupported
    // names), kept in the library's slowest-first order, duplicates dropped.
    const std::vector<std::string> available = fastloss::available_capabilities();
    if (isas.empty()) {
        // The scalar variant takes ten times as long as the rest together and is nobody's hot path.
        for (const auto& name : available) {
            if (name != "scalar" || available.size() == 1) isas.push_back(name);
        }
    }
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
    plan.math_seconds = plan.quick ? 0.01 : 0.05;

    // 4096 x 1000: ImageNet-sized classifier batch (16 MiB float32: a cache-sized problem).
    // 4096 x 32000: LLM-vocabulary batch (512 MiB float32), the shape the goals are stated for.
    // 1024 x 128256: a vocabulary-sized row (Llama 3), 501 KiB per float32 row: larger than L2.
    // --quick cuts the second to 1024 rows (128 MiB, still larger than most L3s).
    if (plan.shapes.empty()) {
        if (plan.quick) {
            plan.shapes = {{4096, 1000}, {1024, 32000}};
        } else {
            plan.shapes = {{4096, 1000}, {4096, 32000}, {1024, 128256}};
        }
    }
    if (plan.dtypes.empty()) {
        plan.dtypes = plan.quick ? std::vector<DType>{DType::f32, DType::bf16}
                                 : std::vector<DType>{DType::f32, DType::f64, DType::f16, DType::bf16};
    }
    if (plan.layouts.empty()) plan.layouts = {Layout::rows, Layout::columns};
    return true;
}

}  // namespace fastloss_bench
