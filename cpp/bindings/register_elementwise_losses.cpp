// kl_div, binary_cross_entropy and binary_cross_entropy_with_logits bindings: memory-safety checks,
// GIL release, run. The Python layer (python/fastloss/_elementwise_losses.py) owns semantics,
// broadcasting (it passes zero-stride views of the common shape) and friendly messages.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/array_checks.hpp"
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

// The optional gradient buffers: grad (the input's shape, writeable), grad_output (the input's
// shape, reduction 'none') and the scale that stands for grad_output / D otherwise.
struct GradientArguments {
    py::object grad = py::none();
    py::object grad_output = py::none();
    double grad_scale = 1.0;
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
                            const GradientArguments& gradient) {
    ElementwiseLossCall<T> call;  // T: the storage type
    call.shape = shape_of(x);
    call.input = static_cast<const T*>(x.data());
    call.input_strides = element_strides(x);
    call.target = operand<T>(target, x, "target", call.target_strides);
    call.weight = operand<T>(weight, x, "weight", call.weight_strides);
    call.pos_weight = operand<T>(pos_weight, x, "pos_weight", call.pos_weight_strides);
    call.out = writeable_operand<T>(out, x, "out", call.out_strides);
    call.grad = writeable_operand<T>(gradient.grad, x, "grad", call.grad_strides);
    if (call.grad) {
        call.grad_output = operand<T>(gradient.grad_output, x, "grad_output", call.grad_output_strides);
        call.grad_scale = compute_t<T>(gradient.grad_scale);
    }
    const ReleaseGilIf nogil(x.size() >= kReleaseGilElements);
    return elementwise_loss(kind, call);
}

double elementwise_loss_binding(ElementwiseLoss kind, const py::array& x, const py::array& target,
                                const py::object& weight, const py::object& pos_weight, const py::object& out,
                                const GradientArguments& gradient) {
    return with_storage_type(float_type(x, "input"), [&](auto tag) {
        return run_elementwise_loss<decltype(tag)>(kind, x, target, weight, pos_weight, out, gradient);
    });
}

const char* const kGradientDoc =
    " With grad, also writes there (it may be input itself) the gradient with respect to the input,"
    " times grad_output (reduction 'none', the input's shape) or else times grad_scale.";

}  // namespace

void register_elementwise_losses(py::module_& m) {
    m.def(
        "kl_div",
        [](const py::array& x, const py::array& target, bool log_target, const py::object& out,
           const py::object& grad, const py::object& grad_output, double grad_scale) {
            const auto kind = log_target ? ElementwiseLoss::kl_div_log_target : ElementwiseLoss::kl_div;
            return elementwise_loss_binding(kind, x, target, py::none(), py::none(), out,
                                            {grad, grad_output, grad_scale});
        },
        py::arg("input").noconvert(), py::arg("target").noconvert(), py::arg("log_target"), py::arg("out"),
        py::arg("grad") = py::none(), py::arg("grad_output") = py::none(), py::arg("grad_scale") = 1.0,
        (std::string("Pointwise KL divergence of same-shape arrays: returns the sum, or writes every loss to "
                     "out.") + kGradientDoc).c_str());
    m.def(
        "binary_cross_entropy",
        [](const py::array& x, const py::array& target, const py::object& weight, const py::object& out,
           const py::object& grad, const py::object& grad_output, double grad_scale) {
            return elementwise_loss_binding(ElementwiseLoss::binary_cross_entropy, x, target, weight, py::none(),
                                            out, {grad, grad_output, grad_scale});
        },
        py::arg("input").noconvert(), py::arg("target").noconvert(), py::arg("weight"), py::arg("out"),
        py::arg("grad") = py::none(), py::arg("grad_output") = py::none(), py::arg("grad_scale") = 1.0,
        (std::string("Binary cross-entropy of probabilities: returns the sum, or writes every loss to out.") +
         kGradientDoc).c_str());
    m.def(
        "binary_cross_entropy_with_logits",
        [](const py::array& x, const py::array& target, const py::object& weight, const py::object& pos_weight,
           const py::object& out, const py::object& grad, const py::object& grad_output, double grad_scale) {
            return elementwise_loss_binding(ElementwiseLoss::binary_cross_entropy_with_logits, x, target, weight,
                                            pos_weight, out, {grad, grad_output, grad_scale});
        },
        py::arg("input").noconvert(), py::arg("target").noconvert(), py::arg("weight"), py::arg("pos_weight"),
        py::arg("out"), py::arg("grad") = py::none(), py::arg("grad_output") = py::none(),
        py::arg("grad_scale") = 1.0,
        (std::string("Binary cross-entropy of logits: returns the sum, or writes every loss to out.") +
         kGradientDoc).c_str());
}

}  // namespace fastloss::bindings
