// The table of kernel entry points. One table is compiled per instruction set (cpp/src/kernels/,
// one namespace per ISA) and dispatch.hpp chooses one at run time.
//
// Kernels are templates on the storage type S of the big arrays (float, double, Half, BFloat16)
// and compute in T = compute_t<S> (float32 for the half types): half values are widened on load
// and rounded once on store, so no converted copy of an input is ever made. Small per-position
// or per-class operands (losses before reduction, gradient scales, class weights) are in T.
//
// Kernels are serial and trust their arguments: shapes, strides and pointers were checked by the
// bindings, and threading is the caller's (parallel.hpp). All sizes and strides are int64_t and
// counted in elements, never bytes.
#pragma once

#include <cstdint>
#include <type_traits>

#include "fastloss/half.hpp"
#include "fastloss/row_statistics.hpp"

namespace fastloss {

// Softmax-family kernels for one floating type T.
//
// Two memory layouts cover every axis of every strided array without a copy:
//  * rows:    each row holds `classes` contiguous values; row r starts at x + r * x_row_stride.
//  * columns: `columns` contiguous positions, each a softmax over `classes` values spaced
//             x_class_stride apart: value c of position j is x[c * x_class_stride + j]. This is
//             the layout of a class axis that is not the last one, e.g. axis 1 of (N, C, H, W);
//             kernels vectorise across positions instead of gathering a strided row.
template <class S>
struct SoftmaxKernels {
    // stream_output: write y with non-temporal stores (outputs much larger than the caches).
    void (*log_softmax_rows)(const S* x, int64_t x_row_stride, S* y, int64_t y_row_stride,
                             int64_t rows, int64_t classes, bool stream_output);
    void (*softmax_rows)(const S* x, int64_t x_row_stride, S* y, int64_t y_row_stride,
                         int64_t rows, int64_t classes, bool stream_output);
    // out[r * out_stride] = logsumexp of row r.
    void (*logsumexp_rows)(const S* x, int64_t x_row_stride, S* out, int64_t out_stride,
                           int64_t rows, int64_t classes);

