// Shared by the drivers of losses with class targets and per-position values (cross_entropy,
// nll_loss, distillation_loss): target checks, the small operands in the kernels' compute type,
// the cross-entropy parameters of a call, and per-position values stored in the caller's layout.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "fastloss/half.hpp"
#include "fastloss/scratch.hpp"

#include "ops/axis_geometry.hpp"
#include "ops/loss_vocabulary.hpp"
#include "ops/position_loops.hpp"
#include "ops/inline_vector.hpp"

namespace fastloss {

// The geometry that pairs a per-position operand (full-rank `strides`, class-axis entry ignored)
// with its copy in position order, and where each of the two sits in it.
struct PositionCopySlot {
    enum : int { strided, dense };
};

inline AxisGeometry position_copy_geometry(const Extents& shape, int axis,
                                           const Extents& strides) {
    return make_axis_geometry(shape, axis, {strides, position_strides(shape, axis)},  // PositionCopySlot order
                              {OperandRole::reduced, OperandRole::reduced});
}

// The index targets of a call, checked and copied in position order (contiguous, the per-position
// shape): the kernels read this private copy, never the caller's array again. So the values
// checked are the values used: another thread writing the caller's targets during the call, or an
// output buffer that shares their memory (grad_out over the same bytes), cannot turn into an
// out-of-bounds index. The copy is 8 bytes a position, next to a row of classes.
// Without `copy` the kernels read the caller's targets, and must check each one again as they
// use it (nll_loss without a gradient, whose single gather per position a copy would slow).
struct CheckedTargets {
    std::unique_ptr<int64_t[]> values;  // the copy, if made
    const int64_t* target = nullptr;     // the copy, or the caller's targets
    Extents strides;        // target's full-rank strides (0 on the class axis)
    double weight_sum = 0.0;             // the non-ignored targets' weights: a weighted mean's denominator
    int64_t counted = 0;                 // the non-ignored targets (the z-loss's mean divides by it)
};

// Checks every target (in position order, so the first bad one is reported) and throws
// TargetOutOfBounds before anything is computed.
template <class T>
CheckedTargets checked_class_targets(const int64_t* target, const Extents& target_strides,
                                     const Extents& shape, int axis, int64_t ignore_index,
                                     const T* weight, bool copy_targets = true) {
    const int64_t classes = shape[size_t(axis)];
    const int64_t positions = position_count(shape, axis);
    CheckedTargets checked;
    checked.target = target;
    checked.strides = target_strides;
    if (copy_targets) {
        checked.values = uninitialised_scratch<int64_t>(positions, "a copy of the class targets");
        checked.target = checked.values.get();
        checked.strides = position_strides(shape, axis);
    }
    int64_t* copy = checked.values.get();
    auto check_and_copy = [&](auto&& count) {
        auto one = [&](int64_t from, int64_t to) {
            int64_t y;
            if (copy) {
                // Read once (an atomic load: another thread may be writing it, and a plain load
                // could legally be repeated): the value checked is the value copied.
                y = __atomic_load_n(target + from, __ATOMIC_RELAXED);
                copy[to] = y;
            } else {
                y = target[from];  // (its user checks it again; an atomic load here slows nll_loss)
            }
            if (y == ignore_index) return;
            if (y < 0 || y >= classes) throw TargetOutOfBounds(y);
            count(y);
        };
        if (shape.size() <= 2) {  // at most one position axis, (N, C) or (C,): a strided loop
            const int64_t stride = shape.size() == 2 ? target_strides[size_t(1 - axis)] : 0;
            for (int64_t i = 0; i < positions; ++i) one(i * stride, i);
            return;
        }
        using Slot = PositionCopySlot;
        const AxisGeometry g = position_copy_geometry(shape, axis, target_strides);
        for_each_position(g, [&](const int64_t* at) { one(at[Slot::strided], at[Slot::dense]); });
    };
    int64_t counted = 0;
    if (!weight) {  // an integer count: no chain of float64 additions through the loop
        check_and_copy([&](int64_t) { ++counted; });
        checked.weight_sum = double(counted);
    } else {
        double weight_sum = 0.0;
        check_and_copy([&](int64_t y) {
            weight_sum += double(weight[y]);
            ++counted;
        });
        checked.weight_sum = weight_sum;
    }
    checked.counted = counted;
    return checked;
}

// Kernels read the big arrays in their storage type S but small operands (class weights,
// per-position gradient scales and losses) in T = compute_t<S>. For the half types these few
// values are converted here, once; for float and double the caller's memory is used as it is.

// n contiguous values (class weights) in T: `values` itself, or a converted copy in `holder`.
template <class S>
const compute_t<S>* contiguous_in_compute_type(const S* values, int64_t n, std::vector<compute_t<S>>& holder) {
    if constexpr (std::is_same_v<S, compute_t<S>>) {
        return values;
    } else {
        if (!values) return nullptr;
        holder.assign(values, values + n);
        return holder.data();
    }
}

// A per-position operand (full-rank `strides`, class-axis entry ignored) in T: `values` itself, or
// a converted copy in position order in `holder`, `strides` then becoming position_strides.
template <class S>
const compute_t<S>* positions_in_compute_type(const S* values, Extents& strides,
                                              const Extents& shape, int axis,
                                              std::vector<compute_t<S>>& holder) {
    if constexpr (std::is_same_v<S, compute_t<S>>) {
        return values;
    } else {
        if (!values) return nullptr;
        using Slot = PositionCopySlot;
        const AxisGeometry g = position_copy_geometry(shape, axis, strides);
        holder.resize(size_t(position_count(shape, axis)));
        for_each_position(g, [&](const int64_t* at) { holder[size_t(at[Slot::dense])] = values[at[Slot::strided]]; });
        strides = position_strides(shape, axis);
        return holder.data();
    }
}

// The class weights and the per-position grad_output of a loss call (ClassificationLossCall,
// DistillationCall) in T. Holds any converted copies, so it must outlive the kernels' use.
template <class S>
struct SmallOperands {
    using T = compute_t<S>;
    std::vector<T> weight_holder, grad_output_holder;
    Extents grad_output_strides;
    const T* weight = nullptr;
    const T* grad_output = nullptr;

