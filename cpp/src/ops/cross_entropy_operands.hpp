// The operands of a cross-entropy term over one class axis (cross_entropy, and the hard term of
// distillation_loss): where they sit in the driver's geometry, and the kernel blocks
// (CrossEntropyBlock) over them for each layout.
#pragma once

#include <cstdint>

#include "fastloss/half.hpp"
#include "fastloss/kernel_table.hpp"

#include "ops/axis_geometry.hpp"
#include "ops/position_loops.hpp"
#include "ops/inline_vector.hpp"

namespace fastloss {

// Where each operand sits in the geometry: its index into the offset and stride arrays. They come
// first, in this order; a driver's own operands follow `count`. `target` holds the index targets
// or the probabilities; nll_loss puts its grad_output in `scale`.
struct CrossEntropySlot {
    enum : int { input, loss, target, grad, scale, count };
};

// The strides and roles of a geometry's operands, for make_axis_geometry.
struct GeometryOperands {
    OperandExtents strides;
    InlineVector<OperandRole, kMaxListedOperands> roles;
};

// The five operands' strides in slot order (full rank; a per-position operand's class-axis entry is
// ignored). `target` holds the probabilities' strides, a full operand, when probability_targets.
// Every call has all five: where there is no gradient or no per-position scale (nullptr), grad
// takes the input's strides and scale the loss's, which leaves the geometry as without them.
inline GeometryOperands cross_entropy_geometry_operands(const Extents& input,
                                                        const Extents& loss,
                                                        const Extents& target, bool probability_targets,
                                                        const Extents* grad,
                                                        const Extents* scale) {
    static_assert(CrossEntropySlot::input == 0 && CrossEntropySlot::loss == 1 && CrossEntropySlot::target == 2 &&
                      CrossEntropySlot::grad == 3 && CrossEntropySlot::scale == 4,
                  "the lists below are in slot order");
    const OperandRole full = OperandRole::full, reduced = OperandRole::reduced;
    return {{input, loss, target, grad ? *grad : input, scale ? *scale : loss},
            {full, reduced, probability_targets ? full : reduced, full, reduced}};
}

template <class S>
struct CrossEntropyOperands {
    using T = compute_t<S>;
    const S* logits;
    const int64_t* target;       // checked index targets, or nullptr for
    const S* probabilities;      // probability targets (the logits' shape)
    T* losses;                   // one per position
    S* grad;                     // nullptr: no gradient
    const T* scale;              // the gradient's factor: grad_output per position, or one for all
    bool scale_varies;
    T* lse;                      // nullptr, or one per position laid out as `losses`

    CrossEntropyOperands(const S* logits, const int64_t* target, const S* probabilities, T* losses, S* grad,
                         const T* grad_output, const T* constant_scale, T* lse = nullptr)
        : logits(logits), target(target), probabilities(probabilities), losses(losses), grad(grad),
          scale(grad_output ? grad_output : constant_scale), scale_varies(grad_output != nullptr), lse(lse) {}

    // The block of `count` positions at offsets `at`: full operands `full_stride` apart (the row
    // stride or the class stride), per-position ones `position_stride` apart.
    CrossEntropyBlock<S> block_at(const int64_t* at, const int64_t* full_stride, const int64_t* position_stride,
                                  int64_t count) const {
        using Slot = CrossEntropySlot;
        CrossEntropyBlock<S> b;
        b.input = logits + at[Slot::input];
        b.input_stride = full_stride[Slot::input];
        if (target) {
            b.target = target + at[Slot::target];
            b.target_stride = position_stride[Slot::target];
        } else {
            b.probabilities = probabilities + at[Slot::target];
            b.probability_stride = full_stride[Slot::target];
        }
        b.loss = losses + at[Slot::loss];
        b.loss_stride = position_stride[Slot::loss];
        if (lse) b.lse = lse + at[Slot::loss];
        if (grad) {
            b.grad = grad + at[Slot::grad];
            b.grad_stride = full_stride[Slot::grad];
            b.scale = scale_varies ? scale + at[Slot::scale] : scale;
            b.scale_stride = scale_varies ? position_stride[Slot::scale] : 0;
        }
        b.count = count;
        return b;
    }

    // The block of the one position at `at` in the staged layout: its logits gathered into `row`
    // (where the gradient row is formed too, see scatter_grad) and its probabilities into `q_row`.
    CrossEntropyBlock<S> staged_block_at(const AxisGeometry& g, const int64_t* at, S* row, S* q_row) const {
        using Slot = CrossEntropySlot;
        const int64_t unused_strides[kMaxOperands] = {};  // a block of one position
        CrossEntropyBlock<S> b = block_at(at, unused_strides, unused_strides, 1);
        gather_row(b.input, g.class_stride[Slot::input], g.classes, row);
        b.input = row;
        b.input_stride = g.classes;
        if (b.probabilities) {
            gather_row(b.probabilities, g.class_stride[Slot::target], g.classes, q_row);
            b.probabilities = q_row;
            b.probability_stride = g.classes;
        }
        if (grad) {
            b.grad = row;
            b.grad_stride = g.classes;
        }
        return b;
    }

    // Copies the gradient row a staged block formed in `row` to its place in grad.
    void scatter_grad(const AxisGeometry& g, const int64_t* at, const S* row) const {
        S* out = grad + at[CrossEntropySlot::grad];
        const int64_t stride = g.class_stride[CrossEntropySlot::grad];
        for (int64_t c = 0; c < g.classes; ++c) out[c * stride] = row[c];
    }
};

}  // namespace fastloss
