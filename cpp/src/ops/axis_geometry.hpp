// How a reduction over one axis of several strided arrays maps onto the kernels' two layouts.
//
// Any array, any axis: the class axis, the other axes merged where their strides allow it
// (outermost first), and a choice of layout:
//  * rows     every full operand has class stride 1: rows of contiguous classes.
//  * columns  the class axis is strided but another axis is contiguous in every full operand:
//             kernels vectorise across that axis ("positions"), e.g. axis 1 of (N, C, H, W).
//  * staged   neither (transposed views, zero-stride or sliced class axes): each row is gathered
//             into a small scratch buffer, processed by the row kernel, and scattered back.
// No layout copies the array; staging touches one row at a time in cache.
#pragma once

#include <array>
#include <cstdint>

#include "ops/outer_positions.hpp"
#include "ops/inline_vector.hpp"

namespace fastloss {

constexpr int kMaxOperands = 6;

enum class OperandRole {
    full,     // has the class axis (input logits, softmax output, gradient)
    reduced,  // one value per position: its stride along the class axis is ignored (lse output)
};

// The outer positions (operands, outer_shape, outer_strides, outer_count, outer_offsets) are the
// axes other than the class axis and the column axis.
struct AxisGeometry : OuterPositions<kMaxOperands> {
    enum class Layout { rows, columns, staged };

    Layout layout = Layout::rows;
    int64_t classes = 0;
    std::array<int64_t, kMaxOperands> class_stride{};
    int64_t columns = 1;                               // columns layout only
    std::array<int64_t, kMaxOperands> column_stride{};  // columns layout only

    // Innermost outer axis: consecutive outer positions along it are a fixed stride apart.
    int64_t run_length() const { return outer_shape.empty() ? 1 : outer_shape.back(); }
    int64_t run_stride(int op) const { return outer_shape.empty() ? 0 : outer_strides.back()[op]; }
};

// shape: the full shape (with the class axis); strides[k]: operand k's strides in elements, one per
// axis of `shape` (a reduced operand's entry for the class axis is ignored). Operand 0 is the
// primary input; its strides decide the merge order of the outer axes.
AxisGeometry make_axis_geometry(const Extents& shape, int axis,
                                const OperandExtents& strides,
                                const InlineVector<OperandRole, kMaxListedOperands>& roles);

}  // namespace fastloss
