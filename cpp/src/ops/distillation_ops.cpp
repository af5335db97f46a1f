#include "ops/distillation_ops.hpp"

#include <vector>

#include "fastloss/dispatch.hpp"
#include "ops/axis_geometry.hpp"
#include "ops/class_targets.hpp"
#include "ops/cross_entropy_operands.hpp"
#include "ops/loss_vocabulary.hpp"
#include "ops/position_loops.hpp"
#include "ops/softcapped_rows.hpp"
#include "ops/streaming_stores.hpp"

namespace fastloss {
namespace {

// Where each operand of distillation_forward sits in its geometry: its index into the offset and
// stride arrays. The hard term's first (CrossEntropySlot), then the teacher logits.
struct DistillationSlot : CrossEntropySlot {
    enum : int { teacher = CrossEntropySlot::count, count };
};

// The rows kernels keep two rows of exponentials in `stored`, one per block (inside a parallel
// region: an allocation failure is rethrown after it, as the staged rows' is), for the gradient's
// sweep and the JSD's mixture sweep [Note: stored exponentials]; the others' forward needs none.
template <class T>
std::vector<T> stored_row(Divergence divergence, bool with_grad, int64_t classes) {
    const bool stores_rows = with_grad || divergence == Divergence::jsd;
    const int64_t length = stores_rows ? 2 * (classes + DistillationBlock<T>::kMaxStoredPadding) : 0;
    return scratch_vector<T>(length, "a scratch row of distillation's exponentials");
}

// Soft-capping of the student's logits (softcapped_rows.hpp), one position at a time in any
// layout: the student's row is capped into a buffer of T and the teacher's row (and the
// probability targets') staged as T where they are not that already, the rows kernel of T runs on
// them (forming the gradient with respect to s' in place), and that gradient is chained through
// the tanh into the caller's layout. `soft` holds the soft term of each position, beside the hard
// operands' losses as distillation_forward lays them out.
template <class S>
void softcapped_positions(const AxisGeometry& g, const DistillationCall<S>& call,
                          const DistillationParams<compute_t<S>>& params, const CrossEntropyOperands<S>& hard,
                          compute_t<S>* soft) {
    using T = compute_t<S>;
    using Slot = DistillationSlot;
    const int64_t classes = g.classes;
    const bool with_grad = hard.grad != nullptr, index_targets = hard.target != nullptr;
    const DistillationKernels<T>& k = active_kernels().kernels<T>().distillation;
    const auto kernel = with_grad ? k.rows_grad : k.rows;
    const int64_t s_stride = g.class_stride[Slot::input], t_stride = g.class_stride[Slot::teacher];
    const int64_t q_stride = g.class_stride[Slot::target], grad_stride = g.class_stride[Slot::grad];
    const bool strided = s_stride != 1 || (with_grad && grad_stride != 1);
    const bool converts_t = converts_row<S>(t_stride), converts_q = !index_targets && converts_row<S>(q_stride);
    parallel_for(g.outer_count(), classes * g.columns, [&](int64_t begin, int64_t end) {
        SoftcappedRow<S> student(classes, T(call.softcap), with_grad, strided);
        std::vector<T> t_row = scratch_vector<T>(converts_t ? classes : 0, "a staged teacher row");
        std::vector<T> q_row = scratch_vector<T>(converts_q ? classes : 0, "a staged target row");
        std::vector<T> stored = stored_row<T>(call.divergence, with_grad, classes);
        visit_positions(g, begin, end, [&](const int64_t* at) {
            DistillationBlock<T> b;
            b.hard = capped_position_block(hard, student, g, at, q_row.data());
            b.teacher = row_in_compute_type(call.teacher + at[Slot::teacher], t_stride, classes, t_row.data());
            b.teacher_stride = classes;
            b.kl = soft + at[Slot::loss];
            b.stored = stored.empty() ? nullptr : stored.data();
            kernel(b, params);
            if (with_grad) student.chain_into(hard.grad + at[Slot::grad], grad_stride);
        });
    });
}

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
    const Extents& grad_output_strides = small.grad_output_strides;

    // The kernels write the hard and soft terms of every position to scratch (in position order:
    // CE at [0, P), KL at [P, 2P)), so the reductions below sum them in a fixed order.
    std::vector<T> scratch = scratch_vector<T>(count_product(positions, 2), "per-position losses");
    T* ce = scratch.data();

    DistillationParams<T> params;
    params.hard = cross_entropy_params(call, weight);
    params.inverse_temperature = T(1.0 / call.temperature);
    params.divergence = call.divergence;
    params.beta = T(call.beta);

