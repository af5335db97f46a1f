// Backward of softmax and log_softmax from their outputs (see kernel_table.hpp for the formulas).
// Two sweeps per row: a reduction (sum g*y, or sum g), then the elementwise gradient; dx may
// alias g (the incoming gradient) since each element is read before it is written.
#include "fastloss/kernel_table.hpp"
#include "simd/vector_math-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

template <class T, bool Log>
void backward_rows(const T* g, int64_t g_row_stride, const T* y, int64_t y_row_stride, T* dx,
                   int64_t dx_row_stride, int64_t rows, int64_t classes) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V zero = V::broadcast(T(0));
    for (int64_t r = 0; r < rows; ++r) {
        const T* gr = g + r * g_row_stride;
        const T* yr = y + r * y_row_stride;
        T* dr = dx + r * dx_row_stride;
        V acc0 = zero, acc1 = zero;  // sum g*y (softmax) or sum g (log_softmax)
        int64_t i = 0;
        for (; i + 2 * W <= classes; i += 2 * W) {
            acc0 = Log ? acc0 + V::load(gr + i) : fma(V::load(gr + i), V::load(yr + i), acc0);
            acc1 = Log ? acc1 + V::load(gr + i + W) : fma(V::load(gr + i + W), V::load(yr + i + W), acc1);
        }
        for (; i < classes; i += W) {
            const int64_t lanes = classes - i < W ? classes - i : W;
            const V gv = V::load_partial(gr + i, lanes, T(0));
            acc0 = Log ? acc0 + gv : fma(gv, V::load_partial(yr + i, lanes, T(0)), acc0);
        }
        const V total = V::broadcast(reduce_sum(acc0 + acc1));
        for (i = 0; i < classes; i += W) {
            const int64_t lanes = classes - i < W ? classes - i : W;
            const bool full = lanes == W;
            const V gv = full ? V::load(gr + i) : V::load_partial(gr + i, lanes, T(0));
            const V yv = full ? V::load(yr + i) : V::load_partial(yr + i, lanes, T(0));
            const V out = Log ? gv - vexp(yv) * total : yv * (gv - total);
            if (full) store(dr + i, out); else store_partial(dr + i, lanes, out);
        }
    }
}

template <class T, bool Log>
void backward_columns(const T* g, int64_t g_class_stride, const T* y, int64_t y_class_stride, T* dx,
                      int64_t dx_class_stride, int64_t columns, int64_t classes) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    for (int64_t j = 0; j < columns; j += W) {
        const int64_t lanes = columns - j < W ? columns - j : W;
        auto load = [&](const T* base, int64_t stride, int64_t c) {
            const T* p = base + c * stride + j;
            return lanes == W ? V::load(p) : V::load_partial(p, lanes, T(0));
        };
        V total = V::broadcast(T(0));
        for (int64_t c = 0; c < classes; ++c) {
            const V gv = load(g, g_class_stride, c);
            total = Log ? total + gv : fma(gv, load(y, y_class_stride, c), total);
        }
        for (int64_t c = 0; c < classes; ++c) {
            const V gv = load(g, g_class_stride, c), yv = load(y, y_class_stride, c);
            const V out = Log ? gv - vexp(yv) * total : yv * (gv - total);
            T* p = dx + c * dx_class_stride + j;
            if (lanes == W) store(p, out); else store_partial(p, lanes, out);
        }
    }
}

template <class T>
SoftmaxBackwardKernels<T> make_softmax_backward_kernels() {
    SoftmaxBackwardKernels<T> k{};
    k.softmax_rows = &backward_rows<T, false>;
    k.log_softmax_rows = &backward_rows<T, true>;
    k.softmax_columns = &backward_columns<T, false>;
    k.log_softmax_columns = &backward_columns<T, true>;
    return k;
}

}  // namespace

void register_softmax_backward_kernels(KernelTable& table) {
    table.softmax_backward_f32 = make_softmax_backward_kernels<float>();
    table.softmax_backward_f64 = make_softmax_backward_kernels<double>();
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
