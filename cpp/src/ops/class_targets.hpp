// Shared by the drivers of losses with class targets and per-position values (cross_entropy,
// nll_loss, distillation_loss): target checks, per-position scratch layout, ordered sums.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/axis_geometry.hpp"
#include "ops/cross_entropy_ops.hpp"
#include "ops/position_loops.hpp"

namespace fastloss {

// C-contiguous strides of the per-position shape (the input's shape without the class axis),
// in the full-rank form the geometry takes (0 for the class axis).
inline std::vector<int64_t> position_strides(const std::vector<int64_t>& shape, int axis) {
    std::vector<int64_t> strides(shape.size(), 0);
    int64_t step = 1;
    for (size_t d = shape.size(); d-- > 0;) {
        if (int(d) == axis) continue;
        strides[d] = step;
        step *= shape[d];
    }
    return strides;
}

inline int64_t position_count(const std::vector<int64_t>& shape, int axis) {
    int64_t n = 1;
    for (size_t d = 0; d < shape.size(); ++d) {
        if (int(d) != axis) n *= shape[d];
    }
    return n;
}

// Checks every index target of operand `target_operand` (in position order, so the first bad one
// is reported) and returns the sum of the weights of the non-ignored ones, the denominator of a
// weighted mean. Throws TargetOutOfBounds before anything is computed.
template <class T>
double check_class_targets(const AxisGeometry& g, int target_operand, const int64_t* target, int64_t classes,
                           int64_t ignore_index, const T* weight) {
    double weight_sum = 0.0;
    for_each_position(g, [&](const int64_t* at) {
        const int64_t y = target[at[target_operand]];
        if (y == ignore_index) return;
        if (y < 0 || y >= classes) throw TargetOutOfBounds(y);
        weight_sum += weight ? double(weight[y]) : 1.0;
    });
    return weight_sum;
}

// Sums values in float64, in order: the result does not depend on the number of threads that
// produced them.
template <class T>
double sum_in_order(const T* values, int64_t n) {
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) total += double(values[i]);
    return total;
}

template <class T>
double sum_in_order(const std::vector<T>& values) {
    return sum_in_order(values.data(), int64_t(values.size()));
}

}  // namespace fastloss