    template <class Call>
    explicit SmallOperands(const Call& call) : grad_output_strides(call.grad_output_strides) {
        weight = contiguous_in_compute_type(call.weight, call.shape[size_t(call.axis)], weight_holder);
        grad_output = positions_in_compute_type(call.grad_output, grad_output_strides, call.shape, call.axis,
                                                grad_output_holder);
    }
    SmallOperands(const SmallOperands&) = delete;  // the pointers may point into the holders
    SmallOperands& operator=(const SmallOperands&) = delete;
};

// The cross-entropy parameters of a call (ClassificationLossCall, DistillationCall) whose class
// weights are `weight` in T. The weights' sum enters the smoothing term only, so it is taken only
// when there is smoothing and a position to smooth: an empty batch costs nothing per class.
template <class T, class Call>
CrossEntropyParams<T> cross_entropy_params(const Call& call, const T* weight) {
    const int64_t classes = call.shape[size_t(call.axis)];
    double weight_total = double(classes);
    if (weight && call.label_smoothing != 0 && position_count(call.shape, call.axis) > 0) {
        weight_total = 0.0;
        for (int64_t c = 0; c < classes; ++c) weight_total += double(weight[c]);
    }
    CrossEntropyParams<T> params;
    params.classes = classes;
    params.weight = weight;
    params.weight_sum = T(weight_total);
    params.ignore_index = call.ignore_index;
    params.label_smoothing = call.label_smoothing;
    return params;
}

// The reverse of positions_in_compute_type, for per-position losses computed in T in position
// order: out[...] = values[i], rounded once to S.
template <class S, class T>
void store_positions(const T* values, S* out, const Extents& out_strides,
                     const Extents& shape, int axis) {
    using Slot = PositionCopySlot;
    const AxisGeometry g = position_copy_geometry(shape, axis, out_strides);
    for_each_position(g, [&](const int64_t* at) { out[at[Slot::strided]] = S(values[at[Slot::dense]]); });
}

}  // namespace fastloss
