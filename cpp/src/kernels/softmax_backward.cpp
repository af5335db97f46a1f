// Backward of softmax and log_softmax from their outputs (see kernel_table.hpp for the formulas).
// Two sweeps per row: a reduction (sum g*y, or sum g), then the elementwise gradient; dx may
// alias g (the incoming gradient) since each element is read before it is written.
#include "fastloss/kernel_table.hpp"
#include "simd/vector_math-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

template <class S, bool Log, class T = compute_t<S>>
void backward_rows(const S* g, int64_t g_row_stride, const S* y, int64_t y_row_stride, S* dx,
                   int64_t dx_row_stride, int64_t rows, int64_t classes) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V zero = V::broadcast(T(0));
    for (int64_t r = 0; r < rows; ++r) {
        const S* gr = g + r * g_row_stride;
        const S* yr = y + r * y_row_stride;
        S* dr = dx + r * dx_row_stride;
        V acc0 = zero, acc1 = zero;  // sum g*y (softmax) or sum g (log_softmax)
        int64_t i = 0;
        for (; i + 2 * W <= classes; i += 2 * W) {
            acc0 = Log ? acc0 + vload(gr + i) : fma(vload(gr + i), vload(yr + i), acc0);
            acc1 = Log ? acc1 + vload(gr + i + W) : fma(vload(gr + i + W), vload(yr + i + W), acc1);
        }
        for (; i < classes; i += W) {
            const int64_t lanes = classes - i < W ? classes - i : W;
            const V gv = vload_partial(gr + i, lanes, T(0));
            acc0 = Log ? acc0 + gv : fma(gv, vload_partial(yr + i, lanes, T(0)), acc0);
        }
        const V total = V::broadcast(reduce_sum(acc0 + acc1));
        for (i = 0; i < classes; i += W) {
            const int64_t lanes = classes - i < W ? classes - i : W;
            const bool full = lanes == W;
            const V gv = full ? vload(gr + i) : vload_partial(gr + i, lanes, T(0));
            const V yv = full ? vload(yr + i) : vload_partial(yr + i, lanes, T(0));
            const V out = Log ? gv - vexp(yv) * total : yv * (gv - total);
            if (full) store(dr + i, out); else store_partial(dr + i, lanes, out);
        }
    }
}

template <class S, bool Log, class T = compute_t<S>>
void backward_columns(const S* g, int64_t g_class_stride, const S* y, int64_t y_class_stride, S* dx,
                      int64_t dx_class_stride, int64_t columns, int64_t classes) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    for (int64_t j = 0; j < columns; j += W) {
        const int64_t lanes = columns - j < W ? columns - j : W;
        auto load = [&](const S* base, int64_t stride, int64_t c) {
            const S* p = base + c * stride + j;
            return lanes == W ? vload(p) : vload_partial(p, lanes, T(0));
        };
        V total = V::broadcast(T(0));
        for (int64_t c = 0; c < classes; ++c) {
            const V gv = load(g, g_class_stride, c);
            total = Log ? total + gv : fma(gv, load(y, y_class_stride, c), total);
        }
        for (int64_t c = 0; c < classes; ++c) {
            const V gv = load(g, g_class_stride, c), yv = load(y, y_class_stride, c);
            const V out = Log ? gv - vexp(yv) * total : yv * (gv - total);
            S* p = dx + c * dx_class_stride + j;
            if (lanes == W) store(p, out); else store_partial(p, lanes, out);
        }
    }
}

template <class S>
SoftmaxBackwardKernels<S> make_softmax_backward_kernels() {
    SoftmaxBackwardKernels<S> k{};
    k.softmax_rows = &backward_rows<S, false>;
    k.log_softmax_rows = &backward_rows<S, true>;
    k.softmax_columns = &backward_columns<S, false>;
    k.log_softmax_columns = &backward_columns<S, true>;
    return k;
}

}  // namespace

void register_softmax_backward_kernels(KernelTable& table) {
    for_each_kernel_set(table, [](auto& set) {
        set.softmax_backward = make_softmax_backward_kernels<typename std::decay_t<decltype(set)>::Storage>();
    });
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
