// linear_cross_entropy's per-tile kernels: a tile of logits x = input @ W.T + bias, fresh from the
// GEMM and still in cache, is folded into mergeable row statistics, then (for the gradient) turned
// in place into d loss / d x.
//
// Statistics of a row's tile of classes P, with m = max_{c in P} x_c (0 as the shift when the
// tile holds no finite max) and d_c = x_c - m <= 0 ([Note: mergeable row statistics]):
//   sum_exp            = sum_c exp(d_c)
//   target_logit       = x_y if the row's index target y is in P
//   weighted_logit_sum = sum_c u_c d_c + m sum_c u_c,  u_c = w_c (index targets, eps > 0) or
//                        w_c q'_c (probability targets, q' = (1-eps) q + eps/C)
//   target_mass        = sum_c w_c q'_c (probability targets)
// The sums over the tile run over d_c, never over raw logits, so a large common offset of the
// logits cancels inside the tile (as in cross_entropy.cpp); m sum_c u_c is added in float64.
//
// Gradient: with lse the merged row's logsumexp and p_c = exp(x_c - lse), d loss / d x_c is
//   index targets:        g [((1-eps) w_y + eps W / C) p_c - (eps / C) w_c - [c = y] (1-eps) w_y]
//   probability targets:  g [(sum_k w_k q'_k) p_c - w_c ((1-eps) q_c + eps / C)]
// with g the row's factor of the reduction (0 for an ignored row). Both are
//   G_c = a p_c - w_c (b_uniform + b_target q_c) - [c = y] correction
// with per-row factors that the caller derives from the statistics (LinearGradientRow). A row
// whose factors are all 0 (ignored) is zeroed without reading its logits, so a NaN or inf there
// cannot leak, as in PyTorch.
//
// Soft-capping (softcap c > 0): the statistics and G are those of the capped logits
// x'_c = c tanh(x_c / c), which replace x in the tile. The gradient with respect to the logits
// before capping is G_c (1 - t_c^2) with t_c = x'_c / c: the tanh is taken from the capped logit
// that the tile holds, not recomputed. That t is within an ULP or two of tanh(x / c), so 1 - t^2
// is as torch's tanh backward (1 - y^2 of its rounded output y) wherever the tanh is not
// saturated; where it is (|x| >> c), both are rounding-sized and the gradient there is negligible.
#include "fastloss/kernel_table.hpp"
#include "kernels/cross_entropy-inl.hpp"
#include "kernels/softcap-inl.hpp"

#include <limits>

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

// The cross-entropy sums' parameters for one tile: the class weights start at the tile's first
// class; eps / C keeps the whole row's C.
template <class T>
CrossEntropyParams<T> tile_sum_params(const LogitTile<T>& tile, const LinearCrossEntropyParams<T>& p) {
    CrossEntropyParams<T> params{};
    params.classes = p.classes;
    params.weight = tile.weight;
    params.label_smoothing = p.label_smoothing;
    return params;
}

template <class T>
void add_bias(T* x, const T* bias, int64_t n) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    int64_t i = 0;
    for (; i + W <= n; i += W) store(x + i, vload(x + i) + vload(bias + i));
    if (i < n) store_partial(x + i, n - i, vload_partial(x + i, n - i, T(0)) + vload_partial(bias + i, n - i, T(0)));
}

// 1 - t^2, tanh's derivative, with t = x' / c of a capped logit x'.
template <class V>
V capped_derivative(V capped, V inverse) {
    const V t = capped * inverse;
    return V::broadcast(typename V::Scalar(1)) - t * t;
}

