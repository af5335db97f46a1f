// The outer positions of a geometry (AxisGeometry, BroadcastGeometry): the axes that a kernel call
// does not cover, merged where every operand's strides allow, outermost first, with each operand's
// stride along each. Both geometries are built on it, so positions are counted and located one way.
#pragma once

#include <array>
#include <cstdint>
#include "ops/inline_vector.hpp"

namespace fastloss {

// kMaxOps: the most operands the geometry holds (the width of its stride arrays).
template <int kMaxOps>
struct OuterPositions {
    int operands = 0;
    Extents outer_shape;                         // merged outer axes, outermost first
    InlineVector<std::array<int64_t, kMaxOps>, kMaxDims> outer_strides;  // per outer axis, every operand's stride

    int64_t outer_count() const;
    // Element offset of outer position `index` (row-major over outer_shape) in every operand.
    void outer_offsets(int64_t index, int64_t* offsets) const;
};

// Both members are defined once, in outer_positions.cpp, for the two geometries' kMaxOps. They run
// once per run or block of positions (per position only in the staged layout, where a whole row is
// gathered too), so inlining them into every loop that calls them gains nothing.

}  // namespace fastloss
