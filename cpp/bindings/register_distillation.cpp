// distillation_loss binding: memory-safety checks, GIL release, run.
// The Python layer (python/fastloss/_distillation.py) owns semantics and friendly messages.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "bindings/array_checks.hpp"
#include "bindings/common_case.hpp"
#include "bindings/loss_arguments.hpp"
#include "bindings/loss_result.hpp"
#include "ops/distillation_ops.hpp"

namespace fastloss::bindings {

namespace {

// The kernel's divergence for a name and beta; the JSD at beta = 0 and 1 is Liger's forward and
// reverse KL (its degenerate 0 is not what anyone asks for), which the kl and reverse_kl kernels
// compute exactly.
Divergence parse_divergence(const std::string& name, double beta) {
    if (!(beta >= 0.0 && beta <= 1.0)) {
        throw std::invalid_argument("beta must be in [0, 1], got " + std::to_string(beta));
    }
    if (name == "kl") return Divergence::kl;
    if (name == "reverse_kl") return Divergence::reverse_kl;
    if (name == "jsd") return beta == 0.0 ? Divergence::kl : beta == 1.0 ? Divergence::reverse_kl : Divergence::jsd;
    throw std::invalid_argument("divergence must be one of 'kl', 'reverse_kl', 'jsd', got '" + name + "'");
}

template <class T>
double run_distillation(const py::array& s, const py::array& t, const py::array& target, const py::object& weight,
                        int64_t ignore_index, double label_smoothing, double temperature, double alpha,
                        Divergence divergence, double beta, double z_loss, double softcap, Reduction reduction,
                        int axis, const py::object& out, const py::object& grad, const py::object& grad_output) {
    DistillationCall<T> call;
    call.student = static_cast<const T*>(s.data());
    call.student_strides = element_strides(s);
    call.teacher = static_cast<const T*>(t.data());
    call.teacher_strides = element_strides(t);
    call.shape = shape_of(s);
    call.axis = axis;
    call.ignore_index = ignore_index;
    call.label_smoothing = compute_t<T>(label_smoothing);
    call.temperature = temperature;
    call.alpha = alpha;
    call.divergence = divergence;
    call.beta = beta;
    call.z_loss = z_loss;
    call.softcap = softcap;
    call.reduction = reduction;

    set_class_targets<T>(call, s, "student_logits", axis, target, true);
    py::array weight_array = no_array();
    set_class_weight<T>(call, s, "student_logits", axis, weight, weight_array);

    py::array out_array = no_array();
    if (reduction == Reduction::none) {
        check_position_output(s, "student_logits", axis, out, true, out_array);
        call.loss = static_cast<T*>(out_array.mutable_data());
    }

    py::array grad_array = no_array(), grad_output_array = no_array();
    set_gradient_operands<T>(call, s, "student_logits", axis, reduction, grad, grad_output, grad_array,
                             grad_output_array);

    const ReleaseGilIf nogil(s.size() >= kReleaseGilElements);
    return distillation_forward(call);
}

py::object distillation_binding(const py::array& s, const py::array& t, const py::array& target, const py::object& weight,
                            int64_t ignore_index, double label_smoothing, double temperature, double alpha,
                            const std::string& divergence_name, double beta, const std::string& reduction,
                            int64_t axis_arg, const py::object& out, const py::object& grad,
                            const py::object& grad_output, double z_loss, double softcap) {
    const FloatType type = float_type(s, "student_logits");
    float_type(t, "teacher_logits");
    check_same_type(s, t, "student_logits", "teacher_logits");
    if (shape_of(s) != shape_of(t)) {
        throw std::invalid_argument("student_logits has shape " + shape_string(s) + " but teacher_logits has shape " +
                                    shape_string(t));
    }
    if (s.ndim() < 1) throw std::invalid_argument("student_logits must have at least one dimension");
    const int axis = checked_axis(s, axis_arg);
    if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0)) {
        throw std::invalid_argument("label_smoothing must be in [0, 1], got " + std::to_string(label_smoothing));
    }
    if (!(temperature > 0.0) || !std::isfinite(temperature)) {
        throw std::invalid_argument("temperature must be a finite number > 0, got " + std::to_string(temperature));
    }
    if (!(alpha >= 0.0 && alpha <= 1.0)) {
        throw std::invalid_argument("alpha must be in [0, 1], got " + std::to_string(alpha));
    }
    const Divergence divergence = parse_divergence(divergence_name, beta);
    if (!(z_loss >= 0.0) || !std::isfinite(z_loss)) {
        throw std::invalid_argument("z_loss must be a finite number >= 0, got " + std::to_string(z_loss));
    }
    check_softcap(softcap);
    const Reduction r = parse_reduction(reduction);
    const double value = with_storage_type(type, [&](auto tag) {
        return run_distillation<decltype(tag)>(s, t, target, weight, ignore_index, label_smoothing, temperature, alpha,
                                               divergence, beta, z_loss, softcap, r, axis, out, grad, grad_output);
    });
    return loss_result(value, type, r);
}