    const Extents scratch_strides = position_strides(call.shape, call.axis);
    // Every target is checked (and copied) before anything is computed or written.
    CheckedTargets checked;
    if (index_targets) {
        checked = checked_class_targets(call.target, call.target_strides, call.shape, call.axis, call.ignore_index,
                                        weight);
    }
    // The hard term's operands (the student logits as its input, the scratch of both terms as its
    // loss), then the teacher.
    using Slot = DistillationSlot;
    GeometryOperands operand_strides = cross_entropy_geometry_operands(
        call.student_strides, scratch_strides, index_targets ? checked.strides : call.probability_strides,
        !index_targets, with_grad ? &call.grad_strides : nullptr, grad_output ? &grad_output_strides : nullptr);
    operand_strides.strides.push_back(call.teacher_strides);
    operand_strides.roles.push_back(OperandRole::full);
    const AxisGeometry g = make_axis_geometry(call.shape, call.axis, operand_strides.strides, operand_strides.roles);
    const double hard_denominator = index_targets ? checked.weight_sum : double(positions);

    // The gradient's factors (distillation.cpp): per position, scale * alpha / D for CE and
    // scale * (1 - alpha) T / N for the divergence (T^2 from the loss, 1/T from the tempered softmax), with
    // D, N = 1 unless the reduction is mean; scale is grad_output (none) or its scalar.
    const bool mean = call.reduction == Reduction::mean;
    params.hard_grad = T(call.alpha / (mean ? hard_denominator : 1.0));
    params.soft_grad = T((1.0 - call.alpha) * call.temperature / (mean ? double(call.shape[0]) : 1.0));
    if (call.z_loss != 0.0) {
        // z' of DistillationParams::z_loss: the mean of the z-loss divides by the count of the
        // positions that carry one (the non-ignored; every one for probability targets), the hard
        // term's by D. With none counted, D is 0 too and z' NaN, reaching no position.
        const int64_t count = index_targets ? checked.counted : positions;
        const double z = call.z_loss * (mean ? hard_denominator / double(count) : 1.0);
        params.z_loss = T(z);
        if (with_grad) params.hard.z_loss_grad = T(2.0 * z);
    }
    // A large gradient is streamed (in columns whole lines only, see distillation.cpp).
    params.hard.stream_grad =
        with_grad && count_product(positions, classes) >= streaming_store_min_bytes() / int64_t(sizeof(S));
    const T constant_scale = call.grad_output_scalar;
    const CrossEntropyOperands<S> hard(call.student, checked.target, call.probabilities, ce, call.grad, grad_output,
                                       &constant_scale);
    // The kernel block at offsets `at`: the hard term's `block`, the teacher's rows at `teacher`,
    // `teacher_stride` apart, the soft terms beside the hard ones, and the JSD's scratch row.
    auto distillation_block = [&](const CrossEntropyBlock<S>& block, const int64_t* at, const S* teacher,
                                  int64_t teacher_stride, std::vector<T>& stored) {
        DistillationBlock<S> b;
        b.hard = block;
        b.teacher = teacher;
        b.teacher_stride = teacher_stride;
        b.kl = ce + positions + at[Slot::loss];
        b.stored = stored.empty() ? nullptr : stored.data();
        return b;
    };
    std::vector<T> no_row;

    const DistillationKernels<S>& k = active_kernels().kernels<S>().distillation;
    const auto rows_kernel = with_grad ? k.rows_grad : k.rows;
    const auto columns_kernel = with_grad ? k.columns_grad : k.columns;
    if (positions > 0 && classes > 0 && call.softcap > 0.0) {
        softcapped_positions(g, call, params, hard, ce + positions);
    } else if (positions > 0 && classes > 0) {
        parallel_over_positions(
            g, int64_t(sizeof(S)),
            [&](const int64_t* at, const int64_t* step, int64_t rows) {
                const CrossEntropyBlock<S> block = hard.block_at(at, step, step, rows);
                const S* teacher = call.teacher + at[Slot::teacher];
                std::vector<T> stored = stored_row<T>(call.divergence, with_grad, classes);
                rows_kernel(distillation_block(block, at, teacher, step[Slot::teacher], stored), params);
            },
            [&](const int64_t* at, int64_t columns) {
                const CrossEntropyBlock<S> block =
                    hard.block_at(at, g.class_stride.data(), g.column_stride.data(), columns);
                const S* teacher = call.teacher + at[Slot::teacher];
                columns_kernel(distillation_block(block, at, teacher, g.class_stride[Slot::teacher], no_row),
                               params);
            },
            [&](int64_t begin, int64_t end) {
                // Neither layout fits: each row of every full operand is gathered contiguously; the
                // gradient row is formed in the student's and scattered back.
                std::vector<S> rows_buffer = scratch_vector<S>(count_product(classes, index_targets ? 2 : 3), "staged rows");
                S* s_row = rows_buffer.data();
                S* t_row = s_row + classes;
                S* q_row = index_targets ? nullptr : t_row + classes;
                std::vector<T> stored = stored_row<T>(call.divergence, with_grad, classes);
                int64_t at[kMaxOperands];
                for (int64_t i = begin; i < end; ++i) {
                    g.outer_offsets(i, at);
                    const CrossEntropyBlock<S> block = hard.staged_block_at(g, at, s_row, q_row);
                    gather_row(call.teacher + at[Slot::teacher], g.class_stride[Slot::teacher], classes, t_row);
                    rows_kernel(distillation_block(block, at, t_row, classes, stored), params);
                    if (with_grad) hard.scatter_grad(g, at, s_row);
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
