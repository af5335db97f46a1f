// Argument helpers shared by the loss bindings: the reduction, and per-position arrays (the
// input's shape without the class axis).
#pragma once

#include <string>
#include <vector>

#include "bindings/array_checks.hpp"
#include "ops/cross_entropy_ops.hpp"

namespace fastloss::bindings {

inline Reduction parse_reduction(const std::string& r) {
    if (r == "none") return Reduction::none;
    if (r == "mean") return Reduction::mean;
    if (r == "sum") return Reduction::sum;
    throw std::invalid_argument("reduction must be 'none', 'mean' or 'sum', got '" + r + "'");
}

// Whether `a` has the per-position shape: x's shape without the class axis.
inline bool has_position_shape(const py::array& a, const py::array& x, int axis) {
    if (a.ndim() != x.ndim() - 1) return false;
    for (py::ssize_t d = 0, k = 0; d < x.ndim(); ++d) {
        if (d == axis) continue;
        if (a.shape(k++) != x.shape(d)) return false;
    }
    return true;
}

// Strides of a per-position array in the full-rank form (0 on the class axis).
inline std::vector<int64_t> full_rank_strides(const py::array& a, int axis, py::ssize_t ndim) {
    std::vector<int64_t> s(size_t(ndim), 0);
    for (py::ssize_t d = 0, k = 0; d < ndim; ++d) {
        if (d == axis) continue;
        s[size_t(d)] = a.strides(k++) / a.itemsize();
    }
    return s;
}

inline bool is_c_contiguous(const py::array& a) {
    return (a.flags() & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_) != 0;
}

}  // namespace fastloss::bindings
