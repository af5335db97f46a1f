// kl_div, binary_cross_entropy(_with_logits) and sigmoid_focal_loss bindings: memory-safety checks,
// GIL release, run. The Python layer (python/fastloss/_elementwise_losses.py) owns semantics,
// broadcasting (it passes zero-stride views of the common shape) and friendly messages.
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
#include "ops/elementwise_loss_ops.hpp"

namespace fastloss::bindings {

namespace {

// An operand of the common shape and the input's dtype, or nullptr for None.
template <class T>
const T* operand(const py::object& a, const py::array& x, const char* name, Extents& strides) {
    if (a.is_none()) return nullptr;
    const auto arr = a.cast<py::array>();
    check_same_type(x, arr, "input", name);
    float_type(arr, name);  // aligned, native byte order: strides are whole elements
    if (shape_of(arr) != shape_of(x)) {
        throw std::invalid_argument(std::string(name) + " must have the broadcast shape " + shape_string(x) +
                                    ", got " + shape_string(arr));
    }
    strides = element_strides(arr);
    return static_cast<const T*>(arr.data());
}

// The reduction and the optional gradient buffers: grad (the input's shape, writeable) and
// grad_output (an array of the input's shape for reduction 'none', else a number or None).
struct ReductionArguments {
    std::string reduction;
    int64_t mean_count;
    py::object grad = py::none();
    py::object grad_output = py::none();
    bool unscaled_gradient = false;
    double beta = 0.5;  // Jensen-Shannon only
};

// sigmoid_focal_loss's options (checked in Python, or by the common case): alpha < 0 means no
// alpha weighting, gamma is finite and >= 0.
struct FocalArguments {
    double alpha = -1.0;
    double gamma = 0.0;
};

template <class T>
T* writeable_operand(const py::object& a, const py::array& x, const char* name, Extents& strides) {
    if (a.is_none()) return nullptr;
    check_writeable(a.cast<py::array>(), name);
    return const_cast<T*>(operand<T>(a, x, name, strides));
}

template <class T>
double run_elementwise_loss(ElementwiseLoss kind, const py::array& x, const py::array& target,
                            const py::object& weight, const py::object& pos_weight, const py::object& out,
                            Reduction reduction, const ReductionArguments& r, const FocalArguments& focal) {
    ElementwiseLossCall<T> call;  // T: the storage type
    call.shape = shape_of(x);
    call.input = static_cast<const T*>(x.data());
    call.input_strides = element_strides(x);
    call.target = operand<T>(target, x, "target", call.target_strides);
    call.weight = operand<T>(weight, x, "weight", call.weight_strides);
    call.pos_weight = operand<T>(pos_weight, x, "pos_weight", call.pos_weight_strides);
    call.focal_alpha = focal.alpha;
    call.focal_gamma = focal.gamma;
    call.reduction = reduction;
    call.mean_count = r.mean_count;
    call.beta = r.beta;
    if (reduction == Reduction::none) {
        if (out.is_none()) throw std::invalid_argument("reduction 'none' needs an output array");
        call.out = writeable_operand<T>(out, x, "out", call.out_strides);
    }
    call.grad = writeable_operand<T>(r.grad, x, "grad", call.grad_strides);
    if (call.grad) {
        call.unscaled_gradient = r.unscaled_gradient;
        if (reduction == Reduction::none) {
            call.grad_output = operand<T>(r.grad_output, x, "grad_output", call.grad_output_strides);
        } else if (!r.grad_output.is_none()) {
            call.grad_output_scalar = compute_t<T>(r.grad_output.cast<double>());
        }
    }
    const ReleaseGilIf nogil(x.size() >= kReleaseGilElements);
    return elementwise_loss(kind, call);
}

py::object elementwise_loss_binding(ElementwiseLoss kind, const py::array& x, const py::array& target,
                                    const py::object& weight, const py::object& pos_weight, const py::object& out,
                                    const ReductionArguments& r, const FocalArguments& focal = {}) {
    const FloatType type = float_type(x, "input");
    const Reduction reduction = parse_reduction(r.reduction);
    if (r.mean_count < 0) throw std::invalid_argument("mean_count must be >= 0");
    const double value = with_storage_type(type, [&](auto tag) {
        return run_elementwise_loss<decltype(tag)>(kind, x, target, weight, pos_weight, out, reduction, r, focal);
    });
    return loss_result(value, type, reduction);
}

// The common call of an elementwise loss (common_case.hpp): input and target plain float arrays
// of one type and shape, without weights, grad_output or grad_out, reduced to a mean or a sum
// (with the gradient if asked) or per element (reduction 'none', without the gradient). The
// outputs are new C-order arrays, as the general path's for C-contiguous inputs.
py::object elementwise_common_case(ElementwiseLoss kind, py::handle input, py::handle target,
                                   const std::string& reduction, int64_t mean_count, bool return_grad,
                                   const FocalArguments& focal = {}) {
    const auto x = py::reinterpret_borrow<py::array>(input);
    const auto t = py::reinterpret_borrow<py::array>(target);
    const std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
    if (reduction == "none") {
        if (return_grad) return py::none();
        py::array out = new_array(x, shape);
        elementwise_loss_binding(kind, x, t, py::none(), py::none(), out, {reduction, mean_count}, focal);
        return std::move(out);
    }
    if (!return_grad) {
        return elementwise_loss_binding(kind, x, t, py::none(), py::none(), py::none(), {reduction, mean_count},
                                        focal);
    }
    py::array grad = new_array(x, shape);
    py::object loss = elementwise_loss_binding(kind, x, t, py::none(), py::none(), py::none(),
                                               {reduction, mean_count, grad, py::none()}, focal);
    return loss_and_grad(std::move(loss), std::move(grad));
}

// The options every elementwise common call shares: reduction and return_grad of their exact
// types, no grad_output or grad_out, input and target a plain pair.
struct CommonOptions {
    std::string reduction;
    bool return_grad;
};

std::optional<CommonOptions> common_options(py::handle input, py::handle target, py::handle reduction,
                                            py::handle return_grad, py::handle grad_output, py::handle grad_out) {
    if (!grad_output.is_none() || !grad_out.is_none() || !plain_float_pair(input, target)) return std::nullopt;
    const auto r = exact_str(reduction);
    const auto g = exact_bool(return_grad);
    if (!r || !g) return std::nullopt;
    return CommonOptions{*r, *g};
}

// kl_div: 'batchmean' is a mean over input.shape[0]; 'mean' warns, in Python.
py::object kl_div_common_case(py::handle input, py::handle target, py::handle reduction, py::handle log_target,
                              py::handle return_grad, py::handle grad_output, py::handle grad_out) {
    const auto options = common_options(input, target, reduction, return_grad, grad_output, grad_out);
    const auto log = exact_bool(log_target);
    if (!options || !log) return py::none();
    const auto kind = *log ? ElementwiseLoss::kl_div_log_target : ElementwiseLoss::kl_div;
    const py::ssize_t ndim = py::reinterpret_borrow<py::array>(input).ndim();
    if (options->reduction == "batchmean" && ndim > 0) {
        const int64_t batch = py::reinterpret_borrow<py::array>(input).shape(0);
        return elementwise_common_case(kind, input, target, "mean", batch, options->return_grad);
    }
    if (options->reduction != "sum" && options->reduction != "none") return py::none();
    return elementwise_common_case(kind, input, target, options->reduction, 0, options->return_grad);
}

// binary_cross_entropy(_with_logits): 'mean' over every element.
py::object bce_common_case(ElementwiseLoss kind, py::handle input, py::handle target, py::handle reduction,
                           py::handle return_grad, py::handle grad_output, py::handle grad_out) {
    const auto options = common_options(input, target, reduction, return_grad, grad_output, grad_out);
    if (!options) return py::none();
    const std::string& r = options->reduction;
    if (r != "mean" && r != "sum" && r != "none") return py::none();
    const int64_t count = py::reinterpret_borrow<py::array>(input).size();
    return elementwise_common_case(kind, input, target, r, count, options->return_grad);
}

// sigmoid_focal_loss: exact float alpha and gamma, finite, gamma >= 0 (the Python layer
// explains anything else); 'mean' over every element.
py::object sigmoid_focal_loss_common_case(py::handle input, py::handle target, py::handle alpha, py::handle gamma,
                                          py::handle reduction, py::handle return_grad, py::handle grad_output,
                                          py::handle grad_out) {
    if (!PyFloat_CheckExact(alpha.ptr()) || !PyFloat_CheckExact(gamma.ptr())) return py::none();
    const FocalArguments focal{PyFloat_AS_DOUBLE(alpha.ptr()), PyFloat_AS_DOUBLE(gamma.ptr())};
    if (!std::isfinite(focal.alpha) || !std::isfinite(focal.gamma) || !(focal.gamma >= 0.0)) return py::none();
    const auto options = common_options(input, target, reduction, return_grad, grad_output, grad_out);
    if (!options) return py::none();
    const std::string& r = options->reduction;
    if (r != "mean" && r != "sum" && r != "none") return py::none();
    const int64_t count = py::reinterpret_borrow<py::array>(input).size();
    return elementwise_common_case(ElementwiseLoss::sigmoid_focal_loss, input, target, r, count,
                                   options->return_grad, focal);
}

const char* const kReductionDoc =
    " reduction: 'sum', 'mean' (the sum / mean_count) or 'none' (every loss written to out; returns None)."
    " With grad, also writes there (it may be input itself) the gradient with respect to the input, times"
    " grad_output (reduction 'none', the input's shape) or times the number grad_output (/ mean_count for"
    " a mean); with unscaled_gradient, the gradient alone.";

}  // namespace

void register_elementwise_losses(py::module_& m) {
    m.def("kl_div_common_case", &kl_div_common_case, py::arg("input"), py::arg("target"), py::arg("reduction"),
          py::arg("log_target"), py::arg("return_grad"), py::arg("grad_output"), py::arg("grad_out"),
          "kl_div's arguments as given: the result of the common call (common_case.hpp); None for any other.");
    m.def(
        "binary_cross_entropy_common_case",
        [](py::handle input, py::handle target, py::handle weight, py::handle reduction, py::handle return_grad,
           py::handle grad_output, py::handle grad_out) {
            if (!weight.is_none()) return py::object(py::none());
            return bce_common_case(ElementwiseLoss::binary_cross_entropy, input, target, reduction, return_grad,
                                   grad_output, grad_out);
        },
        py::arg("input"), py::arg("target"), py::arg("weight"), py::arg("reduction"), py::arg("return_grad"),
        py::arg("grad_output"), py::arg("grad_out"),
        "binary_cross_entropy's arguments as given: the result of the common call (common_case.hpp); None for any "
        "other.");
    m.def(
        "binary_cross_entropy_with_logits_common_case",
        [](py::handle input, py::handle target, py::handle weight, py::handle pos_weight, py::handle reduction,
           py::handle return_grad, py::handle grad_output, py::handle grad_out) {
            if (!weight.is_none() || !pos_weight.is_none()) return py::object(py::none());
            return bce_common_case(ElementwiseLoss::binary_cross_entropy_with_logits, input, target, reduction,
                                   return_grad, grad_output, grad_out);
        },
        py::arg("input"), py::arg("target"), py::arg("weight"), py::arg("pos_weight"), py::arg("reduction"),
        py::arg("return_grad"), py::arg("grad_output"), py::arg("grad_out"),
        "binary_cross_entropy_with_logits's arguments as given: the result of the common call (common_case.hpp); "
        "None for any other.");
    m.def("sigmoid_focal_loss_common_case", &sigmoid_focal_loss_common_case, py::arg("input"), py::arg("target"),
          py::arg("alpha"), py::arg("gamma"), py::arg("reduction"), py::arg("return_grad"), py::arg("grad_output"),
          py::arg("grad_out"),
          "sigmoid_focal_loss's arguments as given: the result of the common call (common_case.hpp); None for any "
          "other.");
    m.def(
        "kl_div",
        [](const py::array& x, const py::array& target, bool log_target, const std::string& reduction,
           int64_t mean_count, const py::object& out, const py::object& grad, const py::object& grad_output,
           bool unscaled_gradient) {
            const auto kind = log_target ? ElementwiseLoss::kl_div_log_target : ElementwiseLoss::kl_div;
            return elementwise_loss_binding(kind, x, target, py::none(), py::none(), out,
                                            {reduction, mean_count, grad, grad_output, unscaled_gradient});
        },
        py::arg("input").noconvert(), py::arg("target").noconvert(), py::arg("log_target"), py::arg("reduction"),
        py::arg("mean_count"), py::arg("out"), py::arg("grad") = py::none(), py::arg("grad_output") = py::none(),
        py::arg("unscaled_gradient") = false,
        (std::string("Pointwise KL divergence of same-shape arrays.") + kReductionDoc).c_str());
    m.def(
        "jensen_shannon_divergence",
        [](const py::array& x, const py::array& target, bool log_target, double beta, const std::string& reduction,
           int64_t mean_count, const py::object& out, const py::object& grad, const py::object& grad_output,
           bool unscaled_gradient) {
            if (!(beta >= 0.0 && beta <= 1.0)) {
                throw std::invalid_argument("beta must be in [0, 1], got " + std::to_string(beta));
            }
            // beta = 0 is Liger's forward KL, kl_div's pointwise loss.
            auto kind = log_target ? ElementwiseLoss::jensen_shannon_log_target : ElementwiseLoss::jensen_shannon;
            if (beta == 0.0) kind = log_target ? ElementwiseLoss::kl_div_log_target : ElementwiseLoss::kl_div;
            return elementwise_loss_binding(kind, x, target, py::none(), py::none(), out,
                                            {reduction, mean_count, grad, grad_output, unscaled_gradient, beta});
        },
        py::arg("input").noconvert(), py::arg("target").noconvert(), py::arg("log_target"), py::arg("beta"),
        py::arg("reduction"), py::arg("mean_count"), py::arg("out"), py::arg("grad") = py::none(),
        py::arg("grad_output") = py::none(), py::arg("unscaled_gradient") = false,
        (std::string("Pointwise generalized Jensen-Shannon divergence (Liger's) of same-shape arrays: input log q, "
                     "target p (log p with log_target); beta = 0 and 1 are the forward and reverse KL.") +
         kReductionDoc)
            .c_str());
    m.def(
        "binary_cross_entropy",
        [](const py::array& x, const py::array& target, const py::object& weight, const std::string& reduction,
           int64_t mean_count, const py::object& out, const py::object& grad, const py::object& grad_output,
           bool unscaled_gradient) {
            return elementwise_loss_binding(ElementwiseLoss::binary_cross_entropy, x, target, weight, py::none(),
                                            out, {reduction, mean_count, grad, grad_output, unscaled_gradient});
        },
        py::arg("input").noconvert(), py::arg("target").noconvert(), py::arg("weight"), py::arg("reduction"),
        py::arg("mean_count"), py::arg("out"), py::arg("grad") = py::none(), py::arg("grad_output") = py::none(),
        py::arg("unscaled_gradient") = false,
        (std::string("Binary cross-entropy of probabilities.") + kReductionDoc).c_str());
    m.def(
        "binary_cross_entropy_with_logits",
        [](const py::array& x, const py::array& target, const py::object& weight, const py::object& pos_weight,
           const std::string& reduction, int64_t mean_count, const py::object& out, const py::object& grad,
           const py::object& grad_output, bool unscaled_gradient) {
            return elementwise_loss_binding(ElementwiseLoss::binary_cross_entropy_with_logits, x, target, weight,
                                            pos_weight, out,
                                            {reduction, mean_count, grad, grad_output, unscaled_gradient});
        },
        py::arg("input").noconvert(), py::arg("target").noconvert(), py::arg("weight"), py::arg("pos_weight"),
        py::arg("reduction"), py::arg("mean_count"), py::arg("out"), py::arg("grad") = py::none(),
        py::arg("grad_output") = py::none(), py::arg("unscaled_gradient") = false,
        (std::string("Binary cross-entropy of logits.") + kReductionDoc).c_str());
    m.def(
        "sigmoid_focal_loss",
        [](const py::array& x, const py::array& target, double alpha, double gamma, const std::string& reduction,
           int64_t mean_count, const py::object& out, const py::object& grad, const py::object& grad_output,
           bool unscaled_gradient) {
            if (!std::isfinite(alpha) || !std::isfinite(gamma) || !(gamma >= 0.0)) {
                throw std::invalid_argument("alpha and gamma must be finite, gamma >= 0");
            }
            return elementwise_loss_binding(ElementwiseLoss::sigmoid_focal_loss, x, target, py::none(), py::none(),
                                            out, {reduction, mean_count, grad, grad_output, unscaled_gradient},
                                            {alpha, gamma});
        },
        py::arg("input").noconvert(), py::arg("target").noconvert(), py::arg("alpha"), py::arg("gamma"),
        py::arg("reduction"), py::arg("mean_count"), py::arg("out"), py::arg("grad") = py::none(),
        py::arg("grad_output") = py::none(), py::arg("unscaled_gradient") = false,
        (std::string("Sigmoid focal loss of logits (alpha < 0: no alpha weighting).") + kReductionDoc).c_str());
}

}  // namespace fastloss::bindings
