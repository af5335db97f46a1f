#include "ops/axis_geometry.hpp"

#include <algorithm>
#include <cstdlib>
#include <numeric>
#include <stdexcept>

namespace fastloss {

AxisGeometry make_axis_geometry(const Extents& shape, int axis,
                                const OperandExtents& strides,
                                const InlineVector<OperandRole, kMaxListedOperands>& roles) {
    const int ndim = int(shape.size());
    const int nops = int(strides.size());
    if (nops < 1 || nops > kMaxOperands || int(roles.size()) != nops || axis < 0 || axis >= ndim) {
        throw std::invalid_argument("make_axis_geometry: bad arguments");
    }
    for (const auto& s : strides) {
        if (int(s.size()) != ndim) throw std::invalid_argument("make_axis_geometry: stride rank");
    }

    AxisGeometry g;
    g.operands = nops;
    g.classes = shape[axis];
    for (int op = 0; op < nops; ++op) {
        g.class_stride[op] = roles[op] == OperandRole::full ? strides[op][axis] : 0;
    }

    auto every_full_operand = [&](auto&& pred) {
        for (int op = 0; op < nops; ++op) {
            if (roles[op] == OperandRole::full && !pred(op)) return false;
        }
        return true;
    };

    // Choose the layout.
    int column_axis = -1;
    if (g.classes <= 1 || every_full_operand([&](int op) { return g.class_stride[op] == 1; })) {
        g.layout = AxisGeometry::Layout::rows;
    } else {
        for (int d = ndim - 1; d >= 0; --d) {
            if (d == axis || shape[d] <= 1) continue;
            if (every_full_operand([&](int op) { return strides[op][d] == 1; })) {
                column_axis = d;
                break;
            }
        }
        g.layout = column_axis >= 0 ? AxisGeometry::Layout::columns : AxisGeometry::Layout::staged;
    }
    if (column_axis >= 0) {
        g.columns = shape[column_axis];
        for (int op = 0; op < nops; ++op) g.column_stride[op] = strides[op][column_axis];
    }

    // Outer axes: all others of length > 1, ordered by operand 0's stride (largest first) so
    // that adjacent axes of a contiguous array merge into one.
    InlineVector<int, kMaxDims> outer;
    for (int d = 0; d < ndim; ++d) {
        if (d != axis && d != column_axis && shape[d] > 1) outer.push_back(d);
    }
    std::stable_sort(outer.begin(), outer.end(), [&](int a, int b) {
        return std::llabs(strides[0][a]) > std::llabs(strides[0][b]);
    });
    for (int d : outer) {
        std::array<int64_t, kMaxOperands> st{};
        for (int op = 0; op < nops; ++op) st[op] = strides[op][d];
        if (!g.outer_shape.empty()) {
            // Merge into the previous (outer) axis when every operand steps through both evenly.
            auto& prev = g.outer_strides.back();
            bool mergeable = true;
            for (int op = 0; op < nops; ++op) mergeable &= prev[op] == st[op] * shape[d];
            if (mergeable) {
                g.outer_shape.back() *= shape[d];
                prev = st;
                continue;
            }
        }
        g.outer_shape.push_back(shape[d]);
        g.outer_strides.push_back(st);
    }
    for (int d = 0; d < ndim; ++d) {
        if (d != axis && shape[d] == 0) {  // no positions at all
            g.outer_shape.assign(1, 0);
            g.outer_strides.assign(1, std::array<int64_t, kMaxOperands>{});
        }
    }
    return g;
}

}  // namespace fastloss
