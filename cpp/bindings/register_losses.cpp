// cross_entropy and nll_loss bindings: memory-safety checks, GIL release, run.
// The Python layer (python/fastloss/_losses.py) owns semantics and friendly messages.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "bindings/array_checks.hpp"
#include "bindings/common_case.hpp"
#include "bindings/loss_arguments.hpp"
#include "bindings/loss_result.hpp"
#include "ops/cross_entropy_ops.hpp"

namespace fastloss::bindings {

namespace {

// cross_entropy's options beyond nll_loss's.
struct CrossEntropyExtras {
    double z_loss = 0.0;
    py::object lse = py::none();  // or the per-position log-sum-exps' output array
    double softcap = 0.0;         // 0: none
};

template <class T>
double run_classification_loss(bool nll, const py::array& x, const py::array& target, const py::object& weight,
                               int64_t ignore_index, double label_smoothing, Reduction reduction, int axis,
                               const py::object& out, const py::object& grad, const py::object& grad_output,
                               const CrossEntropyExtras& extras) {
    ClassificationLossCall<T> call;
    call.input = static_cast<const T*>(x.data());
    call.input_strides = element_strides(x);
    call.shape = shape_of(x);
    call.axis = axis;
    call.ignore_index = ignore_index;
    call.label_smoothing = compute_t<T>(label_smoothing);
    call.reduction = reduction;

    set_class_targets<T>(call, x, "input", axis, target, !nll);
    py::array weight_array = no_array();
    set_class_weight<T>(call, x, "input", axis, weight, weight_array);

    py::array out_array = no_array();
    if (reduction == Reduction::none) {
        check_position_output(x, "input", axis, out, false, out_array);
        call.loss = static_cast<T*>(out_array.mutable_data());
        call.loss_strides = full_rank_strides(out_array, axis, x.ndim());
    }
    call.z_loss = extras.z_loss;
    call.softcap = extras.softcap;
    py::array lse_array = no_array();
    if (!extras.lse.is_none()) {
        check_position_output(x, "input", axis, extras.lse, false, lse_array, "lse");
        call.lse = static_cast<T*>(lse_array.mutable_data());
        call.lse_strides = full_rank_strides(lse_array, axis, x.ndim());
    }

    py::array grad_array = no_array(), grad_output_array = no_array();
    set_gradient_operands<T>(call, x, "input", axis, reduction, grad, grad_output, grad_array, grad_output_array);

    const ReleaseGilIf nogil(x.size() >= kReleaseGilElements);
    return nll ? nll_loss_forward(call) : cross_entropy_forward(call);
}

py::object classification_loss_binding(bool nll, const py::array& x, const py::array& target, const py::object& weight,
                                   int64_t ignore_index, double label_smoothing, const std::string& reduction,
                                   int64_t axis_arg, const py::object& out,
                                   const py::object& grad = py::none(), const py::object& grad_output = py::none(),
                                   const CrossEntropyExtras& extras = {}) {
    const FloatType type = float_type(x, "input");
    if (x.ndim() < 1) throw std::invalid_argument("input must have at least one dimension");
    const int axis = checked_axis(x, axis_arg);
    if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0)) {
        throw std::invalid_argument("label_smoothing must be in [0, 1], got " + std::to_string(label_smoothing));
    }
    if (!(extras.z_loss >= 0.0 && std::isfinite(extras.z_loss))) {
        throw std::invalid_argument("z_loss must be a finite number >= 0, got " + std::to_string(extras.z_loss));
    }
    check_softcap(extras.softcap);
    const Reduction r = parse_reduction(reduction);
    const double value = with_storage_type(type, [&](auto tag) {
        return run_classification_loss<decltype(tag)>(nll, x, target, weight, ignore_index, label_smoothing, r, axis,
                                                      out, grad, grad_output, extras);
    });
    return loss_result(value, type, r);
}

