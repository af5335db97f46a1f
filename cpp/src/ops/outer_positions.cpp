#include "ops/outer_positions.hpp"

#include <cstddef>

#include "ops/axis_geometry.hpp"
#include "ops/broadcast_geometry.hpp"

namespace fastloss {

template <int kMaxOps>
int64_t OuterPositions<kMaxOps>::outer_count() const {
    int64_t n = 1;
    for (int64_t s : outer_shape) n *= s;
    return n;
}

template <int kMaxOps>
void OuterPositions<kMaxOps>::outer_offsets(int64_t index, int64_t* offsets) const {
    for (int op = 0; op < operands; ++op) offsets[op] = 0;
    for (std::size_t d = outer_shape.size(); d-- > 0;) {
        const int64_t i = index % outer_shape[d];
        index /= outer_shape[d];
        for (int op = 0; op < operands; ++op) offsets[op] += i * outer_strides[d][op];
    }
}

template struct OuterPositions<kMaxOperands>;
template struct OuterPositions<kMaxBroadcastOperands>;

}  // namespace fastloss
