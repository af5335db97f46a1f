// What a loss binding returns: the reduced loss as a NumPy scalar of the computation dtype for
// float32 and float64, made directly by PyArray_Scalar (NumPy's np.float32(value) goes through
// its array-creation machinery: a tenth of a small call); a Python float for float16 and
// bfloat16, which python/fastloss/_gradient.py rounds once as NumPy rounds a float64; None for
// reduction 'none', whose losses are in the caller's `out`. With the gradient, a
// fastloss.LossAndGrad made here (loss_and_grad), so the Python wrappers return it as they get it.
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

// LossAndGrad(loss, grad), the NamedTuple of python/fastloss/_gradient.py, built as tuple.__new__
// builds a tuple subclass (tp_alloc, then the items): calling the class from Python runs its
// generated __new__, a Python frame that cost a fifth of a small call. The class is looked up
// once (gil_safe_call_once_and_store: a plain static's lock could deadlock against the GIL) and
// kept for the life of the process.
inline py::object loss_and_grad(py::object loss, py::object grad) {
    PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> loss_and_grad_class;
    const py::object& cls = loss_and_grad_class
                                .call_once_and_store_result([] {
                                    return py::module_::import("fastloss._gradient").attr("LossAndGrad");
                                })
                                .get_stored();
    auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());
    PyObject* result = type->tp_alloc(type, 2);
    if (!result) throw py::error_already_set();
    PyTuple_SET_ITEM(result, 0, loss.release().ptr());
    PyTuple_SET_ITEM(result, 1, grad.release().ptr());
    return py::reinterpret_steal<py::object>(result);
}

}  // namespace fastloss::bindings