// Whether `grad_out` can take the gradient of x directly: same shape and dtype, writeable, and
// either x itself (same data and strides) or not overlapping it at all.
bool usable_gradient_buffer(const py::array& x, const py::handle& grad_out) {
    if (!is_plain_ndarray(grad_out)) return false;
    const auto g = py::reinterpret_borrow<py::array>(grad_out);
    if (!g.dtype().equal(x.dtype()) || !g.writeable() || !is_aligned(g) || g.ndim() != x.ndim()) return false;
    bool same_strides = true;
    for (py::ssize_t d = 0; d < x.ndim(); ++d) {
        if (g.shape(d) != x.shape(d)) return false;
        same_strides &= g.strides(d) == x.strides(d);
    }
    if (g.data() == x.data() && same_strides) return true;
    // Byte ranges spanned by each array (strides may be negative).
    auto span = [](const py::array& a) {
        const char* lo = static_cast<const char*>(a.data());
        const char* hi = lo;
        for (py::ssize_t d = 0; d < a.ndim(); ++d) {
            if (a.shape(d) == 0) return std::make_pair(lo, lo);
            const py::ssize_t extent = (a.shape(d) - 1) * a.strides(d);
            (extent < 0 ? lo : hi) += extent;
        }
        return std::make_pair(lo, hi + a.itemsize());
    };
    const auto xs = span(x), gs = span(g);
    return gs.second <= xs.first || xs.second <= gs.first;
}

// The common call, (N, C) or (C,) float32/float64 inputs with int64 class indices and default
// options (no weight or grad_output, the last axis as class axis, options of their exact Python
// types), reduced to a mean or sum (with its gradient if asked) or per position (reduction
// 'none', without gradient): arguments already in the form the kernels take, recognised here
// alone and run without the Python layer's argument normalisation (a small call costs
// microseconds, most of them Python). Returns None for anything else (or anything wrong), and the
// Python layer then takes its one general path, which also produces the error messages. With a
// gradient, returns (loss, grad).
py::object common_case(bool nll, py::handle input, py::handle target, py::handle weight, py::handle ignore_index_arg,
                       py::handle reduction_arg, py::handle label_smoothing_arg, py::handle axis,
                       py::handle return_grad_arg, py::handle grad_output, py::handle grad_out) {
    if (!is_plain_ndarray(input) || !is_plain_ndarray(target) || !weight.is_none() || !grad_output.is_none()) {
        return py::none();
    }
    if (!PyLong_CheckExact(ignore_index_arg.ptr()) || !PyUnicode_CheckExact(reduction_arg.ptr()) ||
        !PyFloat_CheckExact(label_smoothing_arg.ptr()) || !PyBool_Check(return_grad_arg.ptr())) {
        return py::none();
    }
    const bool return_grad = return_grad_arg.ptr() == Py_True;
    if (!return_grad && !grad_out.is_none()) return py::none();  // the general path's error
    if (!axis.is_none()) {  // axis=-1 is the default axis of the (N, C) and (C,) inputs taken here
        int axis_overflow = 0;
        if (!PyLong_CheckExact(axis.ptr()) || PyLong_AsLongAndOverflow(axis.ptr(), &axis_overflow) != -1 ||
            axis_overflow != 0) {
            PyErr_Clear();
            return py::none();
        }
    }
    int overflow = 0;  // an ignore_index beyond int64 is the general path's error
    const int64_t ignore_index = PyLong_AsLongLongAndOverflow(ignore_index_arg.ptr(), &overflow);
    if (overflow != 0 || (ignore_index == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return py::none();
    }
    const std::string reduction = py::reinterpret_borrow<py::str>(reduction_arg);
    const double label_smoothing = PyFloat_AS_DOUBLE(label_smoothing_arg.ptr());
    const auto x = py::reinterpret_borrow<py::array>(input);
    const auto t = py::reinterpret_borrow<py::array>(target);
    const py::dtype xd = x.dtype(), td = t.dtype();
    const bool float_ok = xd.kind() == 'f' && (xd.itemsize() == 4 || xd.itemsize() == 8) &&
                          is_native_byte_order(xd) && is_aligned(x);
    const bool target_ok = td.kind() == 'i' && td.itemsize() == 8 && is_native_byte_order(td) && is_aligned(t);
    const bool shapes_ok = (x.ndim() == 2 && t.ndim() == 1 && t.shape(0) == x.shape(0)) ||
                           (x.ndim() == 1 && t.ndim() == 0);
    const bool per_position = reduction == "none";
    const bool options_ok = (reduction == "mean" || reduction == "sum" || (per_position && !return_grad)) &&
                            label_smoothing >= 0.0 && label_smoothing <= 1.0;
    if (!(float_ok && target_ok && shapes_ok && options_ok)) return py::none();
    if (per_position) {
        py::array out(xd, std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim() - 1));
        classification_loss_binding(nll, x, t, py::none(), ignore_index, label_smoothing, reduction, x.ndim() - 1,
                                    out);
        return std::move(out);
    }
    if (!return_grad) {
        return classification_loss_binding(nll, x, t, py::none(), ignore_index, label_smoothing, reduction,
                                           x.ndim() - 1, py::none());
    }
    py::object grad;
    if (grad_out.is_none()) {
        grad = py::array(xd, std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    } else if (usable_gradient_buffer(x, grad_out)) {
        grad = py::reinterpret_borrow<py::object>(grad_out);
    } else {
        return py::none();
    }
    py::object loss = classification_loss_binding(nll, x, t, py::none(), ignore_index, label_smoothing, reduction,
                                                  x.ndim() - 1, py::none(), grad, py::none());
    return loss_and_grad(std::move(loss), std::move(grad));
}

}  // namespace

