#include "ops/cross_entropy_ops.hpp"

#include <algorithm>
#include <atomic>
#include <type_traits>
#include <vector>

#include "fastloss/dispatch.hpp"
#include "fastloss/scratch.hpp"
#include "ops/axis_geometry.hpp"
#include "ops/class_targets.hpp"
#include "ops/loss_vocabulary.hpp"
#include "ops/position_loops.hpp"

namespace fastloss {
namespace {

// Where the per-position losses go: the caller's array for reduction 'none' when it holds T,
// else a scratch array in position order (converted to S for 'none', summed in order otherwise:
// the sum is the same for any number of threads).
template <class S>
class PositionLosses {
public:
    using T = compute_t<S>;
    static constexpr bool kInCallerArray = std::is_same_v<S, T>;

    explicit PositionLosses(const ClassificationLossCall<S>& call) : call_(call), strides_(call.loss_strides) {
        if constexpr (kInCallerArray) values_ = call.loss;
        if (call.reduction != Reduction::none || !kInCallerArray) {
            scratch_ = scratch_vector<T>(position_count(call.shape, call.axis), "per-position losses");
            values_ = scratch_.data();
            strides_ = position_strides(call.shape, call.axis);
        }
    }
    T* values() const { return values_; }
    const std::vector<int64_t>& strides() const { return strides_; }

    // The reduced loss (0 for 'none', whose values are now in the caller's array).
    double finish(double denominator) const {
        if (call_.reduction == Reduction::none) {
            if (!kInCallerArray) store_positions(values_, call_.loss, call_.loss_strides, call_.shape, call_.axis);
            return 0.0;
        }
        const double total = sum_in_order(scratch_);
        return call_.reduction == Reduction::sum ? total : total / denominator;
    }

private:
    const ClassificationLossCall<S>& call_;
    T* values_ = nullptr;
    std::vector<int64_t> strides_;
    std::vector<T> scratch_;
};

// A target that failed its check on use (see nll_loss_forward), reported after the parallel region.
class TargetChangedDuringCall {
  public:
    void note(int64_t target) {
        if (!noted_.exchange(true)) value_.store(target);
    }
    // After the parallel region (which orders the stores before this).
    void raise_if_noted() const {
        if (noted_.load()) throw TargetOutOfBounds(value_.load());
    }

