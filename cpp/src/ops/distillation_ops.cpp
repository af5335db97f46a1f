#include "ops/distillation_ops.hpp"

#include <vector>

#include "fastloss/dispatch.hpp"
#include "ops/axis_geometry.hpp"
#include "ops/class_targets.hpp"
#include "ops/loss_vocabulary.hpp"
#include "ops/position_loops.hpp"

namespace fastloss {
namespace {

// Where each operand of distillation_forward sits in its geometry: its index into the offset and
// stride arrays. `losses` is the scratch of per-position terms; `target` holds the index targets
// or the probabilities.
struct DistillationOperand {
    enum : int { student, teacher, losses, target, grad, scale, count };
};

}  // namespace

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

    const std::vector<int64_t> scratch_strides = position_strides(call.shape, call.axis);
    // Every target is checked (and copied) before anything is computed or written.
    CheckedTargets checked;
    if (index_targets) {
        checked = checked_class_targets(call.target, call.target_strides, call.shape, call.axis, call.ignore_index,
                                        weight);
    }
    // The gradient and its scale take part only when a gradient is wanted: an operand in the
    // geometry can rule out a layout or a merge of axes.
    using Operand = DistillationOperand;
    std::vector<std::vector<int64_t>> strides(with_grad ? Operand::count : Operand::grad);
    std::vector<OperandRole> roles(strides.size(), OperandRole::reduced);
    strides[Operand::student] = call.student_strides;
    roles[Operand::student] = OperandRole::full;
    strides[Operand::teacher] = call.teacher_strides;
    roles[Operand::teacher] = OperandRole::full;
    strides[Operand::losses] = scratch_strides;
    strides[Operand::target] = index_targets ? checked.strides : call.probability_strides;
    if (!index_targets) roles[Operand::target] = OperandRole::full;
    if (with_grad) {
        strides[Operand::grad] = call.grad_strides;
        roles[Operand::grad] = OperandRole::full;
        strides[Operand::scale] = grad_output ? grad_output_strides : scratch_strides;
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

    const DistillationKernels<S>& k = active_kernels().kernels<S>().distillation;
    const auto rows_kernel = with_grad ? k.rows_grad : k.rows;
    const auto columns_kernel = with_grad ? k.columns_grad : k.columns;

    // The kernel block of `count` positions at offsets `at`: full operands `full_stride` apart (the
    // row stride or the class stride), per-position ones `position_stride` apart.
    auto block_at = [&](const int64_t* at, const int64_t* full_stride, const int64_t* position_stride,
                        int64_t count) {
        DistillationBlock<S> b;
        b.student = call.student + at[Operand::student];
        b.student_stride = full_stride[Operand::student];
        b.teacher = call.teacher + at[Operand::teacher];
        b.teacher_stride = full_stride[Operand::teacher];
        if (index_targets) {
            b.target = checked.target + at[Operand::target];
            b.target_stride = position_stride[Operand::target];
        } else {
            b.probabilities = call.probabilities + at[Operand::target];
            b.probability_stride = full_stride[Operand::target];
        }
        b.ce = ce + at[Operand::losses];
        b.kl = ce + positions + at[Operand::losses];
        b.loss_stride = position_stride[Operand::losses];
        if (with_grad) {
            b.grad = call.grad + at[Operand::grad];
            b.grad_stride = full_stride[Operand::grad];
            b.scale = scale_varies ? scale + at[Operand::scale] : scale;
            b.scale_stride = scale_varies ? position_stride[Operand::scale] : 0;
        }
        b.count = count;
        return b;
    };

    if (positions > 0 && classes > 0) {
        parallel_over_positions(
            g,
            [&](const int64_t* at, const int64_t* step, int64_t rows) {
                rows_kernel(block_at(at, step, step, rows), params);
            },
            [&](const int64_t* at, int64_t columns) {
                columns_kernel(block_at(at, g.class_stride.data(), g.column_stride.data(), columns), params);
            },
            [&](int64_t begin, int64_t end) {
                // Neither layout fits: gather each row of every full operand contiguously; the
                // gradient row is formed in the student's buffer and scattered back.
                std::vector<S> rows_buffer = scratch_vector<S>(count_product(classes, index_targets ? 2 : 3), "staged rows");
                S* s_row = rows_buffer.data();
                S* t_row = s_row + classes;
                S* q_row = index_targets ? nullptr : t_row + classes;
                const int64_t unused_strides[kMaxOperands] = {};  // a block of one position
                int64_t at[kMaxOperands];
                for (int64_t i = begin; i < end; ++i) {
                    g.outer_offsets(i, at);
                    // The position's block, its rows replaced by the staged ones.
                    DistillationBlock<S> b = block_at(at, unused_strides, unused_strides, 1);
                    gather_row(b.student, g.class_stride[Operand::student], classes, s_row);
                    gather_row(b.teacher, g.class_stride[Operand::teacher], classes, t_row);
                    b.student = s_row;
                    b.student_stride = classes;
                    b.teacher = t_row;
                    b.teacher_stride = classes;
                    if (!index_targets) {
                        gather_row(b.probabilities, g.class_stride[Operand::target], classes, q_row);
                        b.probabilities = q_row;
                        b.probability_stride = classes;
                    }
                    if (with_grad) {
                        b.grad = s_row;
                        b.grad_stride = classes;
                    }
                    rows_kernel(b, params);
                    if (with_grad) {
                        S* out = call.grad + at[Operand::grad];
                        for (int64_t c = 0; c < classes; ++c) out[c * g.class_stride[Operand::grad]] = s_row[c];
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