void register_losses(py::module_& m) {
    m.def(
        "cross_entropy_common_case",
        [](py::handle input, py::handle target, py::handle weight, py::handle ignore_index, py::handle reduction,
           py::handle label_smoothing, py::handle axis, py::handle return_grad, py::handle grad_output,
           py::handle grad_out) {
            return common_case(false, input, target, weight, ignore_index, reduction, label_smoothing, axis,
                               return_grad, grad_output, grad_out);
        },
        py::arg("input"), py::arg("target"), py::arg("weight"), py::arg("ignore_index"), py::arg("reduction"),
        py::arg("label_smoothing"), py::arg("axis"), py::arg("return_grad"), py::arg("grad_output"),
        py::arg("grad_out"),
        "cross_entropy's arguments as given: the result for (N, C) logits with int64 targets and default options "
        "(mean, sum, or none without gradient); None for any other call.");
    m.def(
        "nll_loss_common_case",
        [](py::handle input, py::handle target, py::handle weight, py::handle ignore_index, py::handle reduction,
           py::handle axis, py::handle return_grad, py::handle grad_output, py::handle grad_out) {
            const py::float_ no_smoothing(0.0);
            return common_case(true, input, target, weight, ignore_index, reduction, no_smoothing, axis, return_grad,
                               grad_output, grad_out);
        },
        py::arg("input"), py::arg("target"), py::arg("weight"), py::arg("ignore_index"), py::arg("reduction"),
        py::arg("axis"), py::arg("return_grad"), py::arg("grad_output"), py::arg("grad_out"),
        "nll_loss's arguments as given: the result for (N, C) log-probabilities with int64 targets and default "
        "options (mean, sum, or none without gradient); None for any other call.");
    m.def(
        "cross_entropy",
        [](const py::array& x, const py::array& target, const py::object& weight, int64_t ignore_index,
           double label_smoothing, const std::string& reduction, int64_t axis, const py::object& out,
           const py::object& grad, const py::object& grad_output, double z_loss, const py::object& lse,
           double softcap) {
            return classification_loss_binding(false, x, target, weight, ignore_index, label_smoothing, reduction,
                                               axis, out, grad, grad_output, CrossEntropyExtras{z_loss, lse, softcap});
        },
        py::arg("input").noconvert(), py::arg("target").noconvert(), py::arg("weight"), py::arg("ignore_index"),
        py::arg("label_smoothing"), py::arg("reduction"), py::arg("axis"), py::arg("out"),
        py::arg("grad") = py::none(), py::arg("grad_output") = py::none(), py::arg("z_loss") = 0.0,
        py::arg("lse") = py::none(), py::arg("softcap") = 0.0,
        "Cross-entropy from logits; returns the mean/sum (a NumPy scalar for float32/float64), or writes "
        "per-position losses to out (and returns None); "
        "with grad, also writes the gradient w.r.t. the input there; with z_loss, adds z lse^2 per non-ignored "
        "position (Liger's reduction); with lse, writes each position's log-sum-exp there; softcap > 0: of the "
        "logits softcap tanh(x / softcap).");
    m.def(
        "nll_loss",
        [](const py::array& x, const py::array& target, const py::object& weight, int64_t ignore_index,
           const std::string& reduction, int64_t axis, const py::object& out, const py::object& grad,
           const py::object& grad_output) {
            return classification_loss_binding(true, x, target, weight, ignore_index, 0.0, reduction, axis, out, grad,
                                               grad_output);
        },
        py::arg("input").noconvert(), py::arg("target").noconvert(), py::arg("weight"), py::arg("ignore_index"),
        py::arg("reduction"), py::arg("axis"), py::arg("out"), py::arg("grad") = py::none(),
        py::arg("grad_output") = py::none(),
        "Negative log-likelihood of log-probabilities; returns the mean/sum, or writes to out.");
}

}  // namespace fastloss::bindings
