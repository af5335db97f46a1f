// The table of kernel entry points. One table is compiled per instruction set (cpp/src/kernels/,
// one namespace per ISA) and dispatch.hpp chooses one at run time.
//
// Kernels are serial and trust their arguments: shapes, strides and pointers were checked by the
// bindings, and threading is the caller's (parallel.hpp). All sizes and strides are int64_t and
// counted in elements, never bytes.
#pragma once

#include <cstdint>

namespace fastloss {

// Softmax-family kernels for one floating type T.
//
// Two memory layouts cover every axis of every strided array without a copy:
//  * rows:    each row holds `classes` contiguous values; row r starts at x + r * x_row_stride.
//  * columns: `columns` contiguous positions, each a softmax over `classes` values spaced
//             x_class_stride apart: value c of position j is x[c * x_class_stride + j]. This is
//             the layout of a class axis that is not the last one, e.g. axis 1 of (N, C, H, W);
//             kernels vectorise across positions instead of gathering a strided row.
template <class T>
struct SoftmaxKernels {
    // stream_output: write y with non-temporal stores (outputs much larger than the caches).
    void (*log_softmax_rows)(const T* x, int64_t x_row_stride, T* y, int64_t y_row_stride,
                             int64_t rows, int64_t classes, bool stream_output);
    void (*softmax_rows)(const T* x, int64_t x_row_stride, T* y, int64_t y_row_stride,
                         int64_t rows, int64_t classes);
    // out[r * out_stride] = logsumexp of row r.
    void (*logsumexp_rows)(const T* x, int64_t x_row_stride, T* out, int64_t out_stride,
                           int64_t rows, int64_t classes);

