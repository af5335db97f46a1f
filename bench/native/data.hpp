// Deterministic pseudo-random logits: a pure function of the index, so arrays can be filled by
// any number of threads (each first-touching its own pages) and still hold the same values.
#pragma once

#include <cstdint>

namespace fastloss_bench {

// Uniform in [-10, 10): the spread of a trained classifier's logits. Every kernel here is
// branch-free in its values, so the distribution only has to be realistic, not exhaustive.
inline double logit_value(int64_t i) {
    // splitmix64 finaliser
    uint64_t z = static_cast<uint64_t>(i) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return double(z >> 11) * 0x1.0p-53 * 20.0 - 10.0;
}

}  // namespace fastloss_bench
