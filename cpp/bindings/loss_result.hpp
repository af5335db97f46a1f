// What a loss binding returns: the reduced loss as a NumPy scalar of the computation dtype for
// float32 and float64, made directly by PyArray_Scalar (NumPy's np.float32(value) goes through
// its array-creation machinery: a tenth of a small call); a Python float for float16 and
// bfloat16, which python/fastloss/_gradient.py rounds once as NumPy rounds a float64; None for
// reduction 'none', whose losses are in the caller's `out`.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/array_checks.hpp"
#include "ops/loss_vocabulary.hpp"

namespace fastloss::bindings {

inline py::object numpy_scalar(bool single, double value) {
    const auto& api = py::detail::npy_api::get();
    using npy = py::detail::npy_api;
    const float as_float = float(value);
    PyObject* descr = api.PyArray_DescrFromType_(single ? npy::NPY_FLOAT_ : npy::NPY_DOUBLE_);
    if (!descr) throw py::error_already_set();
    void* data = single ? static_cast<void*>(const_cast<float*>(&as_float)) : static_cast<void*>(&value);
    PyObject* scalar = api.PyArray_Scalar_(data, descr, nullptr);
    Py_DECREF(descr);
    if (!scalar) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(scalar);
}

inline py::object loss_result(double value, FloatType type, Reduction reduction) {
    if (reduction == Reduction::none) return py::none();
    if (type == FloatType::f32 || type == FloatType::f64) return numpy_scalar(type == FloatType::f32, value);
    return py::float_(value);
}

}  // namespace fastloss::bindings
