// kl_div, binary_cross_entropy and binary_cross_entropy_with_logits bindings: memory-safety checks,
// GIL release, run. The Python layer (python/fastloss/_elementwise_losses.py) owns semantics,
// broadcasting (it passes zero-stride views of the common shape) and friendly messages.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/array_checks.hpp"
#include "bindings/loss_arguments.hpp"
#include "bindings/loss_result.hpp"
#include "ops/elementwise_loss_ops.hpp"

namespace fastloss::bindings {

namespace {

// An operand of the common shape and the input's dtype, or nullptr for None.
template <class T>
const T* operand(const py::object& a, const py::array& x, const char* name, std::vector<int64_t>& strides) {
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
};

template <class T>
T* writeable_operand(const py::object& a, const py::array& x, const char* name, std::vector<int64_t>& strides) {
    if (a.is_none()) return nullptr;
    check_writeable(a.cast<py::array>(), name);
    return const_cast<T*>(operand<T>(a, x, name, strides));
}

template <class T>
double run_elementwise_loss(ElementwiseLoss kind, const py::array& x, const py::array& target,
                            const py::object& weight, const py::object& pos_weight, const py::object& out,
                            Reduction reduction, const ReductionArguments& r) {
    ElementwiseLossCall<T> call;  // T: the storage type
    call.shape = shape_of(x);
    call.input = static_cast<const T*>(x.data());
    call.input_strides = element_strides(x);
    call.target = operand<T>(target, x, "target", call.target_strides);
    call.weight = operand<T>(weight, x, "weight", call.weight_strides);
    call.pos_weight = operand<T>(pos_weight, x, "pos_weight", call.pos_weight_strides);
    call.reduction = reduction;
    call.mean_count = r.mean_count;
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
                                    const ReductionArguments& r) {
    const FloatType type = float_type(x, "input");
    const Reduction reduction = parse_reduction(r.reduction);
    if (r.mean_count < 0) throw std::invalid_argument("mean_count must be >= 0");
    const double value = with_storage_type(type, [&](auto tag) {
        return run_elementwise_loss<decltype(tag)>(kind, x, target, weight, pos_weight, out, reduction, r);
    });
    return loss_result(value, type, reduction);
}

const char* const kReductionDoc =
    " reduction: 'sum', 'mean' (the sum / mean_count) or 'none' (every loss written to out; returns None)."
    " With grad, also writes there (it may be input itself) the gradient with respect to the input, times"
    " grad_output (reduction 'none', the input's shape) or times the number grad_output (/ mean_count for"
    " a mean); with unscaled_gradient, the gradient alone.";

}  // namespace

void register_elementwise_losses(py::module_& m) {
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
}

}  // namespace fastloss::bindings
