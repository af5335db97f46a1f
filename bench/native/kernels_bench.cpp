#include "kernels_bench.hpp"

#include <algorithm>
#include <utility>

#include "fastloss/dispatch.hpp"
#include "fastloss/half.hpp"
#include "fastloss/parallel.hpp"
#include "kernel_cases.hpp"

namespace fastloss_bench {
namespace {

volatile double g_sink;  // keeps the losses' results observable

const Table& kernel_table() {
    static const Table table({{"op", 20, true}, {"isa", 6, true}, {"thr", 3}, {"dtype", 8, true},
                              {"layout", 7, true}, {"shape", 11, true}, {"ms median", 9},
                              {"ms best", 8}, {"GB/s", 6}, {"roof ms", 7}, {"math ms", 7},
                              {"x roof", 6}, {"x ceil", 6}});
    return table;
}

// The time of an op's transcendentals at their best measured throughputs; 0 if it needs none or
// one was not measured.
double math_seconds(const MathCounts& counts, const MathRates& rates, const std::string& isa, int threads,
                    DType dtype, int64_t elements) {
    double seconds = 0;
    const std::pair<int, MathFunction> needs[] = {{counts.exp, MathFunction::exp},
                                                  {counts.log, MathFunction::log},
                                                  {counts.log1p, MathFunction::log1p},
                                                  {counts.log1p_unit, MathFunction::log1p_unit}};
    for (const auto& [count, function] : needs) {
        if (count == 0) continue;
        const double rate = rates.best_elements_per_s(isa, threads, dtype, function);
        if (rate <= 0) return 0;
        seconds += double(elements) * count / rate;
    }
    return seconds;
}

std::string shape_text(const KernelShape& s, Layout layout) {
    return layout == Layout::rows ? format("%lldx%lld", (long long)s.rows, (long long)s.classes)
                                  : format("%lldx%lld", (long long)s.classes, (long long)s.rows);
}

template <class S>
void bench_operands(const Plan& plan, const std::vector<const OpInfo*>& ops, const KernelShape& s,
                    DType dtype, Layout layout, const Roofline& roof, const MathRates& math_rates,
                    CsvWriter& csv) {
    // Elementwise losses read the same flat stream in every layout: measured with rows only.
    std::vector<const OpInfo*> here;
    for (const OpInfo* op : ops) {
        if (op->has_class_axis || layout == Layout::rows) here.push_back(op);
    }
    if (here.empty()) return;

    // First touch in parallel with the most threads used, never inside a timed call.
    fastloss::set_num_threads(plan.threads.back());
    Operands<S> operands(s, layout);
    operands.fill();

    const int64_t elements = s.rows * s.classes;
    const int64_t array_bytes = elements * int64_t(sizeof(S));
    const std::string shape = shape_text(s, layout);
    for (const auto& isa : plan.isas) {
        fastloss::set_capability(isa);
        for (int threads : plan.threads) {
            fastloss::set_num_threads(threads);
            for (const OpInfo* op : here) {
                const Timing t = measure(plan.repeats, [&] { g_sink = run_op(op->op, operands); });
                const double bytes = double(array_bytes) * (op->reads + op->writes);
                const double roof_s = roof.seconds(threads, array_bytes, op->reads, op->writes);
                const double math_s = math_seconds(op->math, math_rates, isa, threads, compute_dtype(dtype), elements);
                const double ceiling_s = std::max(roof_s, math_s);
                const bool have_roof = roof_s > 0;
                kernel_table().print_row(
                    {op->name, isa, format("%d", threads), dtype_name(dtype), layout_name(layout), shape,
                     format("%.2f", t.median_s * 1e3), format("%.2f", t.min_s * 1e3),
                     format("%.1f", bytes / t.median_s / 1e9),
                     have_roof ? format("%.2f", roof_s * 1e3) : "-",
                     math_s > 0 ? format("%.2f", math_s * 1e3) : "-",
                     have_roof ? format("%.2fx", t.median_s / roof_s) : "-",
                     ceiling_s > 0 ? format("%.2fx", t.median_s / ceiling_s) : "-"});
                CsvRow row;
                row.op = op->name;
                row.isa = isa;
                row.threads = threads;
                row.dtype = dtype_name(dtype);
                row.layout = layout_name(layout);
                row.shape = shape;
                row.median_ms = t.median_s * 1e3;
                row.min_ms = t.min_s * 1e3;
                row.gbps = bytes / t.median_s / 1e9;
                if (have_roof) {
                    row.roofline_ms = roof_s * 1e3;
                    row.roofline_fraction = roof_s / t.median_s;
                    row.x_of_roofline = t.median_s / roof_s;
                }
                if (math_s > 0) row.math_ms = math_s * 1e3;
                if (ceiling_s > 0) row.x_of_ceiling = t.median_s / ceiling_s;
                csv.write(row);
            }
        }
    }
}

}  // namespace

void bench_kernels(const Plan& plan, const Roofline& roof, const MathRates& math_rates, CsvWriter& csv) {
    print_section(format("Kernels, %d repeats", plan.repeats));
    std::printf(
        "layout: rows = (N, C), class axis 1; columns = (C, N), class axis 0 (elementwise losses: "
        "rows only)\n"
        "GB/s: bytes that must cross memory (the arrays the op reads and writes, once each)\n"
        "roof ms: that traffic at the best probe above for this thread count (copies for read+write "
        "pairs)\n"
        "math ms: the exps and logs the math needs, each at this ISA's best throughput for that\n"
        "        function (float16 and bfloat16 compute in float32); x roof: ms median / roof ms;\n"
        "        x ceil: ms median / max(roof ms, math ms)\n\n");
    std::vector<const OpInfo*> ops;
    for (const OpInfo& info : all_ops()) {
        if (plan.ops.empty() || std::find(plan.ops.begin(), plan.ops.end(), info.name) != plan.ops.end()) {
            ops.push_back(&info);
        }
    }
    kernel_table().print_header();
    for (const KernelShape& s : plan.shapes) {
        for (DType dtype : plan.dtypes) {
            for (Layout layout : plan.layouts) {
                switch (dtype) {
                case DType::f32: bench_operands<float>(plan, ops, s, dtype, layout, roof, math_rates, csv); break;
                case DType::f64: bench_operands<double>(plan, ops, s, dtype, layout, roof, math_rates, csv); break;
                case DType::f16:
                    bench_operands<fastloss::Half>(plan, ops, s, dtype, layout, roof, math_rates, csv);
                    break;
                case DType::bf16:
                    bench_operands<fastloss::BFloat16>(plan, ops, s, dtype, layout, roof, math_rates, csv);
                    break;
                }
            }
        }
    }
}

}  // namespace fastloss_bench
