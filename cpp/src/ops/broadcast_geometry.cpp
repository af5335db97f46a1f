#include "ops/broadcast_geometry.hpp"

#include <stdexcept>

namespace fastloss {

int64_t BroadcastGeometry::segment(int64_t index, int64_t* offsets) const {
    const int64_t per_row = segments_per_row();
    const int64_t first = (index % per_row) * kElementwiseSegment;
    outer_offsets(index / per_row, offsets);
    for (int op = 0; op < operands; ++op) offsets[op] += first * row_stride[size_t(op)];
    const int64_t left = row_length - first;
    return left < kElementwiseSegment ? left : kElementwiseSegment;
}

BroadcastGeometry make_broadcast_geometry(const Extents& shape,
                                          const OperandExtents& strides) {
    BroadcastGeometry g;
    g.operands = int(strides.size());
    if (g.operands > kMaxBroadcastOperands) throw std::logic_error("too many broadcast operands");
    for (const auto& s : strides) {
        if (s.size() != shape.size()) throw std::logic_error("one stride per axis expected");
    }

    // Merged axes, innermost first: (length, strides).
    Extents lengths;
    InlineVector<std::array<int64_t, kMaxBroadcastOperands>, kMaxDims> merged;
    for (size_t d = shape.size(); d-- > 0;) {
        if (shape[d] == 0) {
            g.empty = true;
            return g;
        }
        if (shape[d] == 1) continue;  // its stride is never used
        std::array<int64_t, kMaxBroadcastOperands> s{};
        for (int op = 0; op < g.operands; ++op) s[size_t(op)] = strides[size_t(op)][d];
        bool mergeable = !lengths.empty();
        for (int op = 0; mergeable && op < g.operands; ++op) {
            mergeable = s[size_t(op)] == merged.back()[size_t(op)] * lengths.back();
        }
        if (mergeable) {
            lengths.back() *= shape[d];  // the inner block's strides stay
        } else {
            lengths.push_back(shape[d]);
            merged.push_back(s);
        }
    }
    if (lengths.empty()) return g;  // a single element: row_length 1, strides unused
    g.row_length = lengths.front();
    g.row_stride = merged.front();
    for (size_t k = lengths.size(); k-- > 1;) {
        g.outer_shape.push_back(lengths[k]);
        g.outer_strides.push_back(merged[k]);
    }
    return g;
}

}  // namespace fastloss