// The common call (common_case.hpp): (N, C) or (C,) student and teacher logits, a plain pair,
// with int64 class indices, the last axis as class axis, options of their exact Python types
// within their ranges, no class weights, grad_output or grad_out. The outputs are new C-order
// arrays, as the general path's.
py::object distillation_common_case(py::handle student, py::handle teacher, py::handle target_arg,
                                    py::handle temperature_arg, py::handle alpha_arg, py::handle divergence_arg,
                                    py::handle beta_arg, py::handle reduction_arg, py::handle weight,
                                    py::handle ignore_index_arg, py::handle label_smoothing_arg,
                                    py::handle axis_arg, py::handle return_grad_arg, py::handle grad_output,
                                    py::handle grad_out) {
    if (!weight.is_none() || !grad_output.is_none() || !grad_out.is_none()) return py::none();
    if (!plain_float_pair(student, teacher) || !is_plain_ndarray(target_arg)) return py::none();
    if (!PyFloat_CheckExact(temperature_arg.ptr()) || !PyFloat_CheckExact(alpha_arg.ptr()) ||
        !PyFloat_CheckExact(label_smoothing_arg.ptr()) || !PyFloat_CheckExact(beta_arg.ptr())) {
        return py::none();
    }
    const double temperature = PyFloat_AS_DOUBLE(temperature_arg.ptr());
    const double alpha = PyFloat_AS_DOUBLE(alpha_arg.ptr());
    const double label_smoothing = PyFloat_AS_DOUBLE(label_smoothing_arg.ptr());
    const double beta = PyFloat_AS_DOUBLE(beta_arg.ptr());
    if (!(temperature > 0.0 && std::isfinite(temperature)) || !(alpha >= 0.0 && alpha <= 1.0) ||
        !(label_smoothing >= 0.0 && label_smoothing <= 1.0) || !(beta >= 0.0 && beta <= 1.0)) {
        return py::none();
    }
    const auto divergence = exact_str(divergence_arg);
    if (!divergence || (*divergence != "kl" && *divergence != "reverse_kl" && *divergence != "jsd")) {
        return py::none();
    }
    const auto reduction = exact_str(reduction_arg);
    const auto ignore_index = exact_int(ignore_index_arg);
    const auto return_grad = exact_bool(return_grad_arg);
    if (!reduction || !ignore_index || !return_grad) return py::none();
    if (*reduction != "mean" && *reduction != "sum" && (*reduction != "none" || *return_grad)) return py::none();
    if (!axis_arg.is_none() && exact_int(axis_arg) != std::optional<int64_t>(-1)) return py::none();
    const auto s = py::reinterpret_borrow<py::array>(student);
    const auto target = py::reinterpret_borrow<py::array>(target_arg);
    const py::dtype td = target.dtype();
    const bool target_ok = td.kind() == 'i' && td.itemsize() == 8 && is_native_byte_order(td) && is_aligned(target);
    const bool shapes_ok = (s.ndim() == 2 && target.ndim() == 1 && target.shape(0) == s.shape(0)) ||
                           (s.ndim() == 1 && target.ndim() == 0);
    if (!target_ok || !shapes_ok) return py::none();
    const int axis = int(s.ndim()) - 1;
    const auto t = py::reinterpret_borrow<py::array>(teacher);
    if (*reduction == "none") {
        py::array out = new_array(s, shape_without(s, axis));
        distillation_binding(s, t, target, py::none(), *ignore_index, label_smoothing, temperature, alpha,
                             *divergence, beta, *reduction, axis, out, py::none(), py::none(), 0.0, 0.0);
        return std::move(out);
    }
    if (!*return_grad) {
        return distillation_binding(s, t, target, py::none(), *ignore_index, label_smoothing, temperature, alpha,
                                    *divergence, beta, *reduction, axis, py::none(), py::none(), py::none(), 0.0,
                                    0.0);
    }
    py::array grad = new_array(s, std::vector<py::ssize_t>(s.shape(), s.shape() + s.ndim()));
    py::object loss = distillation_binding(s, t, target, py::none(), *ignore_index, label_smoothing, temperature,
                                           alpha, *divergence, beta, *reduction, axis, py::none(), grad, py::none(),
                                           0.0, 0.0);
    return loss_and_grad(std::move(loss), std::move(grad));
}

}  // namespace

void register_distillation(py::module_& m) {
    m.def("distillation_loss_common_case", &distillation_common_case, py::arg("student_logits"),
          py::arg("teacher_logits"), py::arg("target"), py::arg("temperature"), py::arg("alpha"),
          py::arg("divergence"), py::arg("beta"), py::arg("reduction"), py::arg("weight"), py::arg("ignore_index"),
          py::arg("label_smoothing"),
          py::arg("axis"), py::arg("return_grad"), py::arg("grad_output"), py::arg("grad_out"),
          "distillation_loss's arguments as given: the result of the common call (common_case.hpp); None for any "
          "other.");
    m.def("distillation_loss", &distillation_binding, py::arg("student_logits").noconvert(),
          py::arg("teacher_logits").noconvert(), py::arg("target").noconvert(), py::arg("weight"),
          py::arg("ignore_index"), py::arg("label_smoothing"), py::arg("temperature"), py::arg("alpha"),
          py::arg("divergence"), py::arg("beta"), py::arg("reduction"), py::arg("axis"), py::arg("out"),
          py::arg("grad") = py::none(), py::arg("grad_output") = py::none(), py::arg("z_loss") = 0.0,
          py::arg("softcap") = 0.0,
          "alpha CE(s, target) + (1 - alpha) T^2 D(softmax(t/T), softmax(s/T)), D = KL(p || sigma) ('kl'), "
          "KL(sigma || p) ('reverse_kl') or the generalized JSD with beta ('jsd'); returns the mean/sum, or "
          "writes per-position losses to out; with grad, also writes the gradient w.r.t. s there; softcap > 0: with "
          "s' = softcap tanh(s / softcap) in place of s in both terms (the gradient still w.r.t. s).");
}

}  // namespace fastloss::bindings