template <class T>
RowStatistics row_tile_statistics(T* x, int64_t r, const LogitTile<T>& tile, const LinearCrossEntropyParams<T>& p) {
    const int64_t n = tile.columns;
    if (tile.bias) add_bias(x, tile.bias, n);
    if (p.softcap != T(0)) cap_row(x, n, p.softcap, x, static_cast<T*>(nullptr));  // in place
    RowStatistics st = kEmptyRowStatistics;
    if (n == 0) return st;
    const T m = row_max(x, n);
    const T shift = (m == -infinity<T>()) ? T(0) : m;  // an all -inf tile: exp(-inf - 0) = 0
    st.max = double(m);
    if (tile.probabilities) {
        const ProbabilityRowSums<T> sums =
            probability_row_sums(x, tile.probabilities + r * tile.probability_stride, shift, n,
                                 tile_sum_params(tile, p), static_cast<T*>(nullptr));
        st.sum_exp = double(sums.sum);
        st.weighted_logit_sum = double(sums.weighted_shifted_sum) + double(shift) * double(sums.weight_total);
        st.target_mass = double(sums.weight_total);
    } else if (p.weighted_logit_sum) {
        T s, t;
        row_sum_exp_and_shifted_sum(x, shift, tile.weight, n, s, t);
        st.sum_exp = double(s);
        st.weighted_logit_sum = double(t) + double(shift) * p.tile_weight_sum;
    } else {
        st.sum_exp = double(row_sum_exp(x, shift, static_cast<T*>(nullptr), n));
    }
    // No finite max: an all -inf tile, whose sum is 0 (the merge's identity), or a tile whose NaN
    // the running max did not report (max returns its second operand): its sum is NaN, and its
    // max becomes NaN so that the merge makes the whole row NaN.
    if (m == -infinity<T>() && st.sum_exp != st.sum_exp) st.max = std::numeric_limits<double>::quiet_NaN();
    if (tile.target) {
        const int64_t y = tile.target[r] - tile.column_begin;
        if (y >= 0 && y < n) st.target_logit = double(x[y]);
    }
    return st;
}

template <class T>
void tile_statistics(const LogitTile<T>& tile, const LinearCrossEntropyParams<T>& p, RowStatistics* out) {
    for (int64_t r = 0; r < tile.rows; ++r) out[r] = row_tile_statistics(tile.logits + r * tile.row_stride, r, tile, p);
}

// G_c = a exp(x_c - lse) - w_c (b_uniform + b_target q_c), in place over one row of n classes;
// kCapped: times 1 - t_c^2, x being the capped logits (the chain through the tanh).
template <bool kCapped, class T>
void row_gradient(T* x, const T* q, const T* weight, const LinearGradientRow<T>& f, int64_t n, T softcap) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V lse = V::broadcast(f.lse), a = V::broadcast(f.a);
    const V bu = V::broadcast(f.b_uniform), bt = V::broadcast(f.b_target);
    const V inverse = V::broadcast(kCapped ? T(1) / softcap : T(0));
    const bool subtract = f.b_uniform != T(0) || f.b_target != T(0);
    for (int64_t i = 0; i < n; i += W) {
        const int64_t lanes = n - i < W ? n - i : W;
        const bool full = lanes == W;
        const V xv = full ? vload(x + i) : vload_partial(x + i, lanes, T(0));
        V g = a * vexp_nonpositive(xv - lse);
        if (subtract) {
            V b = bu;
            if (q) b = fma(bt, full ? vload(q + i) : vload_partial(q + i, lanes, T(0)), b);
            if (weight) b = b * (full ? vload(weight + i) : vload_partial(weight + i, lanes, T(0)));
            g = g - b;
        }
        if (kCapped) g = g * capped_derivative(xv, inverse);
        if (full) store(x + i, g); else store_partial(x + i, lanes, g);
    }
}

template <class T>
void tile_gradient(const LogitTile<T>& tile, const LinearCrossEntropyParams<T>& p,
                   const LinearGradientRow<T>* factors) {
    const int64_t n = tile.columns;
    const bool capped = p.softcap != T(0);
    for (int64_t r = 0; r < tile.rows; ++r) {
        T* x = tile.logits + r * tile.row_stride;
        const LinearGradientRow<T>& f = factors[r];
        if (f.a == T(0) && f.b_uniform == T(0) && f.b_target == T(0) && f.correction == T(0)) {
            zero_row(x, n);  // an ignored row
            continue;
        }
        if (capped && !tile.capped) cap_row(x, n, p.softcap, x, static_cast<T*>(nullptr));
        const T* q = tile.probabilities ? tile.probabilities + r * tile.probability_stride : nullptr;
        const int64_t y = tile.target ? tile.target[r] - tile.column_begin : -1;
        const bool target_here = y >= 0 && y < n;
        // The target's term is chained through the tanh too, whose t the row's gradient overwrites.
        T correction = f.correction;
        if (capped && target_here) {
            using V = Vec<T>;
            correction *= lane0(capped_derivative(V::broadcast(x[y]), V::broadcast(T(1) / p.softcap)));
        }
        if (capped) {
            row_gradient<true>(x, q, tile.weight, f, n, p.softcap);
        } else {
            row_gradient<false>(x, q, tile.weight, f, n, p.softcap);
        }
        if (target_here) x[y] -= correction;
    }
}

}  // namespace

void register_linear_cross_entropy_kernels(KernelTable& table) {
    table.f32.linear_cross_entropy = {&tile_statistics<float>, &tile_gradient<float>};
    table.f64.linear_cross_entropy = {&tile_statistics<double>, &tile_gradient<double>};
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
