#include "ops/distillation_ops.hpp"

#include <vector>

#include "fastloss/dispatch.hpp"
#include "ops/axis_geometry.hpp"
#include "ops/class_targets.hpp"
#include "ops/loss_vocabulary.hpp"
#include "ops/position_loops.hpp"

namespace fastloss {

template <class S>
double distillation_forward(const DistillationCall<S>& call) {
    using T = compute_t<S>;
    const bool index_targets = call.target != nullptr;
    const bool with_grad = call.grad != nullptr;
    const int64_t classes = call.shape[size_t(call.axis)];
    const int64_t positions = position_count(call.shape, call.axis);
    const SmallOperands<S> small(call);
    const T* weight = small.weight;
    const T* grad_output = small.grad_output;
    const std::vector<int64_t>& grad_output_strides = small.grad_output_strides;

    // The kernels write the hard and soft terms of every position to scratch (in position order:
    // CE at [0, P), KL at [P, 2P)), so the reductions below sum them in a fixed order.
    std::vector<T> scratch = scratch_vector<T>(count_product(positions, 2), "per-position losses");
    T* ce = scratch.data();

    DistillationParams<T> params;
    params.hard = cross_entropy_params(call, weight);
    params.inverse_temperature = T(1.0 / call.temperature);

    // Operands: 0 student, 1 teacher, 2 scratch (CE part), 3 target (reduced) or probabilities (full),
    // then 4 gradient and 5 its per-position scale when a gradient is wanted.
    const std::vector<int64_t> scratch_strides = position_strides(call.shape, call.axis);
    // Every target is checked (and copied) before anything is computed or written.
    CheckedTargets checked;
    if (index_targets) {
        checked = checked_class_targets(call.target, call.target_strides, call.shape, call.axis, call.ignore_index,
                                        weight);
    }
    std::vector<std::vector<int64_t>> strides = {call.student_strides, call.teacher_strides, scratch_strides};
    std::vector<OperandRole> roles = {OperandRole::full, OperandRole::full, OperandRole::reduced};
    strides.push_back(index_targets ? checked.strides : call.probability_strides);
    roles.push_back(index_targets ? OperandRole::reduced : OperandRole::full);
    if (with_grad) {
        strides.push_back(call.grad_strides);
        roles.push_back(OperandRole::full);
        strides.push_back(grad_output ? grad_output_strides : scratch_strides);
        roles.push_back(OperandRole::reduced);
    }
    const AxisGeometry g = make_axis_geometry(call.shape, call.axis, strides, roles);
    const double hard_denominator = index_targets ? checked.weight_sum : double(positions);

    // The gradient's factors (distillation.cpp): per position, scale * alpha / D for CE and
    // scale * (1 - alpha) T / N for KL (T^2 from the loss, 1/T from the tempered softmax), with
    // D, N = 1 unless the reduction is mean; scale is grad_output (none) or its scalar.
    const bool mean = call.reduction == Reduction::mean;
    params.hard_grad = T(call.alpha / (mean ? hard_denominator : 1.0));
    params.soft_grad = T((1.0 - call.alpha) * call.temperature / (mean ? double(call.shape[0]) : 1.0));
    const T constant_scale = call.grad_output_scalar;
    const T* scale = grad_output ? grad_output : &constant_scale;
    const bool scale_varies = grad_output != nullptr;
    S* grad = call.grad;

    const DistillationKernels<S>& k = active_kernels().kernels<S>().distillation;
    const S* s = call.student;
    const S* t = call.teacher;
    const int64_t* target = checked.target;
    const S* q = call.probabilities;
    if (positions > 0 && classes > 0) {
        parallel_over_positions(
            g,
            [&](const int64_t* at, const int64_t* step, int64_t rows) {
                const int64_t* yp = index_targets ? target + at[3] : nullptr;
                const S* qp = index_targets ? nullptr : q + at[3];
                if (with_grad) {
                    k.rows_grad(s + at[0], step[0], t + at[1], step[1], yp, step[3], qp, step[3],
                                scale_varies ? scale + at[5] : scale, scale_varies ? step[5] : 0, ce + at[2],
                                ce + positions + at[2], step[2], grad + at[4], step[4], rows, params);
                } else {
                    k.rows(s + at[0], step[0], t + at[1], step[1], yp, step[3], qp, step[3], ce + at[2],
                           ce + positions + at[2], step[2], rows, params);
                }
            },
            [&](const int64_t* at, int64_t columns) {
                const int64_t* yp = index_targets ? target + at[3] : nullptr;
                const S* qp = index_targets ? nullptr : q + at[3];
                if (with_grad) {
                    k.columns_grad(s + at[0], g.class_stride[0], t + at[1], g.class_stride[1], yp, g.column_stride[3],
                                   qp, g.class_stride[3], scale_varies ? scale + at[5] : scale,
                                   scale_varies ? g.column_stride[5] : 0, ce + at[2], ce + positions + at[2],
                                   g.column_stride[2], grad + at[4], g.class_stride[4], columns, params);
                } else {
                    k.columns(s + at[0], g.class_stride[0], t + at[1], g.class_stride[1], yp, g.column_stride[3], qp,
                              g.class_stride[3], ce + at[2], ce + positions + at[2], g.column_stride[2], columns,
                              params);
                }
            },
            [&](int64_t begin, int64_t end) {
                // Neither layout fits: gather each row of every full operand contiguously; the
                // gradient row is formed in the student's buffer and scattered back.
                std::vector<S> rows_buffer = scratch_vector<S>(count_product(classes, index_targets ? 2 : 3), "staged rows");
                S* s_row = rows_buffer.data();
                S* t_row = s_row + classes;
                S* q_row = index_targets ? nullptr : t_row + classes;
                int64_t at[kMaxOperands];
                for (int64_t i = begin; i < end; ++i) {
                    g.outer_offsets(i, at);
                    gather_row(s + at[0], g.class_stride[0], classes, s_row);
                    gather_row(t + at[1], g.class_stride[1], classes, t_row);
                    if (!index_targets) gather_row(q + at[3], g.class_stride[3], classes, q_row);
                    const int64_t* yp = index_targets ? target + at[3] : nullptr;
                    if (with_grad) {
                        k.rows_grad(s_row, classes, t_row, classes, yp, 0, q_row, classes,
                                    scale_varies ? scale + at[5] : scale, 0, ce + at[2], ce + positions + at[2], 0,
                                    s_row, classes, 1, params);
                        S* out = grad + at[4];
                        for (int64_t c = 0; c < classes; ++c) out[c * g.class_stride[4]] = s_row[c];
                    } else {
                        k.rows(s_row, classes, t_row, classes, yp, 0, q_row, classes, ce + at[2],
                               ce + positions + at[2], 0, 1, params);
                    }
                }
            });
    }

    const T* kl = ce + positions;
    const double soft_scale = (1.0 - call.alpha) * call.temperature * call.temperature;
    if (call.reduction == Reduction::none) {
        for (int64_t i = 0; i < positions; ++i) {
            call.loss[i] = S(T(call.alpha * double(ce[i]) + soft_scale * double(kl[i])));
        }
        return 0.0;
    }
    const double hard_total = sum_in_order(ce, positions);
    const double soft_total = sum_in_order(kl, positions);
    if (call.reduction == Reduction::sum) return call.alpha * hard_total + soft_scale * soft_total;
    // kl_div's batchmean divides by input.size(0), whatever the class axis and the rank.
    const double batch = double(call.shape[0]);
    return call.alpha * (hard_total / hard_denominator) + soft_scale * (soft_total / batch);
}

#define FASTLOSS_INSTANTIATE(S) template double distillation_forward<S>(const DistillationCall<S>&);
FASTLOSS_FOR_EACH_STORAGE_TYPE(FASTLOSS_INSTANTIATE)
#undef FASTLOSS_INSTANTIATE

}  // namespace fastloss
