#include "ops/cross_entropy_ops.hpp"

#include <algorithm>
#include <atomic>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "fastloss/dispatch.hpp"
#include "fastloss/parallel.hpp"
#include "fastloss/scratch.hpp"
#include "ops/axis_geometry.hpp"
#include "ops/class_targets.hpp"
#include "ops/cross_entropy_operands.hpp"
#include "ops/loss_vocabulary.hpp"
#include "ops/position_loops.hpp"
#include "ops/softcapped_rows.hpp"
#include "ops/streaming_stores.hpp"

namespace fastloss {
namespace {

// Where the per-position losses go: the caller's array for reduction 'none' when it holds T,
// else a scratch array in position order (converted to S for 'none', summed in order otherwise:
// the sum is the same for any number of threads). `with_lse`: the log-sum-exps go to a second
// scratch array beside them (the losses then always to scratch, so both have one layout).
template <class S>
class PositionLosses {
public:
    using T = compute_t<S>;
    static constexpr bool kInCallerArray = std::is_same_v<S, T>;

    PositionLosses(const ClassificationLossCall<S>& call, bool with_lse) : call_(call), strides_(call.loss_strides) {
        const int64_t positions = position_count(call.shape, call.axis);
        if constexpr (kInCallerArray) values_ = call.loss;
        if (call.reduction != Reduction::none || !kInCallerArray || with_lse) {
            scratch_ = scratch_vector<T>(positions, "per-position losses");
            values_ = scratch_.data();
            strides_ = position_strides(call.shape, call.axis);
        }
        if (with_lse) lse_ = scratch_vector<T>(positions, "per-position log-sum-exps");
    }
    T* values() const { return values_; }
    T* lse() { return lse_.empty() ? nullptr : lse_.data(); }
    const Extents& strides() const { return strides_; }

    // z-loss, Liger's: z lse^2 at each position where `counts(i)` (a non-ignored target), added to
    // that position's loss for 'none'; otherwise summed and, for 'mean', divided by the number of
    // such positions -- not by the weights that divide the cross-entropy. Returns the reduced term.
    template <class Counts>
    double add_z_loss(double z, Counts&& counts) {
        const T zt = T(z);
        double total = 0.0;
        int64_t count = 0;
        for (size_t i = 0; i < lse_.size(); ++i) {
            if (!counts(int64_t(i))) continue;
            const T term = zt * lse_[i] * lse_[i];
            if (call_.reduction == Reduction::none) values_[i] += term; else total += double(term);
            ++count;
        }
        return call_.reduction == Reduction::mean ? total / double(count) : total;
    }

