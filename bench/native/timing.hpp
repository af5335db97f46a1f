// Wall-clock timing: one untimed warm-up call, then `repeats` timed calls summarised by their
// median (robust to the odd slow run: interrupts, another process) and their minimum (the best
// the machine managed).
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

namespace fastloss_bench {

struct Timing {
    double median_s = 0;
    double min_s = 0;
};

inline double now_seconds() {
    using clock = std::chrono::steady_clock;
    return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

inline Timing summarize(std::vector<double> samples) {
    Timing t;
    if (samples.empty()) return t;
    std::sort(samples.begin(), samples.end());
    const size_t n = samples.size();
    t.median_s = n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
    t.min_s = samples.front();
    return t;
}

// The warm-up call starts the OpenMP thread pool, faults in anything not yet touched and fills
// the caches and TLBs the way every later call sees them.
template <class Fn>
Timing measure(int repeats, Fn&& fn) {
    fn();
    std::vector<double> samples;
    samples.reserve(static_cast<size_t>(repeats));
    for (int r = 0; r < repeats; ++r) {
        const double start = now_seconds();
        fn();
        samples.push_back(now_seconds() - start);
    }
    return summarize(std::move(samples));
}

}  // namespace fastloss_bench
