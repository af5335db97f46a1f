// linear_cross_entropy_fold_tile / linear_cross_entropy_tile_gradient: the tile kernels of
// linear_cross_entropy for python/fastloss/_linear_cross_entropy.py, which runs the GEMMs. The
// checks here are memory safety only; the Python layer gives the friendly messages.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <limits>
#include <string>

#include "bindings/array_checks.hpp"
#include "bindings/row_statistics_arrays.hpp"
#include "ops/linear_cross_entropy_ops.hpp"

namespace fastloss::bindings {

namespace {

bool has_flag(const py::array& a, int flag) { return (a.flags() & flag) != 0; }

// The tile: a writeable float32/float64 (rows, columns) array whose rows are contiguous.
FloatType tile_type(const py::array& logits) {
    const FloatType type = float_type(logits, "logits");
    if (type != FloatType::f32 && type != FloatType::f64) throw py::type_error("logits must be float32 or float64");
    if (logits.ndim() != 2 || (logits.shape(1) > 1 && logits.strides(1) != logits.itemsize()) ||
        logits.strides(0) % logits.itemsize() != 0) {
        throw std::invalid_argument("logits must be a 2-D array with contiguous rows, got " + shape_string(logits));
    }
    check_writeable(logits, "logits");
    return type;
}

bool contiguous_and_aligned(const py::array& a) {
    using api = py::detail::npy_api;
    return has_flag(a, api::NPY_ARRAY_C_CONTIGUOUS_) && has_flag(a, api::NPY_ARRAY_ALIGNED_);
}

// A C-contiguous array of the tile's dtype and the given shape, or None (nullptr).
template <class T>
const T* optional_operand(const py::object& a, const py::array& logits, const Extents& shape,
                          const char* name) {
    if (a.is_none()) return nullptr;
    const py::array arr = py::reinterpret_borrow<py::array>(a);
    if (!py::isinstance<py::array>(a)) throw py::type_error(std::string(name) + " must be an array or None");
    check_same_type(logits, arr, "logits", name);
    if (!contiguous_and_aligned(arr) ||
        shape_of(arr) != shape) {
        throw std::invalid_argument(std::string(name) +
                                    " must be a C-contiguous aligned array of the tile's shape, got " +
                                    shape_string(arr));
    }
    return static_cast<const T*>(arr.data());
}

const int64_t* optional_target(const py::object& a, int64_t rows) {
    if (a.is_none()) return nullptr;
    if (!py::isinstance<py::array>(a)) throw py::type_error("target must be an array or None");
    const py::array arr = py::reinterpret_borrow<py::array>(a);
    const py::dtype dt = arr.dtype();
    if (dt.kind() != 'i' || dt.itemsize() != 8 || !is_native_byte_order(dt) ||
        !contiguous_and_aligned(arr) ||
        arr.ndim() != 1 || arr.shape(0) != rows) {
        throw std::invalid_argument("target must be a C-contiguous native int64 array of shape (rows,)");
    }
    return static_cast<const int64_t*>(arr.data());
}

template <class T>
LogitTile<T> make_tile(py::array& logits, int64_t column_begin, const py::object& bias, const py::object& weight,
                       const py::object& target, const py::object& probabilities) {
    LogitTile<T> tile;
    tile.logits = static_cast<T*>(logits.mutable_data());
    tile.rows = logits.shape(0);
    tile.columns = logits.shape(1);
    tile.row_stride = logits.strides(0) / int64_t(sizeof(T));
    tile.column_begin = column_begin;
    tile.bias = optional_operand<T>(bias, logits, {tile.columns}, "bias");
    tile.weight = optional_operand<T>(weight, logits, {tile.columns}, "weight");
    tile.target = optional_target(target, tile.rows);
    tile.probabilities = optional_operand<T>(probabilities, logits, {tile.rows, tile.columns}, "probabilities");
    tile.probability_stride = tile.columns;
    return tile;
}

template <class T>
LinearCrossEntropyParams<T> make_params(int64_t classes, double label_smoothing, bool weighted_logit_sum,
                                        double tile_weight_sum, double softcap) {
    if (classes < 1) throw std::invalid_argument("classes must be positive");
    if (!(softcap >= 0.0 && softcap <= std::numeric_limits<double>::max())) {
        throw std::invalid_argument("softcap must be a finite number >= 0 (0: none)");
    }
    LinearCrossEntropyParams<T> p;
    p.classes = classes;
    p.label_smoothing = T(label_smoothing);
    p.weighted_logit_sum = weighted_logit_sum;
    p.tile_weight_sum = tile_weight_sum;
    p.softcap = T(softcap);
    return p;
}

void fold_tile_binding(py::array& logits, int64_t column_begin, int64_t classes, double label_smoothing,
                       bool weighted_logit_sum, double tile_weight_sum, const py::object& bias,
                       const py::object& weight, const py::object& target, const py::object& probabilities,
                       py::array& statistics, double softcap) {
    const FloatType type = tile_type(logits);
    if (row_statistics_rows(statistics, "statistics") != logits.shape(0) || statistics.ndim() != 2) {
        throw std::invalid_argument("statistics must have shape (rows, 5), got " + shape_string(statistics));
    }
    check_writeable(statistics, "statistics");
    RowStatistics* stats = row_statistics_data(statistics);
    const auto run = [&](auto zero) {
        using T = decltype(zero);
        const LogitTile<T> tile = make_tile<T>(logits, column_begin, bias, weight, target, probabilities);
        const auto params = make_params<T>(classes, label_smoothing, weighted_logit_sum, tile_weight_sum, softcap);
        ReleaseGilIf nogil(tile.rows * tile.columns >= kReleaseGilElements);
        linear_cross_entropy_fold_tile(tile, params, stats);
    };
    if (type == FloatType::f32) run(float{}); else run(double{});
}

void tile_gradient_binding(py::array& logits, int64_t column_begin, int64_t classes, double label_smoothing,
                           const py::object& weight, const py::object& target, const py::object& probabilities,
                           const py::array& factors, double softcap, bool capped) {
    const FloatType type = tile_type(logits);
    check_same_type(logits, factors, "logits", "factors");
    if (!contiguous_and_aligned(factors) ||
        shape_of(factors) != Extents{logits.shape(0), 5}) {
        throw std::invalid_argument("factors must be a C-contiguous aligned array of shape (rows, 5), got " +
                                    shape_string(factors));
    }
    const auto run = [&](auto zero) {
        using T = decltype(zero);
        static_assert(sizeof(LinearGradientRow<T>) == 5 * sizeof(T), "LinearGradientRow must be packed");
        LogitTile<T> tile = make_tile<T>(logits, column_begin, py::none(), weight, target, probabilities);
        tile.capped = capped;
        const auto params = make_params<T>(classes, label_smoothing, false, 0.0, softcap);
        const auto* rows = static_cast<const LinearGradientRow<T>*>(factors.data());
        ReleaseGilIf nogil(tile.rows * tile.columns >= kReleaseGilElements);
        linear_cross_entropy_tile_gradient(tile, params, rows);
    };
    if (type == FloatType::f32) run(float{}); else run(double{});
}

}  // namespace

void register_linear_cross_entropy(py::module_& m) {
    m.def("linear_cross_entropy_fold_tile", &fold_tile_binding, py::arg("logits").noconvert(), py::arg("column_begin"),
          py::arg("classes"), py::arg("label_smoothing"), py::arg("weighted_logit_sum"), py::arg("tile_weight_sum"),
          py::arg("bias"), py::arg("weight"), py::arg("target"), py::arg("probabilities"),
          py::arg("statistics").noconvert(), py::kw_only(), py::arg("softcap") = 0.0,
          "Adds bias to a (rows, columns) tile of logits of classes [column_begin, column_begin + columns) in place, "
          "soft-caps them in place (softcap > 0), and merges each row's statistics of the tile into statistics "
          "(rows, 5).");
    m.def("linear_cross_entropy_tile_gradient", &tile_gradient_binding, py::arg("logits").noconvert(),
          py::arg("column_begin"), py::arg("classes"), py::arg("label_smoothing"), py::arg("weight"),
          py::arg("target"), py::arg("probabilities"), py::arg("factors").noconvert(), py::kw_only(),
          py::arg("softcap") = 0.0, py::arg("capped") = false,
          "Overwrites a tile of logits with the loss's gradient with respect to them, given each row's factors "
          "(lse, a, b_uniform, b_target, correction). softcap > 0: the gradient with respect to the logits before "
          "capping; capped: the tile holds the capped logits already (else they are capped here).");
}

}  // namespace fastloss::bindings