    // stream_output: as for the rows; a variant whose vectors are not whole cache lines ignores it.
    void (*log_softmax_columns)(const S* x, int64_t x_class_stride, S* y, int64_t y_class_stride,
                                int64_t columns, int64_t classes, bool stream_output);
    void (*softmax_columns)(const S* x, int64_t x_class_stride, S* y, int64_t y_class_stride,
                            int64_t columns, int64_t classes, bool stream_output);
    // out[j * out_stride] = logsumexp of position j.
    void (*logsumexp_columns)(const S* x, int64_t x_class_stride, S* out, int64_t out_stride,
                              int64_t columns, int64_t classes);
};

// Backward of softmax and log_softmax, given the forward output y and the incoming gradient g:
//   softmax:      dx = y * (g - sum_c g_c y_c)
//   log_softmax:  dx = g - exp(y) * sum_c g_c
// Rows and columns layouts as for SoftmaxKernels; all three arrays share one layout kind.
template <class S>
struct SoftmaxBackwardKernels {
    void (*softmax_rows)(const S* g, int64_t g_row_stride, const S* y, int64_t y_row_stride, S* dx,
                         int64_t dx_row_stride, int64_t rows, int64_t classes);
    void (*log_softmax_rows)(const S* g, int64_t g_row_stride, const S* y, int64_t y_row_stride,
                             S* dx, int64_t dx_row_stride, int64_t rows, int64_t classes);
    void (*softmax_columns)(const S* g, int64_t g_class_stride, const S* y, int64_t y_class_stride,
                            S* dx, int64_t dx_class_stride, int64_t columns, int64_t classes);
    void (*log_softmax_columns)(const S* g, int64_t g_class_stride, const S* y,
                                int64_t y_class_stride, S* dx, int64_t dx_class_stride,
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
    // The gradient kernels' z-loss factor (z lse^2 per non-ignored position; the loss's share is
    // added by the caller from the lse the kernels write): 2 z times the ratio of the z-loss's
    // reduction factor to the cross-entropy's, 0 without z-loss. See cross_entropy_grad.cpp.
    T z_loss_grad = T(0);
    // The capped kernels only (CrossEntropyKernels::capped_index_rows): the logits are taken as
    // softcap tanh(x / softcap), softcap > 0.
    T softcap = T(0);
    // The index gradient kernels and distillation's: write the gradient with non-temporal stores
    // (see streaming_store_min_bytes in ops/streaming_stores.hpp, cross_entropy_grad.cpp and
    // distillation.cpp's [Note: the rows' gradient streamed]; the columns kernels stream only
    // whole-line vectors, as the softmax columns do).
    bool stream_grad = false;
};

// Cross-entropy from logits, one loss per position (the caller reduces). Targets were checked by
// the caller: every index target is ignore_index or in [0, classes).
//  * index targets:       loss = (1-eps) w[y] (lse - x_y) + (eps/C) sum_c w[c] (lse - x_c)
//  * probability targets: loss = -sum_c w[c] q'_c (x_c - lse),  q' = (1-eps) q + eps/C
//
// The operands of one kernel call, a block of `count` positions in one of the SoftmaxKernels
// layouts. Each operand is a pointer and a stride:
//  * full operands (input, probabilities, grad) have the class axis. Rows layout: row r starts at
//    ptr + r * stride (the row stride), its classes contiguous. Columns layout: value c of
//    position j is at ptr[c * stride + j] (the class stride).
//  * per-position operands (target, scale, loss) hold one value per position, position k's at
//    ptr[k * stride], in both layouts.
template <class S>
struct CrossEntropyBlock {
    using T = compute_t<S>;
    const S* input = nullptr;  // the logits
    int64_t input_stride = 0;
    const int64_t* target = nullptr;  // the index kernels: class indices
    int64_t target_stride = 0;
    const S* probabilities = nullptr;  // the probability kernels: target probabilities q
    int64_t probability_stride = 0;
    T* loss = nullptr;
    int64_t loss_stride = 0;
    // Or nullptr: each position's log-sum-exp of its logits, ignored positions' too, beside its
    // loss (at lse[k * loss_stride]).
    T* lse = nullptr;
    // The gradient kernels only: grad = scale * d loss / d input, where scale is the position's
    // factor of the reduction (1/D for mean, 1 for sum, grad_output for none). grad may be input.
    const T* scale = nullptr;
    int64_t scale_stride = 0;
    S* grad = nullptr;
    int64_t grad_stride = 0;
    int64_t count = 0;  // rows (rows layout) or positions (columns layout)
};

// Every entry point has one signature, so a caller picks its kernel once and builds one block.
template <class S>
struct CrossEntropyKernels {
    using T = compute_t<S>;
    using Kernel = void (*)(const CrossEntropyBlock<S>& block, const CrossEntropyParams<T>& params);
    Kernel index_rows;
    Kernel index_columns;
    Kernel probability_rows;
    Kernel probability_columns;
    // The same, also writing the gradient in the same pass.
    Kernel index_rows_grad;
    Kernel index_columns_grad;
    Kernel probability_rows_grad;
    Kernel probability_columns_grad;
    // Index targets, rows layout, with logit soft-capping fused (params.softcap; the gradient with
    // respect to the logits before capping): float and double only, half rows are widened first
    // (cross_entropy_softcap.cpp).
    Kernel capped_index_rows = nullptr;
    Kernel capped_index_rows_grad = nullptr;
};

// The soft term of distillation between the tempered softmaxes p = softmax(t/T) of the teacher and
// sigma = softmax(s/T) of the student (distillation.cpp derives each, fused):
//   kl:          KL(p || sigma), forward, teacher to student
//   reverse_kl:  KL(sigma || p)
//   jsd:         beta KL(p || M) + (1 - beta) KL(sigma || M), M = beta p + (1 - beta) sigma, for
//                0 < beta < 1 (Liger's generalized JSD; its beta = 0 and 1 are kl and reverse_kl,
//                which the caller passes as such)
enum class Divergence : int { kl, reverse_kl, jsd };

// Knowledge distillation, per position (the caller combines and reduces): the hard
// cross-entropy of the student logits s against the target (CrossEntropyParams semantics, index or
// probability targets) and the divergence between the tempered softmaxes of the teacher t and the
// student. Rows and columns layouts as for SoftmaxKernels.
template <class T>
struct DistillationParams {
    CrossEntropyParams<T> hard;
    T inverse_temperature;  // 1 / T, T > 0
    Divergence divergence = Divergence::kl;
    T beta = T(0.5);  // jsd only
    // The gradient kernels' factors of the two terms: position r's gradient is
    // scale[r] * (hard_grad * dCE_r/ds + soft_grad * T dD_r/ds), D the divergence, see distillation.cpp.
    T hard_grad = T(0);
    T soft_grad = T(0);
    // The hard term's z-loss (the caller's z_loss option, cross_entropy's): z' lse^2 added to the
    // hard term of each position that counts (index targets: not ignored; probability targets:
    // all), lse the student's log-sum-exp at T = 1. z' is z times the ratio of the z-loss's
    // reduction factor to the hard term's (mean: D / count), so the caller's reduction of the hard
    // term reduces it as Liger does; hard.z_loss_grad is 2 z' with a gradient. 0: none.
    T z_loss = T(0);
};

// The operands of one distillation kernel call: the hard term's block, whose input is the student
// logits s, whose loss is the hard term of each position and whose grad is d/ds of the position's
// share of the whole loss (grad may be s; never t or q; its scale multiplies params.hard_grad and
// params.soft_grad), and the teacher logits t and the soft term beside it, laid out alike.
template <class S>
struct DistillationBlock {
    using T = compute_t<S>;
    CrossEntropyBlock<S> hard;
    const S* teacher = nullptr;  // a full operand, as hard.input
    int64_t teacher_stride = 0;
    T* kl = nullptr;  // the soft term of each position, hard.loss_stride apart
    // Rows layout, with the gradient or Divergence::jsd: a scratch row of at least
    // 2 * (C + kMaxStoredPadding) values, private to the call (distillation.cpp, [Note: stored
    // exponentials]); null otherwise.
    T* stored = nullptr;
    static constexpr int64_t kMaxStoredPadding = 16;  // the widest vector's lanes
};

// Every entry point has one signature, as in CrossEntropyKernels.
template <class S>
struct DistillationKernels {
    using T = compute_t<S>;
    using Kernel = void (*)(const DistillationBlock<S>& block, const DistillationParams<T>& params);
    Kernel rows;
    Kernel columns;
    // The same, also writing the gradient in the same pass.
    Kernel rows_grad;
    Kernel columns_grad;
};

// Distillation from a top-k teacher (topk_distillation.cpp derives it): per position, the teacher
// is given as its log-probabilities at temperature T at k distinct classes, and the student as its
// whole row of C logits s. The hard term is cross_entropy's with an index target, the soft term
// the divergence between the teacher and the student's sigma = softmax(s/T) gathered at the k
// classes, plus one bucket for the mass outside them, as `residual` says:
//   renormalize: the teacher's k probabilities scaled to sum to 1, and 0 outside them
//   tail:        the teacher's k probabilities as given, and 1 - their sum outside them
// The student's bucket is always 1 - sum_j sigma_j, its mass outside the k classes.
enum class TopkResidual : int { renormalize, tail };

template <class T>
struct TopkDistillationParams {
    CrossEntropyParams<T> hard;  // classes is C; the z-loss as in DistillationParams::hard
    T inverse_temperature = T(1);
    Divergence divergence = Divergence::kl;
    T beta = T(0.5);  // jsd only
    TopkResidual residual = TopkResidual::renormalize;
    int64_t k = 0;  // 1 <= k <= C
    // The gradient's factors of the two terms, as DistillationParams's.
    T hard_grad = T(0);
    T soft_grad = T(0);
};

// `rows` positions, each a contiguous row of C student logits, rows student_stride apart, and its
// k teacher entries (row r's at indices + r * k and logprobs + r * k; checked by the caller to be
// distinct classes in [0, C)). Per-position operands are contiguous. The gradient kernel's grad
// may be the student array itself (each row is read before its gradient is written).
template <class T>
struct TopkDistillationRows {
    const T* student = nullptr;
    int64_t student_stride = 0;
    const int64_t* indices = nullptr;
    const T* logprobs = nullptr;
    const int64_t* target = nullptr;  // class indices (or ignore_index); nullptr: no hard term
    int64_t rows = 0;
    T* hard = nullptr;  // each position's cross-entropy (0 where ignored or without a target)
    T* soft = nullptr;  // each position's divergence
    T* lse = nullptr;   // each position's log-sum-exp of s (at temperature 1)
    const T* scale = nullptr;  // with grad: each position's factor of the reduction
    T* grad = nullptr;         // or nullptr: no gradient
    int64_t grad_stride = 0;
    T* scratch = nullptr;  // 3 * (k + kScratchPadding) values, private to the call
    static constexpr int64_t kScratchPadding = 16;  // the widest vector's lanes
};

template <class S>
struct TopkDistillationKernels {
    using T = compute_t<S>;
    void (*rows)(const TopkDistillationRows<T>& block, const TopkDistillationParams<T>& params) = nullptr;
};

// linear_cross_entropy's per-tile kernels. The logits of a classifier head, input @ W.T + bias,
// exist one tile at a time: a block of `rows` rows and `columns` consecutive classes starting at
// class `column_begin`, written by a BLAS GEMM into a buffer of T (float or double: half inputs
// are widened a tile at a time before the GEMM), each row's classes contiguous, rows
// `row_stride` apart. Per-class operands (bias, class weights) point at the tile's first class.
template <class T>
struct LogitTile {
    T* logits = nullptr;
    int64_t row_stride = 0;
    int64_t rows = 0;
    int64_t columns = 0;
    int64_t column_begin = 0;
    const T* bias = nullptr;            // added to the logits in place by tile_statistics; or nullptr
    const T* weight = nullptr;          // class weights w_c, or nullptr (all ones)
    const int64_t* target = nullptr;    // (rows,) class indices over all classes, or nullptr
    const T* probabilities = nullptr;   // probability targets q: row r's at probabilities + r * stride
    int64_t probability_stride = 0;
    // With a softcap, whether the logits are capped already (a tile kept from tile_statistics, which
    // caps in place) rather than fresh from the GEMM.
    bool capped = false;
};

// The options a tile needs. (The z-loss needs none: it is a per-row factor of the gradient.)
template <class T>
struct LinearCrossEntropyParams {
    int64_t classes = 0;       // C, of the whole row
    T label_smoothing = T(0);  // eps
    bool weighted_logit_sum = false;  // index targets: whether sum_c w_c x_c is wanted (eps > 0)
    double tile_weight_sum = 0.0;     // sum of the tile's class weights (columns when weight is null)
    T softcap = T(0);                 // logit soft-capping, x' = softcap tanh(x / softcap); 0: none
};

// The per-row factors of a tile's gradient (see linear_cross_entropy.cpp):
//   G_c = a exp(x_c - lse) - w_c (b_uniform + b_target q_c) - [c = y] correction
template <class T>
struct LinearGradientRow {
    T lse, a, b_uniform, b_target, correction;
};

template <class S>
struct LinearCrossEntropyKernels {
    using T = compute_t<S>;
    // Adds the bias to the tile's logits in place, soft-caps them in place (with a softcap), and
    // writes each row's statistics of the tile's classes to out[r] ([Note: mergeable row statistics]).
    void (*tile_statistics)(const LogitTile<T>& tile, const LinearCrossEntropyParams<T>& params,
                            RowStatistics* out);
    // Overwrites the tile's logits (bias included; capped, or capped here, with a softcap) with the
    // gradient G of the loss with respect to the logits before capping, row r's factors at
    // row_factors[r].
    void (*tile_gradient)(const LogitTile<T>& tile, const LinearCrossEntropyParams<T>& params,
                          const LinearGradientRow<T>* row_factors);
};

// H(softmax(x)) = lse - sum_c p_c x_c per position, with p_c x_c = 0 where p_c = 0 (-inf logits),
// as torch.distributions.Categorical(logits=x).entropy(); and, for probabilities p,
// H = sum_c entr(p_c) with torch.special.entr's entr(p) = -p log p (0 at p = 0, -inf for p < 0,
// NaN for NaN), p neither normalised nor checked. Layouts as for SoftmaxKernels.
template <class S>
struct EntropyKernels {
    void (*rows)(const S* x, int64_t x_row_stride, S* out, int64_t out_stride, int64_t rows, int64_t classes);
    void (*columns)(const S* x, int64_t x_class_stride, S* out, int64_t out_stride, int64_t columns,
                    int64_t classes);
    void (*probability_rows)(const S* p, int64_t p_row_stride, S* out, int64_t out_stride, int64_t rows,
                             int64_t classes);
    void (*probability_columns)(const S* p, int64_t p_class_stride, S* out, int64_t out_stride, int64_t columns,
                                int64_t classes);
};

// The three dot products of a cosine (the cosine embedding loss): for rows a_r, b_r of n
// contiguous values, out3[3r] = sum a*b, out3[3r + 1] = sum a*a, out3[3r + 2] = sum b*b.
template <class S>
struct CosineKernels {
    using T = compute_t<S>;
    void (*dot3_rows)(const S* a, int64_t a_row_stride, const S* b, int64_t b_row_stride, T* out3, int64_t rows,
                      int64_t n);
    // grad_r = coef[2r] * a_r + coef[2r + 1] * b_r over rows of n contiguous values (grad may be a).
    void (*combine_rows)(const S* a, int64_t a_row_stride, const S* b, int64_t b_row_stride, const T* coef,
                         S* grad, int64_t grad_row_stride, int64_t rows, int64_t n);
};

// One segment of an elementwise loss over broadcast operands: n elements, element i of an
// operand at ptr[i * stride]. A stride of 0 repeats one value (a broadcast axis); kernels
// vectorise when every stride is 0 or 1 and gather/scatter otherwise.
template <class S>
struct ElementwiseSegment {
    using T = compute_t<S>;
    const S* input = nullptr;
    int64_t input_stride = 0;
    const S* target = nullptr;
    int64_t target_stride = 0;
    const S* weight = nullptr;  // nullptr: no weight
    int64_t weight_stride = 0;
    const S* pos_weight = nullptr;  // BCE with logits only; nullptr: no pos_weight
    int64_t pos_weight_stride = 0;
    S* out = nullptr;  // nullptr: only the sum is wanted
    int64_t out_stride = 0;
    // The gradient with respect to the input, written in the same pass when grad is not nullptr:
    // grad[i] = (d loss_i / d input_i) * g_i, with g_i = grad_output[i] (reduction 'none') or
    // grad_scale (grad_output / D for a mean, grad_output for a sum). grad may alias input
    // (same pointer and stride): each element is read before its gradient is stored.
    S* grad = nullptr;
    int64_t grad_stride = 0;
    const S* grad_output = nullptr;  // nullptr: every g_i is grad_scale
    int64_t grad_output_stride = 0;
    T grad_scale = T(1);
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
// Gradient with respect to the input (when s.grad is set): -target, or -exp(target).
//
// The generalized Jensen-Shannon divergence (Liger's LigerJSD), pointwise, with input x = log q and
// target p (log p with log_target), 0 < beta <= 1 (beta = 0 is kl_div's forward, above):
//   0 < beta < 1:  beta p (log p - log m) + (1 - beta) q (x - log m),  m = beta p + (1 - beta) q,
//                  each product 0 where its probability is 0
//   beta = 1:      q (x - log p), the reverse KL, as kl_div(log p, q): 0 where q = 0 (NaN if p = 0)
// Gradient with respect to the input: (1 - beta) q (x - log m), and q (x - log p + 1) at beta = 1.
template <class S>
struct KLDivKernels {
    SegmentResult (*forward)(const ElementwiseSegment<S>& s, int64_t n, bool log_target);
    SegmentResult (*jensen_shannon)(const ElementwiseSegment<S>& s, int64_t n, bool log_target, double beta);
};

// Binary cross-entropy, pointwise (w = weight, pw = pos_weight, 1 when absent):
//   probabilities p: -w [y max(log p, -100) + (1 - y) max(log(1 - p), -100)], and p, y are
//                    checked to lie in [0, 1] (reported in SegmentResult, never thrown)
//   logits x:        w [(1 - y) x + (1 + (pw - 1) y) softplus(-x)]
// Gradients with respect to the input (when s.grad is set):
//   probabilities:   w (p - y) / max(p (1 - p), 1e-12)
//   logits:          w [(pw y + 1 - y) sigmoid(x) - pw y]
template <class S>
struct BinaryCrossEntropyKernels {
    SegmentResult (*probabilities)(const ElementwiseSegment<S>& s, int64_t n);
    SegmentResult (*logits)(const ElementwiseSegment<S>& s, int64_t n);
};

// Logit soft-capping (Gemma 2's final logits, as in Liger and Cut Cross-Entropy): x' = cap
// tanh(x / cap) before the softmax, whose gradient picks up d x' / d x = 1 - tanh(x / cap)^2.
// The cross-entropy and distillation drivers cap a row into a cache-sized buffer, run their plain
// kernels on it and chain the gradient back (ops/softcapped_rows.hpp).
template <class S>
struct SoftcapKernels {
    using T = compute_t<S>;
    // capped[c] = cap tanh(x[c] / cap) and derivative[c] = 1 - tanh(x[c] / cap)^2, c < n, for a
    // contiguous row x; derivative may be null (no gradient).
    void (*cap_row)(const S* x, int64_t n, T cap, T* capped, T* derivative);
    // out[c] = g[c] * derivative[c] rounded to S, c < n (out contiguous; g may be out's memory when S is T).
    void (*chain_row)(const T* g, const T* derivative, int64_t n, S* out);
};

// Sigmoid focal loss (torchvision.ops.sigmoid_focal_loss), pointwise, logits x, target t, with
// p = sigmoid(x), ce = binary cross-entropy of logits (as above, without weights):
//   loss = a_t ce (1 - p_t)^gamma,  1 - p_t = (1 - t) p + t (1 - p),
//   a_t = alpha t + (1 - alpha)(1 - t) for alpha >= 0, else 1.
// Gradient with respect to the input (when s.grad is set): see focal_loss.cpp. The segment's
// weight and pos_weight must be absent.
template <class T>
struct SigmoidFocalParams {
    bool alpha_weighting = false;  // alpha >= 0, decided in float64 by the caller
    T alpha = T(0);
    T one_minus_alpha = T(1);  // 1 - alpha rounded once from float64, as torchvision's (1 - alpha)
    T gamma = T(0);            // finite, >= 0
};

template <class S>
struct SigmoidFocalLossKernels {
    SegmentResult (*forward)(const ElementwiseSegment<S>& s, int64_t n, const SigmoidFocalParams<compute_t<S>>& p);
};

// Elementwise vector math, exposed so tests can check the documented error bounds and the native
// harness can measure throughput. y may equal x.
template <class T>
struct VectorMathKernels {
    void (*exp)(const T* x, T* y, int64_t n);
    void (*log)(const T* x, T* y, int64_t n);
    void (*log1p)(const T* x, T* y, int64_t n);
    void (*log1p_unit)(const T* x, T* y, int64_t n);  // x in [0, 1]
    void (*tanh)(const T* x, T* y, int64_t n);
};

// Streaming kernels: the roofline of the native benchmark harness, and fill_stream for
// zero_bytes_streamed (ops/streaming_stores.hpp).
struct BandwidthKernels {
    double (*read_sum)(const float* x, int64_t n);       // reads n floats once
    void (*copy)(const float* x, float* y, int64_t n);   // reads n, writes n
    void (*fill)(float* y, int64_t n, float value);      // writes n
    // The same with non-temporal stores for the aligned middle (no read of the destination).
    void (*copy_stream)(const float* x, float* y, int64_t n);
    void (*fill_stream)(float* y, int64_t n, float value);
};

// Every kernel family for one storage type.
template <class S>
struct KernelSet {
    using Storage = S;
    SoftmaxKernels<S> softmax;
    SoftmaxBackwardKernels<S> softmax_backward;
    CrossEntropyKernels<S> cross_entropy;
    DistillationKernels<S> distillation;
    EntropyKernels<S> entropy;
    CosineKernels<S> cosine;
    KLDivKernels<S> kl_div;
    BinaryCrossEntropyKernels<S> binary_cross_entropy;
    SigmoidFocalLossKernels<S> sigmoid_focal_loss;
    LinearCrossEntropyKernels<S> linear_cross_entropy;  // float and double only: tiles are never half
    TopkDistillationKernels<S> topk_distillation;        // float and double only: half rows are staged
    SoftcapKernels<S> softcap;
};

struct KernelTable {
    const char* isa_name;
    KernelSet<float> f32;
    KernelSet<double> f64;
    KernelSet<Half> f16;
    KernelSet<BFloat16> bf16;
    VectorMathKernels<float> math_f32;
    VectorMathKernels<double> math_f64;
    BandwidthKernels bandwidth;

    // The kernel set for storage type S.
    template <class S>
    const KernelSet<S>& kernels() const {
        if constexpr (std::is_same_v<S, float>) return f32;
        else if constexpr (std::is_same_v<S, double>) return f64;
        else if constexpr (std::is_same_v<S, Half>) return f16;
        else return bf16;
    }
    template <class S>
    KernelSet<S>& kernels() {
        return const_cast<KernelSet<S>&>(static_cast<const KernelTable*>(this)->kernels<S>());
    }
    template <class T>
    const VectorMathKernels<T>& math() const {
        if constexpr (std::is_same_v<T, float>) return math_f32;
        else return math_f64;
    }
};

// Calls f(set) for the kernel set of every storage type (registration in each kernel file).
template <class F>
void for_each_kernel_set(KernelTable& table, F&& f) {
    f(table.f32);
    f(table.f64);
    f(table.f16);
    f(table.bf16);
}

// Each ISA namespace defines kernel_table() in cpp/src/kernels/table.cpp.
namespace scalar { const KernelTable& kernel_table(); }
namespace avx2 { const KernelTable& kernel_table(); }
namespace avx512 { const KernelTable& kernel_table(); }

}  // namespace fastloss
