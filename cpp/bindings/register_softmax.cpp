// softmax, log_softmax, logsumexp, entropy bindings: check memory safety, release the GIL, run.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <vector>

#include "bindings/array_checks.hpp"
#include "bindings/common_case.hpp"
#include "ops/softmax_ops.hpp"

namespace fastloss::bindings {

namespace {

void check_same_shape(const py::array& x, const py::array& out, int axis, bool reduced) {
    bool ok = out.ndim() == x.ndim();
    for (py::ssize_t d = 0; ok && d < x.ndim(); ++d) {
        ok = out.shape(d) == ((reduced && d == axis) ? 1 : x.shape(d));
    }
    if (!ok && reduced && out.ndim() == x.ndim() - 1) {  // the reduced axis dropped
        ok = true;
        for (py::ssize_t d = 0, k = 0; ok && d < x.ndim(); ++d) {
            if (d != axis) ok = out.shape(k++) == x.shape(d);
        }
    }
    if (!ok) {
        throw std::invalid_argument("out has shape " + shape_string(out) + ", expected " +
                                    (reduced ? "the shape of x without (or with 1 on) the reduced axis, x being "
                                             : std::string()) + shape_string(x));
    }
}

void softmax_binding(const py::array& x, py::array& out, int64_t axis_arg, bool log) {
    const FloatType type = float_type(x, "x");
    check_same_type(x, out, "x", "out");
    check_writeable(out, "out");
    const int axis = checked_axis(x, axis_arg);
    check_same_shape(x, out, axis, false);
    const auto shape = shape_of(x);
    const auto xs = element_strides(x), ys = element_strides(out);
    const SoftmaxKind kind = log ? SoftmaxKind::log_softmax : SoftmaxKind::softmax;
    const void* xp = x.data();
    void* yp = out.mutable_data();
    const ReleaseGilIf nogil(x.size() >= kReleaseGilElements);
    with_storage_type(type, [&](auto tag) {
        using S = decltype(tag);
        softmax_forward(kind, static_cast<const S*>(xp), xs, static_cast<S*>(yp), ys, shape, axis);
    });
}

enum class Reduced { logsumexp, entropy, entropy_of_probabilities };

void reduced_binding(const py::array& x, py::array& out, int64_t axis_arg, Reduced what) {
    const FloatType type = float_type(x, "x");
    check_same_type(x, out, "x", "out");
    check_writeable(out, "out");
    const int axis = checked_axis(x, axis_arg);
    check_same_shape(x, out, axis, true);
    const auto shape = shape_of(x);
    const auto xs = element_strides(x);
    auto os = element_strides(out);
    if (out.ndim() == x.ndim() - 1) os.insert(os.begin() + axis, 0);  // full rank for the geometry
    const void* xp = x.data();
    void* op = out.mutable_data();
    const ReleaseGilIf nogil(x.size() >= kReleaseGilElements);
    with_storage_type(type, [&](auto tag) {
        using S = decltype(tag);
        const auto* in = static_cast<const S*>(xp);
        auto* result = static_cast<S*>(op);
        if (what == Reduced::logsumexp) {
            logsumexp_forward(in, xs, result, os, shape, axis);
        } else {
            entropy_forward(in, xs, result, os, shape, axis, what == Reduced::entropy_of_probabilities);
        }
    });
}

void softmax_backward_binding(const py::array& g, const py::array& y, py::array& out, int64_t axis_arg, bool log) {
    const FloatType type = float_type(g, "grad_output");
    check_same_type(g, y, "grad_output", "output");
    check_same_type(g, out, "grad_output", "out");
    check_writeable(out, "out");
    const int axis = checked_axis(g, axis_arg);
    check_same_shape(g, y, axis, false);
    check_same_shape(g, out, axis, false);
    const auto shape = shape_of(g);
    const auto gs = element_strides(g), ys = element_strides(y), os = element_strides(out);
    const void* gp = g.data();
    const void* yp = y.data();
    void* op = out.mutable_data();
    const SoftmaxKind kind = log ? SoftmaxKind::log_softmax : SoftmaxKind::softmax;
    const ReleaseGilIf nogil(g.size() >= kReleaseGilElements);
    with_storage_type(type, [&](auto tag) {
        using S = decltype(tag);
        softmax_backward(kind, static_cast<const S*>(gp), gs, static_cast<const S*>(yp), ys, static_cast<S*>(op), os,
                         shape, axis);
    });
}

// The common calls (common_case.hpp): a plain float array and an int axis, nothing else asked
// (no dtype=, out=, keepdims=, probs=). The results are new C-order arrays (a NumPy scalar for a
// reduction to 0-d), as the general path's for C-contiguous inputs.
std::optional<int> common_axis(const py::array& x, py::handle axis) {
    const auto a = exact_int(axis);
    if (!a || x.ndim() == 0 || *a < -x.ndim() || *a >= x.ndim()) return std::nullopt;
    return int(*a < 0 ? *a + x.ndim() : *a);
}

py::object softmax_common_case(py::handle input, py::handle axis_arg, py::handle dtype, py::handle out, bool log) {
    if (!dtype.is_none() || !out.is_none() || !plain_float_array(input)) return py::none();
    const auto x = py::reinterpret_borrow<py::array>(input);
    const auto axis = common_axis(x, axis_arg);
    if (!axis || x.size() == 0) return py::none();
    py::array y = new_array(x, std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    softmax_binding(x, y, *axis, log);
    return std::move(y);
}

py::object reduced_common_case(py::handle input, py::handle axis_arg, Reduced what) {
    if (!plain_float_array(input)) return py::none();
    const auto x = py::reinterpret_borrow<py::array>(input);
    const auto axis = common_axis(x, axis_arg);
    if (!axis || (what == Reduced::logsumexp && x.shape(*axis) == 0)) return py::none();
    py::array result = new_array(x, shape_without(x, *axis));
    reduced_binding(x, result, *axis, what);
    if (result.ndim() == 0) return result.attr("__getitem__")(py::tuple());  // a NumPy scalar, as x[()]
    return std::move(result);
}

py::object softmax_backward_common_case(py::handle g, py::handle y, py::handle axis_arg, py::handle out, bool log) {
    if (!out.is_none() || !plain_float_pair(g, y)) return py::none();
    const auto grad_output = py::reinterpret_borrow<py::array>(g);
    const auto axis = common_axis(grad_output, axis_arg);
    if (!axis || grad_output.size() == 0) return py::none();
    py::array dx = new_array(grad_output, std::vector<py::ssize_t>(grad_output.shape(),
                                                                   grad_output.shape() + grad_output.ndim()));
    softmax_backward_binding(grad_output, py::reinterpret_borrow<py::array>(y), dx, *axis, log);
    return std::move(dx);
}

}  // namespace

void register_softmax(py::module_& m) {
    m.def(
        "softmax_backward_common_case",
        [](py::handle g, py::handle y, py::handle axis, py::handle out) {
            return softmax_backward_common_case(g, y, axis, out, false);
        },
        py::arg("grad_output"), py::arg("output"), py::arg("axis"), py::arg("out"),
        "softmax_backward's arguments as given: the result of the common call (common_case.hpp); None for any "
        "other.");
    m.def(
        "log_softmax_backward_common_case",
        [](py::handle g, py::handle y, py::handle axis, py::handle out) {
            return softmax_backward_common_case(g, y, axis, out, true);
        },
        py::arg("grad_output"), py::arg("output"), py::arg("axis"), py::arg("out"),
        "log_softmax_backward's arguments as given: the result of the common call (common_case.hpp); None for any "
        "other.");
    m.def(
        "softmax_common_case",
        [](py::handle x, py::handle axis, py::handle dtype, py::handle out) {
            return softmax_common_case(x, axis, dtype, out, false);
        },
        py::arg("x"), py::arg("axis"), py::arg("dtype"), py::arg("out"),
        "softmax's arguments as given: the result of the common call (common_case.hpp); None for any other.");
    m.def(
        "log_softmax_common_case",
        [](py::handle x, py::handle axis, py::handle dtype, py::handle out) {
            return softmax_common_case(x, axis, dtype, out, true);
        },
        py::arg("x"), py::arg("axis"), py::arg("dtype"), py::arg("out"),
        "log_softmax's arguments as given: the result of the common call (common_case.hpp); None for any other.");
    m.def(
        "logsumexp_common_case",
        [](py::handle x, py::handle axis, py::handle keepdims) {
            if (keepdims.ptr() != Py_False) return py::object(py::none());
            return reduced_common_case(x, axis, Reduced::logsumexp);
        },
        py::arg("x"), py::arg("axis"), py::arg("keepdims"),
        "logsumexp's arguments as given: the result of the common call (common_case.hpp); None for any other.");
    m.def(
        "entropy_common_case",
        [](py::handle logits, py::handle axis, py::handle probs) {
            if (!probs.is_none()) return py::object(py::none());
            return reduced_common_case(logits, axis, Reduced::entropy);
        },
        py::arg("logits"), py::arg("axis"), py::arg("probs"),
        "entropy's arguments as given: the result of the common call (common_case.hpp); None for any other.");
    m.def("softmax_backward",
          [](const py::array& g, const py::array& y, py::array& out, int64_t axis) {
              softmax_backward_binding(g, y, out, axis, false);
          },
          py::arg("grad_output").noconvert(), py::arg("output").noconvert(), py::arg("out").noconvert(),
          py::arg("axis"), "out = gradient of softmax from grad_output and the softmax output.");
    m.def("log_softmax_backward",
          [](const py::array& g, const py::array& y, py::array& out, int64_t axis) {
              softmax_backward_binding(g, y, out, axis, true);
          },
          py::arg("grad_output").noconvert(), py::arg("output").noconvert(), py::arg("out").noconvert(),
          py::arg("axis"), "out = gradient of log_softmax from grad_output and the log_softmax output.");
    m.def("softmax", [](const py::array& x, py::array& out, int64_t axis) { softmax_binding(x, out, axis, false); },
          py::arg("x").noconvert(), py::arg("out").noconvert(), py::arg("axis"),
          "out = softmax(x) along axis (axis already normalised, out preallocated).");
    m.def("log_softmax", [](const py::array& x, py::array& out, int64_t axis) { softmax_binding(x, out, axis, true); },
          py::arg("x").noconvert(), py::arg("out").noconvert(), py::arg("axis"),
          "out = log_softmax(x) along axis (axis already normalised, out preallocated).");
    m.def("logsumexp",
          [](const py::array& x, py::array& out, int64_t axis) { reduced_binding(x, out, axis, Reduced::logsumexp); },
          py::arg("x").noconvert(), py::arg("out").noconvert(), py::arg("axis"),
          "out = logsumexp(x) along axis; out has x's shape without, or with 1 on, that axis.");
    m.def("entropy",
          [](const py::array& x, py::array& out, int64_t axis, bool probabilities) {
              reduced_binding(x, out, axis, probabilities ? Reduced::entropy_of_probabilities : Reduced::entropy);
          },
          py::arg("x").noconvert(), py::arg("out").noconvert(), py::arg("axis"), py::arg("probabilities") = false,
          "out = Shannon entropy along axis of softmax(x), or with probabilities=True of x itself "
          "(sum of -x log x, torch.special.entr); out shaped as for logsumexp.");
}

}  // namespace fastloss::bindings
