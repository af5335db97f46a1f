#include "kernels_bench.hpp"

#include "buffer.hpp"
#include "data.hpp"
#include "fastloss/dispatch.hpp"
#include "fastloss/parallel.hpp"
#include "ops/softmax_ops.hpp"

namespace fastloss_bench {
namespace {

enum class Op { log_softmax, softmax, logsumexp };

const char* op_name(Op op) {
    switch (op) {
    case Op::log_softmax: return "log_softmax";
    case Op::softmax: return "softmax";
    case Op::logsumexp: return "logsumexp";
    }
    return "?";
}

// Bytes that must cross memory per element: softmax and log_softmax read x and write y;
// logsumexp reads x (its output, one value per row, is negligible).
bool writes_full_output(Op op) { return op != Op::logsumexp; }

const Table& kernel_table() {
    static const Table table({{"op", 11, true}, {"isa", 6, true}, {"thr", 3}, {"dtype", 7, true},
                              {"shape", 10, true}, {"ms median", 9}, {"ms best", 8}, {"GB/s", 6},
                              {"roof ms", 7}, {"exp ms", 7}, {"of roof", 7}, {"x roof", 6}});
    return table;
}

template <class T>
void run_op(Op op, const Buffer<T>& x, Buffer<T>& y, Buffer<T>& lse, int64_t rows, int64_t classes) {
    const fastloss::Extents shape = {rows, classes};
    const fastloss::Extents strides = {classes, 1};
    const int axis = 1;
    switch (op) {
    case Op::log_softmax:
        fastloss::softmax_forward(fastloss::SoftmaxKind::log_softmax, x.data(), strides, y.data(),
                                  strides, shape, axis);
        break;
    case Op::softmax:
        fastloss::softmax_forward(fastloss::SoftmaxKind::softmax, x.data(), strides, y.data(),
                                  strides, shape, axis);
        break;
    case Op::logsumexp:
        // out has shape (rows, 1): its stride along the reduced axis is ignored.
        fastloss::logsumexp_forward(x.data(), strides, lse.data(), {1, 0}, shape, axis);
        break;
    }
}

template <class T>
void bench_shape(const Plan& plan, const KernelShape& s, const Roofline& roof,
                 const ExpRates& exp_rates, CsvWriter& csv) {
    const int64_t elements = s.rows * s.classes;
    Buffer<T> x(elements), y(elements), lse(s.rows);

    // First touch in parallel with the most threads used, never inside a timed call. The same
    // chunking as the kernels: each thread faults in (roughly) the rows it will process.
    fastloss::set_num_threads(plan.threads.back());
    fastloss::parallel_for(s.rows, s.classes, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin * s.classes; i < end * s.classes; ++i) {
            x.data()[i] = T(logit_value(i));
            y.data()[i] = T(0);
        }
        for (int64_t r = begin; r < end; ++r) lse.data()[r] = T(0);
    });

    const int64_t input_bytes = elements * int64_t(sizeof(T));
    const std::string shape = format("%lldx%lld", (long long)s.rows, (long long)s.classes);
    for (const auto& isa : plan.isas) {
        fastloss::set_capability(isa);
        for (int threads : plan.threads) {
            fastloss::set_num_threads(threads);
            for (Op op : {Op::log_softmax, Op::softmax, Op::logsumexp}) {
                const Timing t = measure(plan.repeats, [&] { run_op<T>(op, x, y, lse, s.rows, s.classes); });
                const bool rw = writes_full_output(op);
                const double bytes = double(input_bytes) * (rw ? 2 : 1);
                const double roof_s = rw ? roof.copy_seconds(threads, input_bytes)
                                         : roof.read_seconds(threads, input_bytes);
                const double exp_rate = exp_rates.best_elements_per_s(isa, threads, s.dtype);
                const double exp_s = exp_rate > 0 ? double(elements) / exp_rate : -1;
                const bool have_roof = roof_s > 0;
                kernel_table().print_row(
                    {op_name(op), isa, format("%d", threads), dtype_name(s.dtype), shape,
                     format("%.2f", t.median_s * 1e3), format("%.2f", t.min_s * 1e3),
                     format("%.1f", bytes / t.median_s / 1e9),
                     have_roof ? format("%.2f", roof_s * 1e3) : "-",
                     exp_s > 0 ? format("%.2f", exp_s * 1e3) : "-",
                     have_roof ? format("%.2f", roof_s / t.median_s) : "-",
                     have_roof ? format("%.2fx", t.median_s / roof_s) : "-"});
                CsvRow row;
                row.op = op_name(op);
                row.isa = isa;
                row.threads = threads;
                row.dtype = dtype_name(s.dtype);
                row.shape = shape;
                row.median_ms = t.median_s * 1e3;
                row.min_ms = t.min_s * 1e3;
                row.gbps = bytes / t.median_s / 1e9;
                if (have_roof) {
                    row.roofline_ms = roof_s * 1e3;
                    row.roofline_fraction = roof_s / t.median_s;
                    row.x_of_roofline = t.median_s / roof_s;
                }
                csv.write(row);
            }
        }
    }
}

}  // namespace

void bench_kernels(const Plan& plan, const Roofline& roof, const ExpRates& exp_rates, CsvWriter& csv) {
    print_section(format("Kernels: contiguous rows, axis = last, %d repeats", plan.repeats));
    std::printf(
        "GB/s: bytes that must cross memory (softmax, log_softmax: read x + write y; logsumexp: "
        "read x)\n"
        "roof ms: that traffic at the roofline above (best copy time for read+write, best read "
        "bandwidth for read-only)\n"
        "exp ms: one exp per element at this ISA's best exp throughput (the compute ceiling)\n"
        "of roof: roof ms / ms median (1 = at the roofline); x roof: ms median / roof ms\n\n");
    kernel_table().print_header();
    for (const KernelShape& s : plan.shapes) {
        if (s.dtype == DType::f32) {
            bench_shape<float>(plan, s, roof, exp_rates, csv);
        } else {
            bench_shape<double>(plan, s, roof, exp_rates, csv);
        }
    }
}

}  // namespace fastloss_bench
