// How an elementwise operation over several broadcast operands (one shape, each operand with its
// own element strides, 0 along broadcast axes) is cut into row segments for the kernels.
//
// Axes of length 1 are dropped and adjacent axes merged wherever every operand's strides allow
// (a C-contiguous array becomes one row; a (C,) weight on (N, C) keeps rows of C with weight
// stride 1, input stride 1). The innermost merged axis is the row; the rest are outer positions.
// Rows are then split into segments of at most kElementwiseSegment elements, so that one long row
// (the whole of a contiguous array) still parallelises, and work is cut identically for any
// number of threads ([Note: fixed chunking] in fastloss/parallel.hpp).
#pragma once

#include <array>
#include <cstdint>

#include "ops/outer_positions.hpp"
#include "ops/inline_vector.hpp"

namespace fastloss {

constexpr int kMaxBroadcastOperands = 7;  // the elementwise losses with their gradient
// Elements per segment: long enough to amortise the per-segment offset arithmetic, short enough
// that a chunk of segments is a few tens of microseconds of work.
constexpr int64_t kElementwiseSegment = 8192;

// The outer positions (operands, outer_shape, outer_strides, outer_count, outer_offsets) are the
// merged axes other than the row.
struct BroadcastGeometry : OuterPositions<kMaxBroadcastOperands> {
    bool empty = false;  // some axis has length 0: nothing to do
    int64_t row_length = 1;
    std::array<int64_t, kMaxBroadcastOperands> row_stride{};

    int64_t segments_per_row() const { return (row_length + kElementwiseSegment - 1) / kElementwiseSegment; }
    int64_t segment_count() const { return empty ? 0 : outer_count() * segments_per_row(); }
    // Elements of the longest segment: the work per item handed to parallel_for.
    int64_t segment_work() const { return row_length < kElementwiseSegment ? row_length : kElementwiseSegment; }
    // Segment `index`: its offset in every operand and its length.
    int64_t segment(int64_t index, int64_t* offsets) const;
};

// shape: the common (broadcast) shape; strides[k]: operand k's strides in elements, one per axis
// (an absent operand may pass all zeros).
BroadcastGeometry make_broadcast_geometry(const Extents& shape,
                                          const OperandExtents& strides);

}  // namespace fastloss
