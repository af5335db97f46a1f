// _vector_exp / _vector_log / _vector_log1p / _vector_log1p_unit / _vector_tanh: the ISA's elementwise math, for the accuracy tests.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/array_checks.hpp"
#include "ops/vector_math_ops.hpp"

namespace fastloss::bindings {

namespace {

enum class MathFunction { exp, log, log1p, log1p_unit, tanh };

template <class T>
void apply(MathFunction f, const T* x, T* y, int64_t n) {
    if (f == MathFunction::exp) vector_exp(x, y, n);
    else if (f == MathFunction::log) vector_log(x, y, n);
    else if (f == MathFunction::log1p) vector_log1p(x, y, n);
    else if (f == MathFunction::log1p_unit) vector_log1p_unit(x, y, n);
    else vector_tanh(x, y, n);
}

template <MathFunction F>
void elementwise_binding(const py::array& x, py::array& out) {
    const FloatType type = float_type(x, "x");
    if (type != FloatType::f32 && type != FloatType::f64) throw py::type_error("x must be a float32 or float64 array");
    check_same_type(x, out, "x", "out");
    check_writeable(out, "out");
    const auto c_contiguous = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_;
    if (!(x.flags() & c_contiguous) || !(out.flags() & c_contiguous) || x.size() != out.size()) {
        throw std::invalid_argument("x and out must be C-contiguous arrays of the same size");
    }
    const int64_t n = x.size();
    const void* xp = x.data();
    void* op = out.mutable_data();
    py::gil_scoped_release nogil;
    if (type == FloatType::f32) {
        apply(F, static_cast<const float*>(xp), static_cast<float*>(op), n);
    } else {
        apply(F, static_cast<const double*>(xp), static_cast<double*>(op), n);
    }
}

}  // namespace

void register_vector_math(py::module_& m) {
    m.def("_vector_exp", &elementwise_binding<MathFunction::exp>, py::arg("x").noconvert(),
          py::arg("out").noconvert());
    m.def("_vector_log", &elementwise_binding<MathFunction::log>, py::arg("x").noconvert(),
          py::arg("out").noconvert());
    m.def("_vector_log1p", &elementwise_binding<MathFunction::log1p>, py::arg("x").noconvert(),
          py::arg("out").noconvert());
    m.def("_vector_log1p_unit", &elementwise_binding<MathFunction::log1p_unit>, py::arg("x").noconvert(),
          py::arg("out").noconvert());
    m.def("_vector_tanh", &elementwise_binding<MathFunction::tanh>, py::arg("x").noconvert(),
          py::arg("out").noconvert());
}

}  // namespace fastloss::bindings