    // The reduced loss (0 for 'none', whose values are now in the caller's array), plus a reduced
    // z-loss; the log-sum-exps go to the caller's lse array if there is one.
    double finish(double denominator, double z_loss_term = 0.0) const {
        if (call_.lse) store_positions(lse_.data(), call_.lse, call_.lse_strides, call_.shape, call_.axis);
        if (call_.reduction == Reduction::none) {
            if (!scratch_.empty()) store_positions(values_, call_.loss, call_.loss_strides, call_.shape, call_.axis);
            return 0.0;
        }
        const double total = sum_in_order(scratch_);
        return (call_.reduction == Reduction::sum ? total : total / denominator) + z_loss_term;
    }

private:
    const ClassificationLossCall<S>& call_;
    T* values_ = nullptr;
    Extents strides_;
    std::vector<T> scratch_;
    std::vector<T> lse_;
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

// Logit soft-capping of index targets: the capped kernels of T (cross_entropy_softcap.cpp) cap
// each row in registers, on the caller's rows where they are contiguous rows of T, else on a row
// gathered or widened into a buffer of T (and the gradient formed in one and scattered or
// narrowed back).
template <class S>
void capped_index_positions(const AxisGeometry& g, const ClassificationLossCall<S>& call,
                            const CrossEntropyParams<compute_t<S>>& params, const CrossEntropyOperands<S>& operands) {
    using T = compute_t<S>;
    using Slot = CrossEntropySlot;
    const int64_t classes = g.classes;
    const bool with_grad = operands.grad != nullptr;
    const CrossEntropyKernels<T>& k = active_kernels().kernels<T>().cross_entropy;
    const auto kernel = with_grad ? k.capped_index_rows_grad : k.capped_index_rows;
    CrossEntropyParams<T> capped = params;
    capped.softcap = T(call.softcap);
    const int64_t x_stride = g.class_stride[Slot::input], grad_stride = g.class_stride[Slot::grad];
    const bool stages_x = converts_row<S>(x_stride), stages_grad = with_grad && converts_row<S>(grad_stride);
    parallel_for(g.outer_count(), classes * g.columns, [&](int64_t begin, int64_t end) {
        // Written whole before they are read: left uninitialised (see SoftcappedRow).
        const std::unique_ptr<T[]> x_row = stages_x ? uninitialised_scratch<T>(classes, "a staged row") : nullptr;
        const std::unique_ptr<T[]> grad_row =
            stages_grad ? uninitialised_scratch<T>(classes, "a staged gradient row") : nullptr;
        visit_positions(g, begin, end, [&](const int64_t* at) {
            CrossEntropyBlock<T> b;
            b.input = row_in_compute_type(operands.logits + at[Slot::input], x_stride, classes, x_row.get());
            b.target = operands.target + at[Slot::target];
            b.loss = operands.losses + at[Slot::loss];
            if (operands.lse) b.lse = operands.lse + at[Slot::loss];
            b.count = 1;
            S* grad = with_grad ? operands.grad + at[Slot::grad] : nullptr;
            if (with_grad) {
                if constexpr (std::is_same_v<S, T>) b.grad = stages_grad ? grad_row.get() : grad;
                else b.grad = grad_row.get();
                b.scale = operands.scale_varies ? operands.scale + at[Slot::scale] : operands.scale;
            }
            kernel(b, capped);
            if (stages_grad) {
                for (int64_t c = 0; c < classes; ++c) grad[c * grad_stride] = S(grad_row[c]);
            }
        });
    });
}

// Logit soft-capping (softcapped_rows.hpp): each position's row is capped into a buffer of T, the
// plain row kernels of T run on it (the loss, the lse, and the gradient with respect to x' formed
// in place), and that gradient is chained through the tanh into the caller's layout.
template <class S>
void softcapped_positions(const AxisGeometry& g, const ClassificationLossCall<S>& call,
                          const CrossEntropyParams<compute_t<S>>& params, const CrossEntropyOperands<S>& operands) {
    using T = compute_t<S>;
    using Slot = CrossEntropySlot;
    const int64_t classes = g.classes;
    const bool with_grad = operands.grad != nullptr, index_targets = operands.target != nullptr;
    const CrossEntropyKernels<T>& k = active_kernels().kernels<T>().cross_entropy;
    const auto kernel = with_grad ? (index_targets ? k.index_rows_grad : k.probability_rows_grad)
                                  : (index_targets ? k.index_rows : k.probability_rows);
    const int64_t x_stride = g.class_stride[Slot::input], q_stride = g.class_stride[Slot::target];
    const int64_t grad_stride = g.class_stride[Slot::grad];
    const bool strided = x_stride != 1 || (with_grad && grad_stride != 1);
    const bool converts_q = !index_targets && converts_row<S>(q_stride);
    if (index_targets) {
        capped_index_positions(g, call, params, operands);
        return;
    }
    parallel_for(g.outer_count(), classes * g.columns, [&](int64_t begin, int64_t end) {
        SoftcappedRow<S> row(classes, T(call.softcap), with_grad, strided);
        std::vector<T> q_row = scratch_vector<T>(converts_q ? classes : 0, "a staged target row");
        visit_positions(g, begin, end, [&](const int64_t* at) {
            kernel(capped_position_block(operands, row, g, at, q_row.data()), params);
            if (with_grad) row.chain_into(operands.grad + at[Slot::grad], grad_stride);
        });
    });
}

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
    const Extents& grad_output_strides = small.grad_output_strides;

    const bool z_loss = call.z_loss != 0.0;
    PositionLosses<S> losses(call, call.lse != nullptr || z_loss);
    T* loss = losses.values();
    const Extents& loss_strides = losses.strides();

    CrossEntropyParams<T> params = cross_entropy_params(call, weight);

