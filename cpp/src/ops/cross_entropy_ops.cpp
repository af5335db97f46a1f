#include "ops/cross_entropy_ops.hpp"

#include <vector>

#include "fastloss/dispatch.hpp"
#include "ops/axis_geometry.hpp"
#include "ops/class_targets.hpp"
#include "ops/position_loops.hpp"

namespace fastloss {
namespace {

// Checks every index target (in order, so the first bad one is reported) and returns the sum of
// the weights of the non-ignored ones, the denominator of a weighted mean.
template <class T>
double check_targets(const ClassificationLossCall<T>& call, const AxisGeometry& g, int target_operand) {
    return check_class_targets(g, target_operand, call.target, call.shape[size_t(call.axis)], call.ignore_index,
                               call.weight);
}

}  // namespace

template <class T>
double cross_entropy_forward(const ClassificationLossCall<T>& call) {
    const bool index_targets = call.target != nullptr;
    const int64_t classes = call.shape[size_t(call.axis)];
    const int64_t positions = position_count(call.shape, call.axis);

    // Per-position losses go to the caller's array for 'none', else to a small scratch array.
    std::vector<T> scratch;
    T* loss = call.loss;
    std::vector<int64_t> loss_strides = call.loss_strides;
    if (call.reduction != Reduction::none) {
        scratch.assign(size_t(positions), T(0));
        loss = scratch.data();
        loss_strides = position_strides(call.shape, call.axis);
    }

    CrossEntropyParams<T> params;
    params.classes = classes;
    params.weight = call.weight;
    double weight_total = 0.0;
    for (int64_t c = 0; c < classes; ++c) weight_total += call.weight ? double(call.weight[c]) : 1.0;
    params.weight_sum = T(weight_total);
    params.ignore_index = call.ignore_index;
    params.label_smoothing = call.label_smoothing;

    const CrossEntropyKernels<T>& k = cross_entropy_kernels<T>(active_kernels());
    const T* x = call.input;
    const T* second = index_targets ? nullptr : call.probabilities;  // full operand, if any
    const int64_t* target = call.target;

    std::vector<std::vector<int64_t>> strides = {call.input_strides, loss_strides};
    std::vector<OperandRole> roles = {OperandRole::full, OperandRole::reduced};
    if (index_targets) {
        strides.push_back(call.target_strides);
        roles.push_back(OperandRole::reduced);
    } else {
        strides.push_back(call.probability_strides);
        roles.push_back(OperandRole::full);
    }
    const AxisGeometry g = make_axis_geometry(call.shape, call.axis, strides, roles);
    // Every target is checked before anything is computed or written.
    const double denominator = index_targets ? check_targets(call, g, 2) : double(positions);

    if (positions > 0 && classes > 0) {
        parallel_over_positions(
            g,
            [&](const int64_t* at, const int64_t* step, int64_t rows) {
                if (index_targets) {
                    k.index_rows(x + at[0], step[0], target + at[2], step[2], loss + at[1], step[1], rows, params);
                } else {
                    k.probability_rows(x + at[0], step[0], second + at[2], step[2], loss + at[1], step[1], rows,
                                       params);
                }
            },
            [&](const int64_t* at, int64_t columns) {
                if (index_targets) {
                    k.index_columns(x + at[0], g.class_stride[0], target + at[2], g.column_stride[2],
                                    loss + at[1], g.column_stride[1], columns, params);
                } else {
                    k.probability_columns(x + at[0], g.class_stride[0], second + at[2], g.class_stride[2],
                                          loss + at[1], g.column_stride[1], columns, params);
                }
            },
            [&](int64_t begin, int64_t end) {
                // Neither layout fits: gather each row (and its probabilities) contiguously.
                std::vector<T> row(static_cast<size_t>(classes));
                std::vector<T> q_row(index_targets ? 0 : static_cast<size_t>(classes));
                int64_t at[kMaxOperands];
                for (int64_t i = begin; i < end; ++i) {
                    g.outer_offsets(i, at);
                    gather_row(x + at[0], g.class_stride[0], classes, row.data());
                    if (index_targets) {
                        k.index_rows(row.data(), classes, target + at[2], 0, loss + at[1], 0, 1, params);
                    } else {
                        gather_row(second + at[2], g.class_stride[2], classes, q_row.data());
                        k.probability_rows(row.data(), classes, q_row.data(), classes, loss + at[1], 0, 1, params);
                    }
                }
            });
    }

    if (call.reduction == Reduction::none) return 0.0;
    const double total = sum_in_order(scratch);
    return call.reduction == Reduction::sum ? total : total / denominator;
}

template <class T>
double nll_loss_forward(const ClassificationLossCall<T>& call) {
    // Without a per-position output the third operand is unused; the target's strides stand in.
    const auto& loss_strides = call.loss ? call.loss_strides : call.target_strides;
    const AxisGeometry g = make_axis_geometry(
        call.shape, call.axis, {call.input_strides, call.target_strides, loss_strides},
        {OperandRole::full, OperandRole::reduced, OperandRole::reduced});
    const double denominator = check_targets(call, g, 1);
    const int64_t class_stride = g.class_stride[0];
    double total = 0.0;
    // One gather per position: no kernel needed, and serial order keeps the sum deterministic.
    for_each_position(g, [&](const int64_t* at) {
        const int64_t y = call.target[at[1]];
        T value = T(0);
        if (y != call.ignore_index) {
            const T w = call.weight ? call.weight[y] : T(1);
            value = -w * call.input[at[0] + y * class_stride];
        }
        if (call.reduction == Reduction::none) {
            call.loss[at[2]] = value;
        } else {
            total += double(value);
        }
    });
    if (call.reduction == Reduction::none) return 0.0;
    return call.reduction == Reduction::sum ? total : total / denominator;
}

template double cross_entropy_forward<float>(const ClassificationLossCall<float>&);
template double cross_entropy_forward<double>(const ClassificationLossCall<double>&);
template double nll_loss_forward<float>(const ClassificationLossCall<float>&);
template double nll_loss_forward<double>(const ClassificationLossCall<double>&);

}  // namespace fastloss
