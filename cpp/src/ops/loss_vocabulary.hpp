// Words every loss driver speaks (cross_entropy, nll_loss, distillation_loss,
// cosine_embedding_loss): how a loss is reduced, the error for a class target out of range, the
// ordered sum that makes a reduction independent of the thread count, and where the per-position
// values of a loss over one class axis live.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>
#include "ops/inline_vector.hpp"

namespace fastloss {

enum class Reduction { none, mean, sum };

// Raised (before anything is computed or written) for the first target that is neither
// ignore_index nor a class in [0, C). std::out_of_range reaches Python as IndexError.
class TargetOutOfBounds : public std::out_of_range {
  public:
    explicit TargetOutOfBounds(int64_t target)
        : std::out_of_range("Target " + std::to_string(target) + " is out of bounds.") {}
};

// Sums values in float64 in a fixed order: the result does not depend on the number of threads
// that produced them. Four interleaved partial sums (i mod 4), added at the end as (s0 + s1) +
// (s2 + s3), break the chain of dependent additions, which at 4 cycles each cost more than the
// gathers of nll_loss.
template <class T>
double sum_in_order(const T* values, int64_t n) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += double(values[i]);
        s1 += double(values[i + 1]);
        s2 += double(values[i + 2]);
        s3 += double(values[i + 3]);
    }
    for (; i < n; ++i) s0 += double(values[i]);
    return (s0 + s1) + (s2 + s3);
}

template <class T>
double sum_in_order(const std::vector<T>& values) {
    return sum_in_order(values.data(), int64_t(values.size()));
}

// C-contiguous strides of the per-position shape (the input's shape without the class axis),
// in the full-rank form the geometry takes (0 for the class axis).
inline Extents position_strides(const Extents& shape, int axis) {
    Extents strides(shape.size(), 0);
    int64_t step = 1;
    for (size_t d = shape.size(); d-- > 0;) {
        if (int(d) == axis) continue;
        strides[d] = step;
        step *= shape[d];
    }
    return strides;
}

// The number of positions: the product of the shape without the class axis.
inline int64_t position_count(const Extents& shape, int axis) {
    int64_t n = 1;
    for (size_t d = 0; d < shape.size(); ++d) {
        if (int(d) != axis) n *= shape[d];
    }
    return n;
}

}  // namespace fastloss
