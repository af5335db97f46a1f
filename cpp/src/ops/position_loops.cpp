#include "ops/position_loops.hpp"

#include <algorithm>

#include "fastloss/parallel.hpp"

namespace fastloss {

int64_t column_item_positions(int64_t columns, int64_t outer, int64_t element_bytes) {
    // [Note: wide column items]
    constexpr int64_t kLineBytes = 64;
    const int64_t size = std::max<int64_t>(element_bytes, 1);
    const int64_t widest = std::max<int64_t>(kColumnItemBytes / size, 1);
    const int64_t narrowest = std::max<int64_t>(kColumnMinItemBytes / size, 1);
    const int64_t line = std::max<int64_t>(kLineBytes / size, 1);
    // Items of each outer position, so that every thread has one where there are enough positions.
    const int64_t threads = get_num_threads();
    const int64_t pieces = outer >= threads ? 1 : (threads + outer - 1) / outer;
    const int64_t share = (columns + pieces - 1) / pieces;
    const int64_t share_in_lines = (share + line - 1) / line * line;
    return std::clamp(share_in_lines, narrowest, widest);
}

}  // namespace fastloss
