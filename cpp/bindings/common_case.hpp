// The common call of a public function: arguments already in the form the kernels take,
// recognised here without converting anything (each argument arrives as a py::handle, so no
// pybind11 conversion can fail over to another overload) and run without the Python layer's
// argument normalisation, which costs microseconds on a small call. A common-case binding returns
// None for any other call (or anything wrong), and the Python function then takes its one general
// path, which also gives every error message. The results are those of the general path bit for
// bit: both end in the same binding functions and kernels.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bindings/array_checks.hpp"

namespace fastloss::bindings {

inline bool is_aligned(const py::array& a) { return (a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) != 0; }

// Exactly numpy.ndarray: subclasses (a masked array, whose mask must not be ignored) take the
// general path, which decides what to do with them.
inline bool is_plain_ndarray(py::handle h) { return Py_TYPE(h.ptr()) == py::detail::npy_api::get().PyArray_Type_; }

// A plain, aligned, C-contiguous float32 or float64 array in native byte order: its type.
inline std::optional<FloatType> plain_float_array(py::handle h) {
    if (!is_plain_ndarray(h)) return std::nullopt;
    const auto a = py::reinterpret_borrow<py::array>(h);
    const py::dtype dt = a.dtype();
    if (dt.kind() != 'f' || (dt.itemsize() != 4 && dt.itemsize() != 8) || !is_native_byte_order(dt) ||
        !is_aligned(a) || !(a.flags() & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_)) {
        return std::nullopt;
    }
    return dt.itemsize() == 4 ? FloatType::f32 : FloatType::f64;
}

// Two plain float arrays of one type and shape (the first one's type).
inline std::optional<FloatType> plain_float_pair(py::handle a, py::handle b) {
    const auto ta = plain_float_array(a), tb = plain_float_array(b);
    if (!ta || ta != tb) return std::nullopt;
    const auto x = py::reinterpret_borrow<py::array>(a), y = py::reinterpret_borrow<py::array>(b);
    if (x.ndim() != y.ndim()) return std::nullopt;
    for (py::ssize_t d = 0; d < x.ndim(); ++d) {
        if (x.shape(d) != y.shape(d)) return std::nullopt;
    }
    return ta;
}

// Options of exactly their default Python type (a subclass, a NumPy scalar: the general path).
inline std::optional<std::string> exact_str(py::handle h) {
    if (!PyUnicode_CheckExact(h.ptr())) return std::nullopt;
    return std::string(py::reinterpret_borrow<py::str>(h));
}

inline std::optional<bool> exact_bool(py::handle h) {
    if (!PyBool_Check(h.ptr())) return std::nullopt;
    return h.ptr() == Py_True;
}

inline std::optional<int64_t> exact_int(py::handle h) {
    if (!PyLong_CheckExact(h.ptr())) return std::nullopt;
    int overflow = 0;
    const long long value = PyLong_AsLongLongAndOverflow(h.ptr(), &overflow);
    if (overflow != 0 || (value == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return std::nullopt;
    }
    return int64_t(value);
}

// A new C-order array of `shape` and a's dtype.
inline py::array new_array(const py::array& a, std::vector<py::ssize_t> shape) {
    return py::array(a.dtype(), std::move(shape));
}

inline std::vector<py::ssize_t> shape_without(const py::array& a, int axis) {
    std::vector<py::ssize_t> shape;
    for (py::ssize_t d = 0; d < a.ndim(); ++d) {
        if (d != axis) shape.push_back(a.shape(d));
    }
    return shape;
}

}  // namespace fastloss::bindings
