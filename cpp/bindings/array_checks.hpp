// Memory-safety checks at the Python boundary. Semantics and friendly messages live in the Python
// layer (python/fastloss/_validation.py); these re-checks make sure no call from Python, however
// wrong, can make a kernel read or write out of bounds.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "fastloss/half.hpp"
#include "ops/inline_vector.hpp"

namespace fastloss::bindings {

namespace py = pybind11;

enum class FloatType { f32, f64, f16, bf16 };

// Below this many elements the GIL stays held: releasing and re-taking it costs more than the
// work. Above it, kernels run without the GIL (they touch no Python objects).
constexpr int64_t kReleaseGilElements = 1 << 14;

// Releases the GIL for the rest of the scope when `condition` holds. Safe around kernels: they
// touch raw memory only, never Python objects.
class ReleaseGilIf {
  public:
    explicit ReleaseGilIf(bool condition) {
        if (condition) release_.emplace();
    }

  private:
    std::optional<py::gil_scoped_release> release_;
};

inline std::string shape_string(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t d = 0; d < a.ndim(); ++d) {
        s += std::to_string(a.shape(d));
        if (a.ndim() == 1 || d + 1 < a.ndim()) s += d + 1 < a.ndim() ? ", " : ",";
    }
    return s + ")";
}

// Whether the dtype is in this machine's byte order (no Python attribute lookup: hot path).
inline bool is_native_byte_order(const py::dtype& dt) {
    const char order = dt.byteorder();
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return order == '=' || order == '|' || order == '>';
#else
    return order == '=' || order == '|' || order == '<';
#endif
}

// float32, float64, float16 or bfloat16 (ml_dtypes' "bfloat16", a kind 'V' dtype), native byte order,
// aligned (so byte strides are whole elements).
inline FloatType float_type(const py::array& a, const char* name) {
    const py::dtype dt = a.dtype();
    const char kind = dt.kind();
    const auto size = dt.itemsize();
    FloatType type;
    if (kind == 'f' && size == 4) {
        type = FloatType::f32;
    } else if (kind == 'f' && size == 8) {
        type = FloatType::f64;
    } else if (kind == 'f' && size == 2) {
        type = FloatType::f16;
    } else if (kind == 'V' && size == 2 && std::string(py::str(dt.attr("name"))) == "bfloat16") {
        type = FloatType::bf16;
    } else {
        throw py::type_error(std::string(name) + " must be a float32, float64, float16 or bfloat16 array, got dtype " +
                             std::string(py::str(dt)));
    }
    if (!is_native_byte_order(dt)) {
        throw py::type_error(std::string(name) + " must be in native byte order");
    }
    if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) {
        throw std::invalid_argument(std::string(name) + " must be aligned");
    }
    return type;
}

// Calls f(S{}) with S the storage type of `type` (float, double, Half, BFloat16).
template <class F>
decltype(auto) with_storage_type(FloatType type, F&& f) {
    switch (type) {
    case FloatType::f64: return f(double{});
    case FloatType::f16: return f(Half{});
    case FloatType::bf16: return f(BFloat16{});
    case FloatType::f32: break;
    }
    return f(float{});
}

// An empty py::array holder, to be assigned later. (A default-constructed py::array is a real
// NumPy array of shape (0,): four of them were a tenth of a small loss call.)
inline py::array no_array() { return py::reinterpret_steal<py::array>(py::handle()); }

inline Extents shape_of(const py::array& a) {
    return Extents(a.shape(), a.shape() + a.ndim());
}

inline Extents element_strides(const py::array& a) {
    Extents s(size_t(a.ndim()));
    for (py::ssize_t d = 0; d < a.ndim(); ++d) s[size_t(d)] = a.strides(d) / a.itemsize();
    return s;
}

inline int checked_axis(const py::array& a, int64_t axis) {
    if (axis < 0 || axis >= a.ndim()) {
        throw std::invalid_argument("axis " + std::to_string(axis) + " is out of bounds for array of dimension " +
                                    std::to_string(a.ndim()));
    }
    return int(axis);
}

inline void check_writeable(const py::array& a, const char* name) {
    if (!a.writeable()) throw std::invalid_argument(std::string(name) + " must be writeable");
}

inline void check_same_type(const py::array& a, const py::array& b, const char* name_a, const char* name_b) {
    if (!a.dtype().is(b.dtype()) && !a.dtype().equal(b.dtype())) {
        throw py::type_error(std::string(name_b) + " must have the dtype of " + name_a + " (" +
                             std::string(py::str(a.dtype())) + "), got " + std::string(py::str(b.dtype())));
    }
}

}  // namespace fastloss::bindings
