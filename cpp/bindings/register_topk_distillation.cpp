// topk_distillation: the kernel call of distillation_loss with teacher_topk for
// python/fastloss/_topk_distillation.py, which moves the class axis last, promotes dtypes and
// combines and reduces the per-position terms. The checks here are memory safety only (the
// teacher's indices and the targets are checked in ops/topk_distillation_ops.cpp); the Python layer
// gives the friendly messages.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "bindings/array_checks.hpp"
#include "ops/topk_distillation_ops.hpp"

namespace fastloss::bindings {

namespace {

bool contiguous_and_aligned(const py::array& a) {
    using api = py::detail::npy_api;
    return (a.flags() & api::NPY_ARRAY_C_CONTIGUOUS_) && (a.flags() & api::NPY_ARRAY_ALIGNED_);
}

// A C-contiguous aligned array of `dtype` and `shape`.
void check_dense(const py::array& a, const py::dtype& dtype, const Extents& shape, const char* name) {
    if (!a.dtype().equal(dtype) || !is_native_byte_order(a.dtype()) || !contiguous_and_aligned(a) ||
        shape_of(a) != shape) {
        throw std::invalid_argument(std::string(name) + " must be a C-contiguous aligned " +
                                    std::string(py::str(dtype)) + " array of the expected shape, got " +
                                    std::string(py::str(a.dtype())) + " " + shape_string(a));
    }
}

// An (rows, classes) array whose classes are contiguous; returns its row stride in elements.
int64_t row_stride(const py::array& a, const char* name) {
    if (a.ndim() != 2 || (a.shape(1) > 1 && a.strides(1) != a.itemsize()) || a.strides(0) % a.itemsize() != 0) {
        throw std::invalid_argument(std::string(name) + " must be a 2-D array with contiguous rows, got " +
                                    shape_string(a));
    }
    return a.strides(0) / a.itemsize();
}

template <class S>
void run(const py::array& student, const py::array& indices, const py::array& logprobs, const py::object& target,
         const py::object& weight, py::array& hard, py::array& soft, py::array& lse, const py::object& grad,
         const py::object& scale, TopkDistillationCall<S> call) {
    using T = compute_t<S>;
    const py::dtype compute = py::dtype::of<T>();
    const py::dtype index_type = py::dtype::of<int64_t>();
    call.rows = student.shape(0);
    call.classes = student.shape(1);
    call.student_stride = row_stride(student, "student");
    call.student = static_cast<const S*>(student.data());
    if (indices.ndim() != 2) throw std::invalid_argument("indices must be 2-D, got " + shape_string(indices));
    call.k = indices.shape(1);
    if (call.k < 1) throw std::invalid_argument("indices must hold at least one class per row");
    check_dense(indices, index_type, {call.rows, call.k}, "indices");
    check_dense(logprobs, compute, {call.rows, call.k}, "logprobs");
    call.indices = static_cast<const int64_t*>(indices.data());
    call.logprobs = static_cast<const T*>(logprobs.data());
    if (!target.is_none()) {
        const auto t = py::reinterpret_borrow<py::array>(target);
        if (!py::isinstance<py::array>(target)) throw py::type_error("target must be an array or None");
        check_dense(t, index_type, {call.rows}, "target");
        call.target = static_cast<const int64_t*>(t.data());
    }
    if (!weight.is_none()) {
        const auto w = py::reinterpret_borrow<py::array>(weight);
        if (!py::isinstance<py::array>(weight)) throw py::type_error("weight must be an array or None");
        check_dense(w, compute, {call.classes}, "weight");
        call.weight = static_cast<const T*>(w.data());
    }
    for (py::array* out : {&hard, &soft, &lse}) {
        check_dense(*out, compute, {call.rows}, "hard, soft and lse");
        check_writeable(*out, "hard, soft and lse");
    }
    call.hard = static_cast<T*>(hard.mutable_data());
    call.soft = static_cast<T*>(soft.mutable_data());
    call.lse = static_cast<T*>(lse.mutable_data());
    py::array g = no_array();
    if (!grad.is_none()) {
        if (!py::isinstance<py::array>(grad) || scale.is_none() || !py::isinstance<py::array>(scale)) {
            throw py::type_error("grad and scale must be arrays");
        }
        g = py::reinterpret_borrow<py::array>(grad);
        check_same_type(student, g, "student", "grad");
        if (shape_of(g) != shape_of(student)) throw std::invalid_argument("grad must have the student's shape");
        check_writeable(g, "grad");
        call.grad_stride = row_stride(g, "grad");
        call.grad = static_cast<S*>(g.mutable_data());
        const auto sc = py::reinterpret_borrow<py::array>(scale);
        check_dense(sc, compute, {call.rows}, "scale");
        call.scale = static_cast<const T*>(sc.data());
    }
    ReleaseGilIf nogil(call.rows * call.classes >= kReleaseGilElements);
    topk_distillation(call);
}

void topk_distillation_binding(const py::array& student, const py::array& indices, const py::array& logprobs,
                               const py::object& target, const py::object& weight, py::array& hard, py::array& soft,
                               py::array& lse, const py::object& grad, const py::object& scale, int64_t ignore_index,
                               double label_smoothing, double temperature, int divergence, double beta, int residual,
                               double softcap, double hard_grad, double soft_grad, double z_loss_grad) {
    const FloatType type = float_type(student, "student");
    if (!(temperature > 0.0 && std::isfinite(temperature))) throw std::invalid_argument("temperature must be > 0");
    if (!(beta >= 0.0 && beta <= 1.0)) throw std::invalid_argument("beta must be in [0, 1]");
    if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0)) {
        throw std::invalid_argument("label_smoothing must be in [0, 1]");
    }
    if (!(softcap >= 0.0 && std::isfinite(softcap))) throw std::invalid_argument("softcap must be finite, >= 0");
    if (divergence < 0 || divergence > int(Divergence::jsd)) throw std::invalid_argument("unknown divergence");
    if (residual < 0 || residual > int(TopkResidual::tail)) throw std::invalid_argument("unknown residual");
    with_storage_type(type, [&](auto zero) {
        using S = decltype(zero);
        TopkDistillationCall<S> call;
        call.ignore_index = ignore_index;
        call.label_smoothing = label_smoothing;
        call.temperature = temperature;
        call.divergence = Divergence(divergence);
        call.beta = beta;
        call.residual = TopkResidual(residual);
        call.softcap = softcap;
        call.hard_grad = hard_grad;
        call.soft_grad = soft_grad;
        call.z_loss_grad = z_loss_grad;
        run<S>(student, indices, logprobs, target, weight, hard, soft, lse, grad, scale, call);
    });
}

}  // namespace

void register_topk_distillation(py::module_& m) {
    m.def("topk_distillation", &topk_distillation_binding, py::arg("student").noconvert(),
          py::arg("indices").noconvert(), py::arg("logprobs").noconvert(), py::arg("target"), py::arg("weight"),
          py::arg("hard").noconvert(), py::arg("soft").noconvert(), py::arg("lse").noconvert(), py::arg("grad"),
          py::arg("scale"), py::kw_only(), py::arg("ignore_index"), py::arg("label_smoothing"),
          py::arg("temperature"), py::arg("divergence"), py::arg("beta"), py::arg("residual"), py::arg("softcap"),
          py::arg("hard_grad"), py::arg("soft_grad"), py::arg("z_loss_grad"),
          "Distillation from a top-k teacher over (rows, classes) student logits: writes each row's cross-entropy "
          "(hard), divergence (soft) and log-sum-exp, and with grad the gradient of the rows' share of the loss "
          "(scale * (hard_grad * dCE + soft_grad * T dD)).");
}

}  // namespace fastloss::bindings
