#include "math_bench.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "buffer.hpp"
#include "data.hpp"
#include "fastloss/dispatch.hpp"
#include "fastloss/kernel_table.hpp"

namespace fastloss_bench {
namespace {

// 4096 inputs + 4096 outputs: 32 KiB (float32) or 64 KiB (float64), resident in L1/L2, so the
// loop measures arithmetic, not memory. Long enough that the per-call overhead is noise.
constexpr int64_t kMathElements = 4096;

// Input and output of one thread in one allocation, y placed 2 KiB (mod 4 KiB) after x.
// Separate allocations land wherever the heap puts them, and where y - x is small mod 4 KiB the
// loads of x can falsely wait on recent stores to y (4K aliasing); a fixed layout keeps runs
// comparable.
template <class T>
struct MathBuffers {
    static constexpr int64_t kGap = 2048 / int64_t(sizeof(T));
    Buffer<T> storage{2 * kMathElements + kGap};
    T* x() { return storage.data(); }
    T* y() { return storage.data() + kMathElements + kGap; }

    // Inputs where the kernels evaluate f: exp sees x - max(x) of a softmax row, in [-20, 0]; log
    // sees probabilities in (0, 1); log1p sees binary_cross_entropy's -p, in (-1, 0); log1p_unit
    // sees exp(-|x|) of a logit, in (0, 1].
    explicit MathBuffers(MathFunction f) {
        for (int64_t i = 0; i < kMathElements; ++i) {
            const double logit = logit_value(i);  // in [-10, 10)
            const double probability = 1.0 / (1.0 + std::exp(-logit));
            switch (f) {
            case MathFunction::exp: x()[i] = T(logit - 10.0); break;
            case MathFunction::log: x()[i] = T(probability); break;
            case MathFunction::log1p: x()[i] = T(-probability); break;
            case MathFunction::log1p_unit: x()[i] = T(std::exp(-std::fabs(logit))); break;
            }
        }
    }
};

// Calls per thread per timed run so that one run lasts about `seconds` (calibrated on one
// thread; more threads run the same count each, so a run's duration stays comparable).
template <class T>
using MathKernel = void (*)(const T*, T*, int64_t);

template <class T>
MathKernel<T> math_kernel(const fastloss::VectorMathKernels<T>& math, MathFunction f) {
    switch (f) {
    case MathFunction::exp: return math.exp;
    case MathFunction::log: return math.log;
    case MathFunction::log1p: return math.log1p;
    case MathFunction::log1p_unit: return math.log1p_unit;
    }
    return math.exp;
}

template <class T>
int64_t calibrate_calls(MathKernel<T> kernel, MathFunction f, double seconds) {
    MathBuffers<T> b(f);
    int64_t calls = 16;
    for (;;) {
        const double start = now_seconds();
        for (int64_t c = 0; c < calls; ++c) kernel(b.x(), b.y(), kMathElements);
        const double elapsed = now_seconds() - start;
        if (elapsed >= seconds / 4 || calls >= (int64_t(1) << 30)) {
            return std::max<int64_t>(16, int64_t(double(calls) * seconds / elapsed));
        }
        calls *= 4;
    }
}

template <class T>
MathResult bench_math_one(const std::string& isa, int threads, DType dtype, MathFunction f, const Plan& plan) {
    fastloss::set_capability(isa);
    const MathKernel<T> kernel = math_kernel(fastloss::active_kernels().math<T>(), f);
    const int64_t calls = calibrate_calls<T>(kernel, f, plan.math_seconds);

    // Each thread owns its buffers (first-touched by itself) for the whole measurement; one
    // parallel region spans the warm-up and every repeat, so its start-up is never timed.
    std::vector<double> samples;
    double start = 0;
#pragma omp parallel num_threads(threads)
    {
        MathBuffers<T> b(f);
        for (int r = -1; r < plan.repeats; ++r) {  // r = -1: warm-up
#pragma omp barrier
#pragma omp master
            start = now_seconds();
            for (int64_t c = 0; c < calls; ++c) kernel(b.x(), b.y(), kMathElements);
#pragma omp barrier
#pragma omp master
            if (r >= 0) samples.push_back(now_seconds() - start);
        }
    }

    MathResult result;
    result.isa = isa;
    result.threads = threads;
    result.dtype = dtype;
    result.function = f;
    result.elements = calls * kMathElements * threads;
    result.timing = summarize(samples);
    return result;
}

}  // namespace

const char* math_function_name(MathFunction f) {
    switch (f) {
    case MathFunction::exp: return "exp";
    case MathFunction::log: return "log";
    case MathFunction::log1p: return "log1p";
    case MathFunction::log1p_unit: return "log1p_unit";
    }
    return "?";
}

double MathRates::best_elements_per_s(const std::string& isa, int threads, DType dtype, MathFunction f) const {
    for (const auto& r : results) {
        if (r.isa == isa && r.threads == threads && r.dtype == dtype && r.function == f) {
            return r.best_elements_per_s();
        }
    }
    return -1;
}

MathRates bench_math(const Plan& plan, CsvWriter& csv) {
    print_section(format("Vector math throughput: %lld-element L1/L2-resident buffer per thread, "
                         "%d repeats",
                         (long long)kMathElements, plan.repeats));
    std::printf("\n");
    const Table table({{"function", 10, true}, {"isa", 6, true}, {"dtype", 7, true}, {"threads", 7},
                       {"Gelem/s median", 14}, {"Gelem/s best", 12}, {"per thread", 10},
                       {"ns/elem/thread", 14}});
    table.print_header();

    MathRates rates;
    for (MathFunction f : {MathFunction::exp, MathFunction::log, MathFunction::log1p, MathFunction::log1p_unit}) {
        for (const auto& isa : plan.isas) {
            for (DType dtype : {DType::f32, DType::f64}) {
                for (int threads : plan.threads) {
                    const MathResult r = dtype == DType::f32
                                             ? bench_math_one<float>(isa, threads, dtype, f, plan)
                                             : bench_math_one<double>(isa, threads, dtype, f, plan);
                    rates.results.push_back(r);
                    const double median = r.elements_per_s();
                    const double best = r.best_elements_per_s();
                    table.print_row({math_function_name(f), isa, dtype_name(dtype), format("%d", threads),
                                     format("%.2f", median / 1e9), format("%.2f", best / 1e9),
                                     format("%.2f", median / threads / 1e9),
                                     format("%.3f", threads / median * 1e9)});
                    CsvRow row;
                    row.op = math_function_name(f);
                    row.isa = isa;
                    row.threads = threads;
                    row.dtype = dtype_name(dtype);
                    row.shape = format("%lld", (long long)kMathElements);
                    row.median_ms = r.timing.median_s * 1e3;
                    row.min_ms = r.timing.min_s * 1e3;
                    row.gelem_per_s = median / 1e9;
                    csv.write(row);
                }
            }
        }
    }
    return rates;
}

}  // namespace fastloss_bench
