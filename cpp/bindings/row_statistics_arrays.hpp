// Arrays of mergeable row statistics at the Python boundary: float64 (..., 5), one
// RowStatistics per row (fastloss/row_statistics.hpp).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/array_checks.hpp"
#include "fastloss/row_statistics.hpp"

namespace fastloss::bindings {

// A C-contiguous, aligned, native float64 array of shape (..., kRowStatisticsFields): rows of
// RowStatistics. Returns the number of rows.
inline int64_t row_statistics_rows(const py::array& a, const char* name) {
    const py::dtype dt = a.dtype();
    if (dt.kind() != 'f' || dt.itemsize() != 8 || !is_native_byte_order(dt)) {
        throw py::type_error(std::string(name) + " must be a native float64 array, got dtype " + std::string(py::str(dt)));
    }
    const auto c_contiguous = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_;
    const auto aligned = py::detail::npy_api::NPY_ARRAY_ALIGNED_;
    if (!(a.flags() & c_contiguous) || !(a.flags() & aligned)) {
        throw std::invalid_argument(std::string(name) + " must be C-contiguous and aligned");
    }
    if (a.ndim() < 1 || a.shape(a.ndim() - 1) != kRowStatisticsFields) {
        throw std::invalid_argument(std::string(name) + " must have shape (..., " +
                                    std::to_string(kRowStatisticsFields) + "), got " + shape_string(a));
    }
    return a.size() / kRowStatisticsFields;
}

inline RowStatistics* row_statistics_data(py::array& a) { return static_cast<RowStatistics*>(a.mutable_data()); }

inline const RowStatistics* row_statistics_data(const py::array& a) {
    return static_cast<const RowStatistics*>(a.data());
}

}  // namespace fastloss::bindings
