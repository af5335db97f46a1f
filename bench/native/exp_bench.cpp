#include "exp_bench.hpp"

#include <omp.h>

#include <algorithm>

#include "buffer.hpp"
#include "data.hpp"
#include "fastloss/dispatch.hpp"
#include "fastloss/kernel_table.hpp"

namespace fastloss_bench {
namespace {

// 4096 inputs + 4096 outputs: 32 KiB (float32) or 64 KiB (float64), resident in L1/L2, so the
// loop measures arithmetic, not memory. Long enough that the per-call overhead is noise.
constexpr int64_t kExpElements = 4096;

// Input and output of one thread in one allocation, y placed 2 KiB (mod 4 KiB) after x.
// Separate allocations land wherever the heap puts them, and where y - x is small mod 4 KiB the
// loads of x can falsely wait on recent stores to y (4K aliasing); a fixed layout keeps runs
// comparable.
template <class T>
struct ExpBuffers {
    static constexpr int64_t kGap = 2048 / int64_t(sizeof(T));
    Buffer<T> storage{2 * kExpElements + kGap};
    T* x() { return storage.data(); }
    T* y() { return storage.data() + kExpElements + kGap; }

    ExpBuffers() {
        // x - max(x) of a softmax row: values in [-20, 0].
        for (int64_t i = 0; i < kExpElements; ++i) x()[i] = T(logit_value(i) - 10.0);
    }
};

// Calls per thread per timed run so that one run lasts about `seconds` (calibrated on one
// thread; more threads run the same count each, so a run's duration stays comparable).
template <class T>
int64_t calibrate_calls(void (*exp)(const T*, T*, int64_t), double seconds) {
    ExpBuffers<T> b;
    int64_t calls = 16;
    for (;;) {
        const double start = now_seconds();
        for (int64_t c = 0; c < calls; ++c) exp(b.x(), b.y(), kExpElements);
        const double elapsed = now_seconds() - start;
        if (elapsed >= seconds / 4 || calls >= (int64_t(1) << 30)) {
            return std::max<int64_t>(16, int64_t(double(calls) * seconds / elapsed));
        }
        calls *= 4;
    }
}

template <class T>
ExpResult bench_exp_one(const std::string& isa, int threads, DType dtype, const Plan& plan) {
    fastloss::set_capability(isa);
    const auto exp = fastloss::active_kernels().math<T>().exp;
    const int64_t calls = calibrate_calls<T>(exp, plan.exp_seconds);

    // Each thread owns its buffers (first-touched by itself) for the whole measurement; one
    // parallel region spans the warm-up and every repeat, so its start-up is never timed.
    std::vector<double> samples;
    double start = 0;
#pragma omp parallel num_threads(threads)
    {
        ExpBuffers<T> b;
        for (int r = -1; r < plan.repeats; ++r) {  // r = -1: warm-up
#pragma omp barrier
#pragma omp master
            start = now_seconds();
            for (int64_t c = 0; c < calls; ++c) exp(b.x(), b.y(), kExpElements);
#pragma omp barrier
#pragma omp master
            if (r >= 0) samples.push_back(now_seconds() - start);
        }
    }

    ExpResult result;
    result.isa = isa;
    result.threads = threads;
    result.dtype = dtype;
    result.elements = calls * kExpElements * threads;
    result.timing = summarize(samples);
    return result;
}

}  // namespace

double ExpRates::best_elements_per_s(const std::string& isa, int threads, DType dtype) const {
    for (const auto& r : results) {
        if (r.isa == isa && r.threads == threads && r.dtype == dtype) return r.best_elements_per_s();
    }
    return -1;
}

ExpRates bench_exp(const Plan& plan, CsvWriter& csv) {
    print_section(format("Vector exp throughput: %lld-element L1/L2-resident buffer per thread, "
                         "%d repeats",
                         (long long)kExpElements, plan.repeats));
    std::printf("\n");
    const Table table({{"isa", 6, true}, {"dtype", 7, true}, {"threads", 7},
                       {"Gelem/s median", 14}, {"Gelem/s best", 12}, {"per thread", 10},
                       {"ns/elem/thread", 14}});
    table.print_header();

    ExpRates rates;
    for (const auto& isa : plan.isas) {
        for (DType dtype : {DType::f32, DType::f64}) {
            for (int threads : plan.threads) {
                const ExpResult r = dtype == DType::f32
                                        ? bench_exp_one<float>(isa, threads, dtype, plan)
                                        : bench_exp_one<double>(isa, threads, dtype, plan);
                rates.results.push_back(r);
                const double median = r.elements_per_s();
                const double best = r.best_elements_per_s();
                table.print_row({isa, dtype_name(dtype), format("%d", threads),
                                 format("%.2f", median / 1e9), format("%.2f", best / 1e9),
                                 format("%.2f", median / threads / 1e9),
                                 format("%.3f", threads / median * 1e9)});
                CsvRow row;
                row.op = "exp";
                row.isa = isa;
                row.threads = threads;
                row.dtype = dtype_name(dtype);
                row.shape = format("%lld", (long long)kExpElements);
                row.median_ms = r.timing.median_s * 1e3;
                row.min_ms = r.timing.min_s * 1e3;
                row.gelem_per_s = median / 1e9;
                csv.write(row);
            }
        }
    }
    return rates;
}

}  // namespace fastloss_bench