    // Every target is checked (and copied) before anything is computed or written.
    CheckedTargets checked;
    if (index_targets) {
        checked = checked_class_targets(call.target, call.target_strides, call.shape, call.axis, call.ignore_index,
                                        weight);
    }
    // The positions that carry a z-loss: the non-ignored ones (the copied targets are in position order).
    auto counts = [&](int64_t i) { return !index_targets || checked.target[i] != call.ignore_index; };
    using Slot = CrossEntropySlot;
    const GeometryOperands operand_strides = cross_entropy_geometry_operands(
        call.input_strides, loss_strides, index_targets ? checked.strides : call.probability_strides, !index_targets,
        with_grad ? &call.grad_strides : nullptr, grad_output ? &grad_output_strides : nullptr);
    const AxisGeometry g = make_axis_geometry(call.shape, call.axis, operand_strides.strides, operand_strides.roles);
    // Probability targets: PyTorch divides by numel / C, which is 0 / 0 (a NaN mean) without classes.
    const double denominator = index_targets ? checked.weight_sum : (classes > 0 ? double(positions) : 0.0);

    // The gradient's per-position factor: grad_output (none), 1 (sum) or 1/denominator (mean).
    const T constant_scale =
        call.grad_output_scalar * (call.reduction == Reduction::mean ? T(1.0 / denominator) : T(1));
    if (z_loss && with_grad) {
        // The kernels scale each position's gradient by its cross-entropy factor g; the z-loss's
        // factor is g too, except under mean, whose z-loss divides by the count of non-ignored
        // positions rather than by their weights: there it is g * denominator / count.
        const int64_t count = index_targets ? checked.counted : positions;
        const double ratio = call.reduction == Reduction::mean ? denominator / double(count) : 1.0;
        params.z_loss_grad = T(2.0 * call.z_loss * ratio);
    }
    const CrossEntropyOperands<S> operands(call.input, checked.target, call.probabilities, loss, call.grad, grad_output,
                                           &constant_scale, losses.lse());

    const CrossEntropyKernels<S>& k = active_kernels().kernels<S>().cross_entropy;
    using Kernel = typename CrossEntropyKernels<S>::Kernel;
    const Kernel rows_kernel = with_grad ? (index_targets ? k.index_rows_grad : k.probability_rows_grad)
                                         : (index_targets ? k.index_rows : k.probability_rows);
    const Kernel columns_kernel = with_grad ? (index_targets ? k.index_columns_grad : k.probability_columns_grad)
                                            : (index_targets ? k.index_columns : k.probability_columns);
    if (positions > 0 && classes > 0 && call.softcap > 0.0) {
        softcapped_positions(g, call, params, operands);
    } else if (positions > 0 && classes > 0) {
        // Staged rows write their gradient into a scratch row first, which must stay in cache.
        CrossEntropyParams<T> block_params = params;
        block_params.stream_grad = with_grad && index_targets && g.layout != AxisGeometry::Layout::staged &&
                                   count_product(positions, classes) >= streaming_store_min_bytes() / int64_t(sizeof(S));
        parallel_over_positions(
            g, int64_t(sizeof(S)),
            [&](const int64_t* at, const int64_t* step, int64_t rows) {
                rows_kernel(operands.block_at(at, step, step, rows), block_params);
            },
            [&](const int64_t* at, int64_t columns) {
                columns_kernel(operands.block_at(at, g.class_stride.data(), g.column_stride.data(), columns),
                               block_params);
            },
            [&](int64_t begin, int64_t end) {
                // Neither layout fits: each row (and its probabilities) is gathered contiguously,
                // and its gradient row scattered back.
                std::vector<S> row = scratch_vector<S>(classes, "a staged row");
                std::vector<S> q_row = scratch_vector<S>(index_targets ? 0 : classes, "a staged target row");
                int64_t at[kMaxOperands];
                for (int64_t i = begin; i < end; ++i) {
                    g.outer_offsets(i, at);
                    rows_kernel(operands.staged_block_at(g, at, row.data(), q_row.data()), params);
                    if (with_grad) operands.scatter_grad(g, at, row.data());
                }
            });
    }