    void (*log_softmax_columns)(const T* x, int64_t x_class_stride, T* y, int64_t y_class_stride,
                                int64_t columns, int64_t classes);
    void (*softmax_columns)(const T* x, int64_t x_class_stride, T* y, int64_t y_class_stride,
                            int64_t columns, int64_t classes);
    // out[j * out_stride] = logsumexp of position j.
    void (*logsumexp_columns)(const T* x, int64_t x_class_stride, T* out, int64_t out_stride,
                              int64_t columns, int64_t classes);
};

// Options of a cross-entropy, shared by both target kinds.
template <class T>
struct CrossEntropyParams {
    int64_t classes;
    const T* weight;        // (classes,) contiguous, or nullptr for all ones
    T weight_sum;           // sum of weight (classes when weight is null): label smoothing needs it
    int64_t ignore_index;   // index targets: rows with this target are skipped and get loss 0
    T label_smoothing;      // epsilon in [0, 1]
};

// Cross-entropy from logits, one loss per position (the caller reduces). Targets were checked by
// the caller: every index target is ignore_index or in [0, classes).
//  * index targets:       loss = (1-eps) w[y] (lse - x_y) + (eps/C) sum_c w[c] (lse - x_c)
//  * probability targets: loss = -sum_c w[c] q'_c (x_c - lse),  q' = (1-eps) q + eps/C
// Rows and columns layouts as for SoftmaxKernels; target and loss are per-position operands,
// `target_stride` / `loss_stride` apart from one position to the next.
template <class T>
struct CrossEntropyKernels {
    void (*index_rows)(const T* x, int64_t x_row_stride, const int64_t* target,
                       int64_t target_stride, T* loss, int64_t loss_stride, int64_t rows,
                       const CrossEntropyParams<T>& params);
    void (*index_columns)(const T* x, int64_t x_class_stride, const int64_t* target,
                          int64_t target_stride, T* loss, int64_t loss_stride, int64_t columns,
                          const CrossEntropyParams<T>& params);
    void (*probability_rows)(const T* x, int64_t x_row_stride, const T* q, int64_t q_row_stride,
                             T* loss, int64_t loss_stride, int64_t rows,
                             const CrossEntropyParams<T>& params);
    void (*probability_columns)(const T* x, int64_t x_class_stride, const T* q,
                                int64_t q_class_stride, T* loss, int64_t loss_stride,
                                int64_t columns, const CrossEntropyParams<T>& params);
};

// One segment of an elementwise loss over broadcast operands: n elements, element i of an
// operand at ptr[i * stride]. A stride of 0 repeats one value (a broadcast axis); kernels
// vectorise when every stride is 0 or 1 and gather/scatter otherwise.
template <class T>
struct ElementwiseSegment {
    const T* input = nullptr;
    int64_t input_stride = 0;
    const T* target = nullptr;
    int64_t target_stride = 0;
    const T* weight = nullptr;  // nullptr: no weight
    int64_t weight_stride = 0;
    const T* pos_weight = nullptr;  // BCE with logits only; nullptr: no pos_weight
    int64_t pos_weight_stride = 0;
    T* out = nullptr;  // nullptr: only the sum is wanted
    int64_t out_stride = 0;
};

// What a segment kernel reports: the sum of its losses (accumulated in float64 blocks; 0 when
// the losses were written to `out`) and whether an operand held a value outside its domain
// (binary_cross_entropy: input or target outside [0, 1], NaN included). Kernels never throw:
// the caller raises after its parallel region.
struct SegmentResult {
    double sum = 0.0;
    bool input_out_of_range = false;
    bool target_out_of_range = false;
};

// kl_div, pointwise, with input = log q:
//   log_target = false: target * (log target - input), 0 where target = 0 (xlogy), unless
//                       input = -inf or NaN (0 * input is NaN); target < 0 gives NaN.
//   log_target = true:  exp(target) * (target - input).
template <class T>
struct KLDivKernels {
    SegmentResult (*forward)(const ElementwiseSegment<T>& s, int64_t n, bool log_target);
};

// Binary cross-entropy, pointwise (w = weight, pw = pos_weight, 1 when absent):
//   probabilities p: -w [y max(log p, -100) + (1 - y) max(log(1 - p), -100)], and p, y are
//                    checked to lie in [0, 1] (reported in SegmentResult, never thrown)
//   logits x:        w [(1 - y) x + (1 + (pw - 1) y) softplus(-x)]
template <class T>
struct BinaryCrossEntropyKernels {
    SegmentResult (*probabilities)(const ElementwiseSegment<T>& s, int64_t n);
    SegmentResult (*logits)(const ElementwiseSegment<T>& s, int64_t n);
};

// Elementwise vector math, exposed so tests can check the documented error bounds and the native
// harness can measure throughput. y may equal x.
template <class T>
struct VectorMathKernels {
    void (*exp)(const T* x, T* y, int64_t n);
    void (*log)(const T* x, T* y, int64_t n);
    void (*log1p)(const T* x, T* y, int64_t n);
    void (*log1p_unit)(const T* x, T* y, int64_t n);  // x in [0, 1]
};

// Streaming kernels for the roofline of the native benchmark harness.
struct BandwidthKernels {
    double (*read_sum)(const float* x, int64_t n);       // reads n floats once
    void (*copy)(const float* x, float* y, int64_t n);   // reads n, writes n
    void (*fill)(float* y, int64_t n, float value);      // writes n
};

struct KernelTable {
    const char* isa_name;
    SoftmaxKernels<float> softmax_f32;
    SoftmaxKernels<double> softmax_f64;
    CrossEntropyKernels<float> cross_entropy_f32;
    CrossEntropyKernels<double> cross_entropy_f64;
    KLDivKernels<float> kl_div_f32;
    KLDivKernels<double> kl_div_f64;
    BinaryCrossEntropyKernels<float> binary_cross_entropy_f32;
    BinaryCrossEntropyKernels<double> binary_cross_entropy_f64;
    VectorMathKernels<float> math_f32;
    VectorMathKernels<double> math_f64;
    BandwidthKernels bandwidth;
};

template <class T>
const SoftmaxKernels<T>& softmax_kernels(const KernelTable& table);
template <>
inline const SoftmaxKernels<float>& softmax_kernels<float>(const KernelTable& table) {
    return table.softmax_f32;
}
template <>
inline const SoftmaxKernels<double>& softmax_kernels<double>(const KernelTable& table) {
    return table.softmax_f64;
}

template <class T>
const CrossEntropyKernels<T>& cross_entropy_kernels(const KernelTable& table);
template <>
inline const CrossEntropyKernels<float>& cross_entropy_kernels<float>(const KernelTable& table) {
    return table.cross_entropy_f32;
}
template <>
inline const CrossEntropyKernels<double>& cross_entropy_kernels<double>(const KernelTable& table) {
    return table.cross_entropy_f64;
}

template <class T>
const KLDivKernels<T>& kl_div_kernels(const KernelTable& table);
template <>
inline const KLDivKernels<float>& kl_div_kernels<float>(const KernelTable& table) {
    return table.kl_div_f32;
}
template <>
inline const KLDivKernels<double>& kl_div_kernels<double>(const KernelTable& table) {
    return table.kl_div_f64;
}

template <class T>
const BinaryCrossEntropyKernels<T>& binary_cross_entropy_kernels(const KernelTable& table);
template <>
inline const BinaryCrossEntropyKernels<float>& binary_cross_entropy_kernels<float>(
    const KernelTable& table) {
    return table.binary_cross_entropy_f32;
}
template <>
inline const BinaryCrossEntropyKernels<double>& binary_cross_entropy_kernels<double>(
    const KernelTable& table) {
    return table.binary_cross_entropy_f64;
}

template <class T>
const VectorMathKernels<T>& math_kernels(const KernelTable& table);
template <>
inline const VectorMathKernels<float>& math_kernels<float>(const KernelTable& table) {
    return table.math_f32;
}
template <>
inline const VectorMathKernels<double>& math_kernels<double>(const KernelTable& table) {
    return table.math_f64;
}

// Each ISA namespace defines kernel_table() in cpp/src/kernels/table.cpp.
namespace scalar { const KernelTable& kernel_table(); }
namespace avx2 { const KernelTable& kernel_table(); }
namespace avx512 { const KernelTable& kernel_table(); }

}  // namespace fastloss