  private:
    std::atomic<bool> noted_{false};
    std::atomic<int64_t> value_{0};
};

}  // namespace

template <class S>
double cross_entropy_forward(const ClassificationLossCall<S>& call) {
    using T = compute_t<S>;
    const bool index_targets = call.target != nullptr;
    const bool with_grad = call.grad != nullptr;
    const int64_t classes = call.shape[size_t(call.axis)];
    const int64_t positions = position_count(call.shape, call.axis);
    const SmallOperands<S> small(call);
    const T* weight = small.weight;
    const T* grad_output = small.grad_output;
    const std::vector<int64_t>& grad_output_strides = small.grad_output_strides;

    const PositionLosses<S> losses(call);
    T* loss = losses.values();
    const std::vector<int64_t>& loss_strides = losses.strides();

    const CrossEntropyParams<T> params = cross_entropy_params(call, weight);

    // Every target is checked (and copied) before anything is computed or written.
    CheckedTargets checked;
    if (index_targets) {
        checked = checked_class_targets(call.target, call.target_strides, call.shape, call.axis, call.ignore_index,
                                        weight);
    }
    // Operands: 0 input, 1 loss, 2 target or probabilities, then 3 gradient and 4 its per-position
    // scale when a gradient is wanted.
    std::vector<std::vector<int64_t>> strides = {call.input_strides, loss_strides,
                                                 index_targets ? checked.strides : call.probability_strides};
    std::vector<OperandRole> roles = {OperandRole::full, OperandRole::reduced,
                                      index_targets ? OperandRole::reduced : OperandRole::full};
    if (with_grad) {
        strides.push_back(call.grad_strides);
        roles.push_back(OperandRole::full);
        strides.push_back(grad_output ? grad_output_strides : loss_strides);
        roles.push_back(OperandRole::reduced);
    }
    const AxisGeometry g = make_axis_geometry(call.shape, call.axis, strides, roles);
    // Probability targets: PyTorch divides by numel / C, which is 0 / 0 (a NaN mean) without classes.
    const double denominator = index_targets ? checked.weight_sum : (classes > 0 ? double(positions) : 0.0);

    // The gradient's per-position factor: grad_output (none), 1 (sum) or 1/denominator (mean).
    const T constant_scale =
        call.grad_output_scalar * (call.reduction == Reduction::mean ? T(1.0 / denominator) : T(1));
    const T* scale = grad_output ? grad_output : &constant_scale;
    const bool scale_varies = grad_output != nullptr;

    const CrossEntropyKernels<S>& k = active_kernels().kernels<S>().cross_entropy;
    const S* x = call.input;
    const S* second = call.probabilities;
    const int64_t* target = checked.target;
    S* grad = call.grad;

    auto run_rows = [&](const S* xp, int64_t xs, const S* tp_or_qp, const int64_t* yp, int64_t ts, T* lp, int64_t ls,
                        S* gp, int64_t gs, const T* sp, int64_t ss, int64_t rows) {
        if (with_grad) {
            if (index_targets) k.index_rows_grad(xp, xs, yp, ts, sp, ss, lp, ls, gp, gs, rows, params);
            else k.probability_rows_grad(xp, xs, tp_or_qp, ts, sp, ss, lp, ls, gp, gs, rows, params);
        } else {
            if (index_targets) k.index_rows(xp, xs, yp, ts, lp, ls, rows, params);
            else k.probability_rows(xp, xs, tp_or_qp, ts, lp, ls, rows, params);
        }
    };

    if (positions > 0 && classes > 0) {
        parallel_over_positions(
            g,
            [&](const int64_t* at, const int64_t* step, int64_t rows) {
                run_rows(x + at[0], step[0], index_targets ? nullptr : second + at[2], index_targets ? target + at[2] : nullptr,
                         step[2], loss + at[1], step[1], with_grad ? grad + at[3] : nullptr, with_grad ? step[3] : 0,
                         scale_varies ? scale + at[4] : scale, scale_varies ? step[4] : 0, rows);
            },
            [&](const int64_t* at, int64_t columns) {
                const T* sp = scale_varies ? scale + at[4] : scale;
                const int64_t ss = scale_varies ? g.column_stride[4] : 0;
                if (with_grad) {
                    if (index_targets) {
                        k.index_columns_grad(x + at[0], g.class_stride[0], target + at[2], g.column_stride[2], sp, ss,
                                             loss + at[1], g.column_stride[1], grad + at[3], g.class_stride[3],
                                             columns, params);
                    } else {
                        k.probability_columns_grad(x + at[0], g.class_stride[0], second + at[2], g.class_stride[2], sp,
                                                   ss, loss + at[1], g.column_stride[1], grad + at[3],
                                                   g.class_stride[3], columns, params);
                    }
                } else if (index_targets) {
                    k.index_columns(x + at[0], g.class_stride[0], target + at[2], g.column_stride[2], loss + at[1],
                                    g.column_stride[1], columns, params);
                } else {
                    k.probability_columns(x + at[0], g.class_stride[0], second + at[2], g.class_stride[2],
                                          loss + at[1], g.column_stride[1], columns, params);
                }
            },
            [&](int64_t begin, int64_t end) {
                // Neither layout fits: gather each row (and its probabilities) contiguously, and
                // scatter the gradient row back.
                std::vector<S> row = scratch_vector<S>(classes, "a staged row");
                std::vector<S> q_row = scratch_vector<S>(index_targets ? 0 : classes, "a staged target row");
                int64_t at[kMaxOperands];
                for (int64_t i = begin; i < end; ++i) {
                    g.outer_offsets(i, at);
                    gather_row(x + at[0], g.class_stride[0], classes, row.data());
                    if (!index_targets) gather_row(second + at[2], g.class_stride[2], classes, q_row.data());
                    run_rows(row.data(), classes, q_row.data(), index_targets ? target + at[2] : nullptr, 0, loss + at[1],
                             0, row.data(), classes, scale_varies ? scale + at[4] : scale, 0, 1);
                    if (with_grad) {
                        S* out = grad + at[3];
                        for (int64_t c = 0; c < classes; ++c) out[c * g.class_stride[3]] = row[size_t(c)];
                    }
                }
            });
    }

    if (positions > 0 && classes == 0 && call.reduction == Reduction::none) {
        // No classes: each position's loss is an empty sum (index targets get here only if every
        // one is ignore_index). The caller's array is uninitialised memory, so it must be written.
        for_each_position(g, [&](const int64_t* at) { loss[at[1]] = T(0); });
    }

    return losses.finish(denominator);
}

template <class S>
double nll_loss_forward(const ClassificationLossCall<S>& call) {
    using T = compute_t<S>;
    const int64_t classes = call.shape[size_t(call.axis)];
    std::vector<T> weight_holder;
    const T* weight = contiguous_in_compute_type(call.weight, classes, weight_holder);
    const PositionLosses<S> losses(call);
    T* loss = losses.values();
    // Checked before anything is written; copied when a gradient is written (grad_out may share the
    // targets' memory). The loss-only visit reads the caller's targets and checks each one again.
    const CheckedTargets checked = checked_class_targets(call.target, call.target_strides, call.shape, call.axis,
                                                         call.ignore_index, weight, call.grad != nullptr);
    const double denominator = checked.weight_sum;
    // Operands: 0 input, 1 target, 2 loss, 3 gradient, 4 grad_output; unused ones borrow the
    // target's strides.
    const auto& unused = checked.strides;
    const AxisGeometry g = make_axis_geometry(
        call.shape, call.axis,
        {call.input_strides, checked.strides, losses.strides(), call.grad ? call.grad_strides : call.input_strides,
         call.grad_output ? call.grad_output_strides : unused},
        {OperandRole::full, OperandRole::reduced, OperandRole::reduced, OperandRole::full, OperandRole::reduced});
    const T constant_scale =
        call.grad_output_scalar * (call.reduction == Reduction::mean ? T(1.0 / denominator) : T(1));
    const int64_t class_stride = g.class_stride[0], grad_class_stride = g.class_stride[3];

    // One gather per position: loss = -w_y x_y (0 where ignored: that logit is not read, so NaN or
    // inf there cannot leak), and with a gradient the row -scale w_y at the target and 0
    // elsewhere. Everything is captured by value so that the loop keeps it in registers (by
    // reference, every position reloaded every pointer), and the loss-only visit has nothing else
    // in its loop: on large inputs every target logit is a cache miss, and the fewer instructions
    // per position, the more misses the core keeps in flight.
    // A target out of range here was changed by another thread after the check: it is not used,
    // and the call raises for it afterwards.
    TargetChangedDuringCall changed;
    auto position_loss = [input = call.input, target = checked.target, ignore_index = call.ignore_index, weight, loss,
                          class_stride, classes, changed = &changed](const int64_t* at) {
        const int64_t y = __atomic_load_n(target + at[1], __ATOMIC_RELAXED);  // (see checked_class_targets)
        const bool used = y != ignore_index && static_cast<uint64_t>(y) < static_cast<uint64_t>(classes);
        loss[at[2]] = used ? -(weight ? weight[y] : T(1)) * T(input[at[0] + y * class_stride]) : T(0);
        if (!used && y != ignore_index) changed->note(y);
    };
    auto position_with_grad = [position_loss, target = checked.target, ignore_index = call.ignore_index, weight,
                               grad = call.grad, grad_output = call.grad_output, constant_scale, grad_class_stride,
                               classes](const int64_t* at) {
        position_loss(at);  // reads the logit before its gradient row (which may be the input) is written
        const int64_t y = target[at[1]];
        S* row = grad + at[3];
        for (int64_t c = 0; c < classes; ++c) row[c * grad_class_stride] = S(T(0));
        if (y != ignore_index) {
            const T scale = grad_output ? T(grad_output[at[4]]) : constant_scale;
            row[y * grad_class_stride] = S(-scale * (weight ? weight[y] : T(1)));
        }
    };
    // Each position is one load from anywhere in the input, or a whole gradient row: a thread's
    // share must be worth a parallel region.
    constexpr int64_t kGatherWork = 64;
    if (call.grad) {
        parallel_for_each_position(g, std::max<int64_t>(classes, kGatherWork), position_with_grad);
    } else {
        parallel_for_each_position(g, kGatherWork, position_loss);
    }
    changed.raise_if_noted();
    return losses.finish(denominator);
}

#define FASTLOSS_INSTANTIATE(S)                                                   \
    template double cross_entropy_forward<S>(const ClassificationLossCall<S>&); \
    template double nll_loss_forward<S>(const ClassificationLossCall<S>&);
FASTLOSS_FOR_EACH_STORAGE_TYPE(FASTLOSS_INSTANTIATE)
#undef FASTLOSS_INSTANTIATE

}  // namespace fastloss