    if (positions > 0 && classes == 0 && call.reduction == Reduction::none) {
        // No classes: each position's loss is an empty sum (index targets get here only if every
        // one is ignore_index). The caller's array is uninitialised memory, so it must be written.
        for_each_position(g, [&](const int64_t* at) { loss[at[Slot::loss]] = T(0); });
    }
    if (classes == 0 && losses.lse()) {  // an empty row's log-sum-exp
        std::fill(losses.lse(), losses.lse() + positions, -std::numeric_limits<T>::infinity());
    }

    return losses.finish(denominator, z_loss ? losses.add_z_loss(call.z_loss, counts) : 0.0);
}

template <class S>
double nll_loss_forward(const ClassificationLossCall<S>& call) {
    using T = compute_t<S>;
    const int64_t classes = call.shape[size_t(call.axis)];
    std::vector<T> weight_holder;
    const T* weight = contiguous_in_compute_type(call.weight, classes, weight_holder);
    const PositionLosses<S> losses(call, false);
    T* loss = losses.values();
    // Checked before anything is written; copied when a gradient is written (grad_out may share the
    // targets' memory). The loss-only visit reads the caller's targets and checks each one again.
    const CheckedTargets checked = checked_class_targets(call.target, call.target_strides, call.shape, call.axis,
                                                         call.ignore_index, weight, call.grad != nullptr);
    const double denominator = checked.weight_sum;
    // The operands sit as cross_entropy's, grad_output in the scale's slot.
    using Slot = CrossEntropySlot;
    const GeometryOperands operand_strides =
        cross_entropy_geometry_operands(call.input_strides, losses.strides(), checked.strides, false,
                                        call.grad ? &call.grad_strides : nullptr,
                                        call.grad_output ? &call.grad_output_strides : nullptr);
    const AxisGeometry g = make_axis_geometry(call.shape, call.axis, operand_strides.strides, operand_strides.roles);
    const T constant_scale =
        call.grad_output_scalar * (call.reduction == Reduction::mean ? T(1.0 / denominator) : T(1));
    const int64_t class_stride = g.class_stride[Slot::input], grad_class_stride = g.class_stride[Slot::grad];

    // One gather per position: loss = -w_y x_y (0 where ignored: that logit is not read, so NaN or
    // inf there cannot leak), and with a gradient the row -scale w_y at the target and 0
    // elsewhere. Everything is captured by value so that the loop keeps it in registers (by
    // reference, every position would reload every pointer), and the loss-only visit has nothing else
    // in its loop: on large inputs every target logit is a cache miss, and the fewer instructions
    // per position, the more misses the core keeps in flight.
    // A target out of range here was changed by another thread after the check: it is not used,
    // and the call raises for it afterwards.
    TargetChangedDuringCall changed;
    auto position_loss = [input = call.input, target = checked.target, ignore_index = call.ignore_index, weight, loss,
                          class_stride, classes, changed = &changed](const int64_t* at) {
        const int64_t y = __atomic_load_n(target + at[Slot::target], __ATOMIC_RELAXED);  // (see checked_class_targets)
        const bool used = y != ignore_index && static_cast<uint64_t>(y) < static_cast<uint64_t>(classes);
        loss[at[Slot::loss]] =
            used ? -(weight ? weight[y] : T(1)) * T(input[at[Slot::input] + y * class_stride]) : T(0);
        if (!used && y != ignore_index) changed->note(y);
    };
    auto target_gradient = [target = checked.target, ignore_index = call.ignore_index, weight, grad = call.grad,
                            grad_output = call.grad_output, constant_scale, grad_class_stride](const int64_t* at) {
        const int64_t y = target[at[Slot::target]];
        if (y != ignore_index) {
            const T scale = grad_output ? T(grad_output[at[Slot::scale]]) : constant_scale;
            grad[at[Slot::grad] + y * grad_class_stride] = S(-scale * (weight ? weight[y] : T(1)));
        }
    };
    // A gradient larger than the caches is zeroed with non-temporal stores ([Note: when to stream]):
    // ordinary ones read every line from memory before writing it. Only rows of a kilobyte or
    // more: each row's zeroing ends with a store fence, which a row of a few lines does not repay.
    // The same holds for the columns layout's runs of positions (below).
    constexpr int64_t kMinStreamedRowBytes = 1024;
    const bool large_gradient = call.grad && count_product(g.outer_count() * g.columns, classes) >=
                                                 streaming_store_min_bytes() / int64_t(sizeof(S));
    const bool stream_zeros =
        large_gradient && grad_class_stride == 1 && classes * int64_t(sizeof(S)) >= kMinStreamedRowBytes;
    const bool stream_column_zeros = large_gradient && g.layout == AxisGeometry::Layout::columns &&
                                     g.column_stride[Slot::grad] == 1 &&
                                     g.columns * int64_t(sizeof(S)) >= kMinStreamedRowBytes;
    auto position_with_grad = [position_loss, target_gradient, grad = call.grad, grad_class_stride, classes,
                               stream_zeros](const int64_t* at) {
        position_loss(at);  // reads the logit before its gradient row (which may be the input) is written
        S* row = grad + at[Slot::grad];
        if (stream_zeros) {
            zero_bytes_streamed(row, classes * int64_t(sizeof(S)));
        } else {
            for (int64_t c = 0; c < classes; ++c) row[c * grad_class_stride] = S(T(0));
        }
        target_gradient(at);
    };
    // Each position is one load from anywhere in the input, or a whole gradient row: a thread's
    // share must be worth a parallel region.
    constexpr int64_t kGatherWork = 64;
    if (!call.grad) {
        parallel_for_each_position(g, kGatherWork, position_loss);
    } else if (g.layout != AxisGeometry::Layout::columns) {
        parallel_for_each_position(g, std::max<int64_t>(classes, kGatherWork), position_with_grad);
    } else if (stream_column_zeros) {
        // Columns, a large gradient whose classes each hold a run of every position, a kilobyte
        // or more: every loss first (the gradient may be the input), then the runs zeroed with
        // non-temporal stores, then the targets' entries. (Zeroed a block of positions at a time,
        // as below, each class's piece of the block would end with its own store fence.) Where
        // the runs follow one another, they are zeroed kZeroedBytes at a time, for the same reason.
        parallel_for_each_position(g, kGatherWork, position_loss);
        constexpr int64_t kZeroedBytes = 64 * 1024;
        const int64_t run_bytes = g.columns * int64_t(sizeof(S));
        const int64_t group = grad_class_stride == g.columns ? std::max<int64_t>(1, kZeroedBytes / run_bytes) : 1;
        const int64_t groups = (classes + group - 1) / group;
        parallel_for(g.outer_count() * groups, group * g.columns, [&](int64_t begin, int64_t end) {
            int64_t at[kMaxOperands];
            for (int64_t item = begin; item < end; ++item) {
                g.outer_offsets(item / groups, at);
                const int64_t first = (item % groups) * group, count = std::min(group, classes - first);
                zero_bytes_streamed(call.grad + at[Slot::grad] + first * grad_class_stride, count * run_bytes);
            }
        });
        parallel_for_each_position(g, kGatherWork, target_gradient);
    } else {
        // Columns: a block's gradient is zeroed one class at a time, a contiguous run of positions
        // each (the gradient's column stride is 1), not one strided column per position, which
        // touched a cache line per element. Every loss of the block is read first, as the gradient
        // may be the input.
        parallel_over_positions(
            g, int64_t(sizeof(S)), [](const int64_t*, const int64_t*, int64_t) {},
            [&](const int64_t* offsets, int64_t n) {
                auto for_each_column = [&](auto&& fn) {
                    int64_t at[kMaxOperands] = {};
                    for (int op = 0; op < g.operands; ++op) at[op] = offsets[op];
                    for (int64_t j = 0; j < n; ++j) {
                        fn(static_cast<const int64_t*>(at));
                        for (int op = 0; op < g.operands; ++op) at[op] += g.column_stride[op];
                    }
                };
                for_each_column(position_loss);
                for (int64_t c = 0; c < classes; ++c) {
                    S* run = call.grad + offsets[Slot::grad] + c * grad_class_stride;
                    std::fill(run, run + n, S(T(0)));
                }
                for_each_column(target_gradient);
            },
            [&](int64_t begin, int64_t end) { visit_positions(g, begin, end, position_with_grad); });
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
