// cosine_embedding_loss binding: memory-safety checks, GIL release, run.
// The Python layer (python/fastloss/_cosine_embedding.py) owns semantics, broadcasting and messages.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/array_checks.hpp"
#include "bindings/common_case.hpp"
#include "bindings/loss_result.hpp"
#include "bindings/loss_arguments.hpp"
#include "ops/cosine_embedding_ops.hpp"

namespace fastloss::bindings {

namespace {

template <class T>
double run_cosine_embedding(const py::array& x1, const py::array& x2, const py::array& target, double margin,
                            Reduction reduction, const py::object& out, const py::object& grad,
                            const py::object& grad_output) {
    CosineEmbeddingCall<T> call;
    call.rows = x1.shape(0);
    call.dim = x1.shape(1);
    call.x1 = static_cast<const T*>(x1.data());
    call.x1_row_stride = x1.strides(0) / x1.itemsize();
    call.x1_feature_stride = x1.strides(1) / x1.itemsize();
    call.x2 = static_cast<const T*>(x2.data());
    call.x2_row_stride = x2.strides(0) / x2.itemsize();
    call.x2_feature_stride = x2.strides(1) / x2.itemsize();
    call.target = static_cast<const double*>(target.data());
    call.target_stride = target.strides(0) / target.itemsize();
    call.margin = margin;
    call.reduction = reduction;
    py::array out_array = no_array();
    if (reduction == Reduction::none) {
        if (out.is_none()) throw std::invalid_argument("reduction 'none' needs an output array");
        out_array = out.cast<py::array>();
        check_same_type(x1, out_array, "x1", "out");
        float_type(out_array, "out");
        check_writeable(out_array, "out");
        if (out_array.ndim() != 1 || out_array.shape(0) != call.rows || !is_c_contiguous(out_array)) {
            throw std::invalid_argument("out must be a contiguous array of shape (" + std::to_string(call.rows) +
                                        ",), got " + shape_string(out_array));
        }
        call.loss = static_cast<T*>(out_array.mutable_data());
    }
    py::array grad_array = no_array(), grad_output_array = no_array();
    if (!grad.is_none()) {
        grad_array = grad.cast<py::array>();
        check_same_type(x1, grad_array, "x1", "grad_out");
        float_type(grad_array, "grad_out");  // aligned, native byte order
        check_writeable(grad_array, "grad_out");
        if (shape_of(grad_array) != shape_of(x1)) {
            throw std::invalid_argument("grad_out must have x1's shape " + shape_string(x1) + ", got " +
                                        shape_string(grad_array));
        }
        call.grad = static_cast<T*>(grad_array.mutable_data());
        call.grad_row_stride = grad_array.strides(0) / grad_array.itemsize();
        call.grad_feature_stride = grad_array.strides(1) / grad_array.itemsize();
        if (!grad_output.is_none() && reduction != Reduction::none) {
            call.grad_output_scalar = compute_t<T>(grad_output.cast<double>());
        } else if (!grad_output.is_none()) {
            grad_output_array = grad_output.cast<py::array>();
            check_same_type(x1, grad_output_array, "x1", "grad_output");
            float_type(grad_output_array, "grad_output");
            if (grad_output_array.ndim() != 1 || grad_output_array.shape(0) != call.rows) {
                throw std::invalid_argument("grad_output must have shape (" + std::to_string(call.rows) + ",), got " +
                                            shape_string(grad_output_array));
            }
            call.grad_output = static_cast<const T*>(grad_output_array.data());
            call.grad_output_stride = grad_output_array.strides(0) / grad_output_array.itemsize();
        }
    }
    const ReleaseGilIf nogil(x1.size() >= kReleaseGilElements);
    return cosine_embedding_forward(call);
}

double cosine_embedding_binding(const py::array& x1, const py::array& x2, const py::array& target, double margin,
                                const std::string& reduction, const py::object& out, const py::object& grad,
                                const py::object& grad_output) {
    const FloatType type = float_type(x1, "x1");
    float_type(x2, "x2");
    check_same_type(x1, x2, "x1", "x2");
    if (x1.ndim() != 2 || shape_of(x1) != shape_of(x2)) {
        throw std::invalid_argument("x1 and x2 must be 2-D arrays of one shape, got " + shape_string(x1) + " and " +
                                    shape_string(x2));
    }
    const py::dtype td = target.dtype();
    if (td.kind() != 'f' || td.itemsize() != 8 || !is_native_byte_order(td) ||
        !(target.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) {
        throw py::type_error("target must be an aligned native float64 array, got dtype " + std::string(py::str(td)));
    }
    if (target.ndim() != 1 || target.shape(0) != x1.shape(0)) {
        throw std::invalid_argument("target must have shape (" + std::to_string(x1.shape(0)) + ",), got " +
                                    shape_string(target));
    }
    const Reduction r = parse_reduction(reduction);
    return with_storage_type(type, [&](auto tag) {
        return run_cosine_embedding<decltype(tag)>(x1, x2, target, margin, r, out, grad, grad_output);
    });
}

// The common call (common_case.hpp): (N, D) rows x1 and x2, a plain pair, with an (N,) target of
// int64 or float64 (read as float64, as the general path converts it), a float margin, no
// grad_output or grad_out. The outputs are new C-order arrays, as the general path's.
py::object cosine_embedding_common_case(py::handle x1_arg, py::handle x2_arg, py::handle target_arg,
                                        py::handle margin_arg, py::handle reduction_arg, py::handle return_grad_arg,
                                        py::handle grad_output, py::handle grad_out) {
    if (!grad_output.is_none() || !grad_out.is_none() || !PyFloat_CheckExact(margin_arg.ptr())) return py::none();
    const auto type = plain_float_pair(x1_arg, x2_arg);
    if (!type || !is_plain_ndarray(target_arg)) return py::none();
    const auto reduction = exact_str(reduction_arg);
    const auto return_grad = exact_bool(return_grad_arg);
    if (!reduction || !return_grad) return py::none();
    if (*reduction != "mean" && *reduction != "sum" && (*reduction != "none" || *return_grad)) return py::none();
    const auto x1 = py::reinterpret_borrow<py::array>(x1_arg);
    const auto y = py::reinterpret_borrow<py::array>(target_arg);
    const py::dtype td = y.dtype();
    const bool int64 = td.kind() == 'i' && td.itemsize() == 8;
    const bool float64 = td.kind() == 'f' && td.itemsize() == 8;
    if (x1.ndim() != 2 || y.ndim() != 1 || y.shape(0) != x1.shape(0) || !(int64 || float64) ||
        !is_native_byte_order(td) || !is_aligned(y)) {
        return py::none();
    }
    py::array_t<double> y64(y.shape(0));
    double* to = y64.mutable_data();
    const auto stride = y.strides(0) / y.itemsize();
    for (py::ssize_t i = 0; i < y.shape(0); ++i) {
        to[i] = int64 ? double(static_cast<const int64_t*>(y.data())[i * stride])
                      : static_cast<const double*>(y.data())[i * stride];
    }
    const auto x2 = py::reinterpret_borrow<py::array>(x2_arg);
    const double margin = PyFloat_AS_DOUBLE(margin_arg.ptr());
    if (*reduction == "none") {
        py::array out = new_array(x1, {x1.shape(0)});
        cosine_embedding_binding(x1, x2, y64, margin, *reduction, out, py::none(), py::none());
        return std::move(out);
    }
    // (the general path returns the loss as a float: Python divides a broadcast x1's mean itself)
    const Reduction r = parse_reduction(*reduction);
    if (!*return_grad) {
        const double value = cosine_embedding_binding(x1, x2, y64, margin, *reduction, py::none(), py::none(),
                                                      py::none());
        return loss_result(value, *type, r);
    }
    py::array grad = new_array(x1, {x1.shape(0), x1.shape(1)});
    const double value = cosine_embedding_binding(x1, x2, y64, margin, *reduction, py::none(), grad, py::none());
    return loss_and_grad(loss_result(value, *type, r), std::move(grad));
}

}  // namespace

void register_cosine_embedding(py::module_& m) {
    m.def("cosine_embedding_loss_common_case", &cosine_embedding_common_case, py::arg("x1"), py::arg("x2"),
          py::arg("target"), py::arg("margin"), py::arg("reduction"), py::arg("return_grad"), py::arg("grad_output"),
          py::arg("grad_out"),
          "cosine_embedding_loss's arguments as given: the result of the common call (common_case.hpp); None for "
          "any other.");
    m.def("cosine_embedding_loss", &cosine_embedding_binding, py::arg("x1").noconvert(), py::arg("x2").noconvert(),
          py::arg("target").noconvert(), py::arg("margin"), py::arg("reduction"), py::arg("out"),
          py::arg("grad") = py::none(), py::arg("grad_output") = py::none(),
          "Cosine embedding loss of (N, D) rows with float64 targets (N,); returns the mean/sum, or writes to out; "
          "with grad, also writes the gradient w.r.t. x1 there.");
}

}  // namespace fastloss::bindings
