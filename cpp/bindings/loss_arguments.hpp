// Argument helpers shared by the loss bindings: the reduction, and per-position arrays (the
// input's shape without the class axis).
#pragma once

#include <cmath>
#include <stdexcept>
#include <string>

#include "bindings/array_checks.hpp"
#include "ops/cross_entropy_ops.hpp"
#include "ops/inline_vector.hpp"

namespace fastloss::bindings {

inline Reduction parse_reduction(const std::string& r) {
    if (r == "none") return Reduction::none;
    if (r == "mean") return Reduction::mean;
    if (r == "sum") return Reduction::sum;
    throw std::invalid_argument("reduction must be 'none', 'mean' or 'sum', got '" + r + "'");
}

// The softcap option as the kernels take it (cross_entropy, distillation_loss): 0 for none, or a
// finite number > 0 (the Python layer maps None to 0 and words the error for users).
inline void check_softcap(double softcap) {
    if (!(softcap >= 0.0 && std::isfinite(softcap))) {
        throw std::invalid_argument("softcap must be a finite number > 0, got " + std::to_string(softcap));
    }
}

// Whether `a` has the per-position shape: x's shape without the class axis.
inline bool has_position_shape(const py::array& a, const py::array& x, int axis) {
    if (a.ndim() != x.ndim() - 1) return false;
    for (py::ssize_t d = 0, k = 0; d < x.ndim(); ++d) {
        if (d == axis) continue;
        if (a.shape(k++) != x.shape(d)) return false;
    }
    return true;
}

// Strides of a per-position array in the full-rank form (0 on the class axis).
inline Extents full_rank_strides(const py::array& a, int axis, py::ssize_t ndim) {
    Extents s(size_t(ndim), 0);
    for (py::ssize_t d = 0, k = 0; d < ndim; ++d) {
        if (d == axis) continue;
        s[size_t(d)] = a.strides(k++) / a.itemsize();
    }
    return s;
}

inline bool is_c_contiguous(const py::array& a) {
    return (a.flags() & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_) != 0;
}

// The per-position output of reduction 'none' (shape: x's without the class axis; x's dtype;
// writeable), kept alive in `holder`. `contiguous`: the operation writes it densely.
inline void check_position_output(const py::array& x, const char* input_name, int axis, const py::object& out,
                                  bool contiguous, py::array& holder, const char* name = "out") {
    if (out.is_none()) throw std::invalid_argument("reduction 'none' needs an output array");
    holder = out.cast<py::array>();
    check_same_type(x, holder, input_name, name);
    float_type(holder, name);
    check_writeable(holder, name);
    if (!has_position_shape(holder, x, axis) || (contiguous && !is_c_contiguous(holder))) {
        throw std::invalid_argument(std::string(name) + " must be " + (contiguous ? "a C-contiguous array " : "an array ") +
                                    "of the shape of " + input_name + " " + shape_string(x) + " without axis " +
                                    std::to_string(axis) + ", got " + shape_string(holder));
    }
}

// The target of a loss with classes (fields target, target_strides, probabilities,
// probability_strides, shape): int64 class indices of the per-position shape, or floating class
// probabilities of the input's shape (when `allow_probabilities`).
template <class T, class Call>
void set_class_targets(Call& call, const py::array& x, const char* input_name, int axis, const py::array& target,
                       bool allow_probabilities) {
    const py::dtype dt = target.dtype();
    if (dt.kind() == 'f' || dt.kind() == 'V') {  // floating (bfloat16 is kind 'V'): probabilities
        if (!allow_probabilities) throw py::type_error("target must be an integer array of class indices");
        check_same_type(x, target, input_name, "target");
        float_type(target, "target");
        if (shape_of(target) != shape_of(x)) {
            throw std::invalid_argument("probability target must have the shape of " + std::string(input_name) + " " +
                                        shape_string(x) + ", got " + shape_string(target));
        }
        call.probabilities = static_cast<const T*>(target.data());
        call.probability_strides = element_strides(target);
        return;
    }
    if (dt.kind() != 'i' || dt.itemsize() != 8 || !is_native_byte_order(dt) ||
        !(target.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) {
        throw py::type_error("target must be an aligned native int64 array, got dtype " + std::string(py::str(dt)));
    }
    if (!has_position_shape(target, x, axis)) {
        throw std::invalid_argument("target has shape " + shape_string(target) + ", which does not match " +
                                    std::string(input_name) + " of shape " + shape_string(x) + " without axis " +
                                    std::to_string(axis));
    }
    call.target = static_cast<const int64_t*>(target.data());
    call.target_strides = full_rank_strides(target, axis, x.ndim());
}

// The optional class weights (field weight): a contiguous (C,) array of the input's dtype, kept
// alive in `holder` until the call has run.
template <class T, class Call>
void set_class_weight(Call& call, const py::array& x, const char* input_name, int axis, const py::object& weight,
                      py::array& holder) {
    if (weight.is_none()) return;
    holder = weight.cast<py::array>();
    check_same_type(x, holder, input_name, "weight");
    float_type(holder, "weight");  // aligned, native byte order
    if (holder.ndim() != 1 || holder.shape(0) != x.shape(axis) || !is_c_contiguous(holder)) {
        throw std::invalid_argument("weight must be a contiguous array of shape (" + std::to_string(x.shape(axis)) +
                                    ",), got " + shape_string(holder));
    }
    call.weight = static_cast<const T*>(holder.data());
}

// The optional gradient operands of a loss call (fields grad, grad_strides, grad_output,
// grad_output_strides, grad_output_scalar): grad has x's shape; grad_output is a number for mean
// and sum, or an array of the per-position shape for none. The arrays are kept alive in the two
// holders until the call has run.
template <class T, class Call>
void set_gradient_operands(Call& call, const py::array& x, const char* input_name, int axis, Reduction reduction,
                           const py::object& grad, const py::object& grad_output, py::array& grad_holder,
                           py::array& grad_output_holder) {
    if (grad.is_none()) return;
    grad_holder = grad.cast<py::array>();
    check_same_type(x, grad_holder, input_name, "grad_out");
    float_type(grad_holder, "grad_out");  // aligned, native byte order
    check_writeable(grad_holder, "grad_out");
    if (shape_of(grad_holder) != shape_of(x)) {
        throw std::invalid_argument("grad_out has shape " + shape_string(grad_holder) + ", expected the input's shape " +
                                    shape_string(x));
    }
    call.grad = static_cast<T*>(grad_holder.mutable_data());
    call.grad_strides = element_strides(grad_holder);
    if (grad_output.is_none()) return;
    if (reduction != Reduction::none) {
        call.grad_output_scalar = compute_t<T>(grad_output.cast<double>());  // a number for mean and sum
        return;
    }
    grad_output_holder = grad_output.cast<py::array>();
    check_same_type(x, grad_output_holder, input_name, "grad_output");
    float_type(grad_output_holder, "grad_output");
    if (!has_position_shape(grad_output_holder, x, axis)) {
        throw std::invalid_argument("grad_output has shape " + shape_string(grad_output_holder) +
                                    ", expected the loss's shape: the input's shape " + shape_string(x) +
                                    " without axis " + std::to_string(axis));
    }
    call.grad_output = static_cast<const T*>(grad_output_holder.data());
    call.grad_output_strides = full_rank_strides(grad_output_holder, axis, x.ndim());
}

}  // namespace fastloss::bindings
