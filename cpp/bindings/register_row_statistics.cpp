// merge_row_statistics: the merge of mergeable row statistics (fastloss/row_statistics.hpp), for
// python/fastloss/_row_statistics.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/row_statistics_arrays.hpp"

namespace fastloss::bindings {

namespace {

void merge_binding(py::array& into, const py::array& piece) {
    const int64_t rows = row_statistics_rows(into, "into");
    row_statistics_rows(piece, "piece");
    check_writeable(into, "into");
    if (into.ndim() != piece.ndim() || shape_of(into) != shape_of(piece)) {
        throw std::invalid_argument("piece must have the shape of into " + shape_string(into) + ", got " +
                                    shape_string(piece));
    }
    RowStatistics* out = row_statistics_data(into);
    const RowStatistics* part = row_statistics_data(piece);
    ReleaseGilIf nogil(rows * kRowStatisticsFields >= kReleaseGilElements);
    merge_row_statistics(out, part, rows);
}

}  // namespace

void register_row_statistics(py::module_& m) {
    m.def("merge_row_statistics", &merge_binding, py::arg("into").noconvert(), py::arg("piece").noconvert(),
          "into = merge(into, piece), row by row, in place: float64 arrays of shape (..., 5) of mergeable softmax "
          "row statistics (max, sum_exp, target_logit, weighted_logit_sum, target_mass).");
}

}  // namespace fastloss::bindings
