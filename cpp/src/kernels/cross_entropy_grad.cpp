// Cross-entropy from logits with its gradient, fused: one read of the logits from DRAM, one write
// of the gradient, one exponential per element. grad may alias x (in-place training loops).
//
// Per position, with g its reduction factor (1/D for mean, 1 for sum, grad_output for none),
// e_c = exp(x_c - m), s = sum_c e_c and p_c = e_c / s:
//   index target y:   dx_c = g [(1-eps) w_y (p_c - [c = y]) + (eps/C)(W p_c - w_c)]
//                          = A e_c - B w_c - g (1-eps) w_y [c = y]
//                     with A = (g / s)((1-eps) w_y + eps W / C) and B = g eps / C
//   probabilities q:  dx_c = g (b p_c - w_c q'_c),  b = sum_c w_c q'_c
//   z-loss z lse^2:   + g_z 2 z lse p_c, one more share of the factor of e_c (with_z_loss in
//                     cross_entropy_terms-inl.hpp), g_z its own reduction factor
// Ignored positions get a zero gradient (and loss). The target entry is formed in T from p_y
// computed directly, so p_y - 1 cancels no worse than in PyTorch.
//
// Rows: three sweeps, the last two from L1/L2 -- (1) m, and x_y kept before anything is written;
// (2) e_c stored into the gradient row while s (and the smoothing or probability sums) accumulate;
// (3) the gradient formed in place from e_c. Half-precision storage would round e_c twice that
// way, so there sweep (2) only sums and sweep (3) computes e_c again. Columns: max, sums, then the
// gradient with a second exponential (positions are vector lanes; nothing stays to store e_c in).
// On AVX-512, float32 index rows over 8192 classes without label smoothing take one sweep each
// instead, written while the next row's statistics are taken ([Note: the gradient rows written
// while the next row's statistics are taken]).
// The target entry is always formed whole in T, -g (1-eps) w_y included, and stored once.
#include <memory>
#include <optional>
#include <type_traits>

#include "fastloss/scratch.hpp"
#include "kernels/column_sweeps-inl.hpp"
#include "kernels/cross_entropy-inl.hpp"
#include "kernels/overlapped_rows-inl.hpp"
#include "kernels/store_row-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

// [Note: a streamed gradient stages its exponentials in a scratch row] Sweep (2)'s e_c written
// into a gradient row that is not in cache makes each of its lines be read from memory first. A
// gradient far larger than the caches (CrossEntropyParams::stream_grad) therefore stages e_c in
// one scratch row, which stays in L2 from row to row, and sweep (3) streams the gradient out with
// non-temporal stores: the same arithmetic, so the same bits, as [Note: softmax's exponentials
// staged in a scratch row]. Index targets of half storage always stage e_c, in a float32 scratch
// row (a half gradient row would round them): they used to compute e_c again in sweep (3), and
// staging took bfloat16, 2 threads, from 1.18-1.21 to 0.77-0.80 ms on 4096 x 1000 (AVX-512) and
// from 24.4-25.6 to 13.7-13.9 ms on 1024 x 32000 (AVX2).
//
// Whether sweep (2) can store e_c in the gradient row for sweep (3) (exact in float and double).
template <class S>
constexpr bool stage_exponentials = !is_half_storage<S>;

// The type of index targets' staged exponentials: the storage type, or float32 for half storage.
template <class S>
using StagedExponential = std::conditional_t<is_half_storage<S>, compute_t<S>, S>;

// e_c of sweep (3): staged in `staged` (a row of S or of T), or exp(x_c - m) again where staged is a
// half row (probability targets of half storage, which stage nothing).
template <class S, class Y, class T = compute_t<S>>
Vec<T> row_exponentials(const S* x, T m, const Y* staged, int64_t i, int64_t lanes) {
    const bool full = lanes == Vec<T>::width;
    if constexpr (!is_half_storage<Y>) {
        return full ? vload(staged + i) : vload_partial(staged + i, lanes, T(0));
    } else {
        return vexp((full ? vload(x + i) : vload_partial(x + i, lanes, m)) - Vec<T>::broadcast(m));
    }
}

// a e_y - b w_y - correction for the target entry, with the lanes' arithmetic.
template <class T>
T target_entry(T a, T b, T w_y, T correction, T x_y, T m) {
    using V = Vec<T>;
    const V e_y = vexp(V::broadcast(x_y) - V::broadcast(m));
    return lane0(V::broadcast(a) * e_y - V::broadcast(b) * V::broadcast(w_y)) - correction;
}

// grad[c] = a e_c - b w[c] (w = 1 when null) over a contiguous row, e_c staged at `staged` (see
// row_exponentials; the gradient row itself, or a scratch row when the gradient is streamed).
template <class S, class Y, class T = compute_t<S>>
void scale_and_shift_row(const S* x, T m, const Y* staged, S* grad, int64_t n, T a, T b, const T* w, bool stream) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V va = V::broadcast(a), v_minus_b = V::broadcast(-b);
    store_row(grad, n, stream, [&](int64_t i) {
        const int64_t lanes = n - i < W ? n - i : W;
        const V e = row_exponentials(x, m, staged, i, lanes);
        const V wv = w ? (lanes == W ? vload(w + i) : vload_partial(w + i, lanes, T(0))) : V::broadcast(T(1));
        // An explicit fma: left as a e - b w, the compiler contracts it differently in each of
        // store_row's loops, and a row's bits would depend on where it starts.
        return fma(va, e, v_minus_b * wv);
    });
}

// Sweep (2) over one block of classes (see exp_into_row); the n elements at `prefetch` (if not
// null) are fetched into `into` along the way.
template <class S, class Y, class T = compute_t<S>>
T exp_into_block(const S* x, T m, Y* staged, int64_t n, const T* weight, bool smoothing, T& t, const S* prefetch,
                 PrefetchInto into) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V vm = V::broadcast(m), zero = V::broadcast(T(0));
    V s = zero, tv = zero;
    for (int64_t i = 0; i < n; i += W) {
        const int64_t lanes = n - i < W ? n - i : W;
        if (prefetch) prefetch_elements(into, prefetch + i, lanes);
        const bool full = lanes == W;
        const V d = (full ? vload(x + i) : vload_partial(x + i, lanes, m)) - vm;  // tail: d = 0
        if (smoothing) {
            const V wv = weight ? (full ? vload(weight + i) : vload_partial(weight + i, lanes, T(0)))
                                : (full ? V::broadcast(T(1)) : select(V::first_lanes(lanes), V::broadcast(T(1)), zero));
            tv = fma(wv, d, tv);
        }
        V e = vexp_nonpositive(d);
        if (!full) e = select(V::first_lanes(lanes), e, zero);
        if constexpr (!is_half_storage<Y>) {
            if (full) store(staged + i, e); else store_partial(staged + i, lanes, e);
        }
        s = s + e;
    }
    t = reduce_sum(tv);
    return reduce_sum(s);
}

// Sweep (2): staged = exp(x - m) (unless staged is a half row); returns s, and t = sum w (x - m)
// when `smoothing`, both summed
// in blocks (see [Note: long sums]). The row after this one, next_x (if not null), is prefetched
// meanwhile, so that DRAM keeps streaming while the exponentials are computed from cache
// ([Note: the next row into L1 or L2]).
template <class S, class Y, class T = compute_t<S>>
T exp_into_row(const S* x, T m, Y* staged, int64_t n, const T* weight, bool smoothing, T& t, const S* next_x) {
    const PrefetchInto into = next_row_cache(n * int64_t(sizeof(S)));
    if (n <= kSumBlockClasses) return exp_into_block(x, m, staged, n, weight, smoothing, t, next_x, into);
    double s_total = 0.0, t_total = 0.0;
    for (int64_t begin = 0; begin < n; begin += kSumBlockClasses) {
        T t_block = T(0);
        const T s_block = exp_into_block(x + begin, m, staged + begin, std::min(kSumBlockClasses, n - begin),
                                         weight ? weight + begin : nullptr, smoothing, t_block,
                                         next_x ? next_x + begin : nullptr, into);
        s_total += double(s_block);
        t_total += double(t_block);
    }
    t = T(t_total);
    return T(s_total);
}

// W rows in lanes [Note: few classes]: class c of the W rows is one gathered vector; the gradient
// is formed class by class in a small tile and copied out row by row. Every value is read before
// any gradient is written, so grad may alias x.
template <class S, class T = compute_t<S>>
void index_rows_grad_in_lanes(const S* x, int64_t x_row_stride, const int64_t* target, int64_t target_stride,
                              const T* scale, int64_t scale_stride, T* loss, T* lse, int64_t loss_stride, S* grad,
                              int64_t grad_row_stride, const CrossEntropyParams<T>& p) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const int64_t C = p.classes;
    const T eps = p.label_smoothing;
    const V zero = V::broadcast(T(0));
    V e[2 * W];
    V m = V::broadcast(-infinity<T>());
    for (int64_t c = 0; c < C; ++c) {
        e[c] = vgather(x + c, x_row_stride);
        m = max(m, e[c]);
    }
    V s = zero, t = zero;
    for (int64_t c = 0; c < C; ++c) {
        const V d = e[c] - m;
        if (eps != T(0)) t = p.weight ? fma(V::broadcast(p.weight[c]), d, t) : t + d;
        e[c] = vexp_nonpositive(d);
        s = s + e[c];
    }
    T m_l[W], s_l[W], log_s_l[W], t_l[W], a_l[W], b_l[W], live_l[W], corr_l[W];
    int64_t y_l[W];
    store(m_l, m);
    store(s_l, s);
    store(log_s_l, vlog(s));
    store(t_l, t);
    for (int64_t k = 0; k < W; ++k) {
        const T lse_k = log_sum_exp(m_l[k], log_s_l[k]);
        if (lse) lse[k * loss_stride] = lse_k;
        const int64_t y = target[k * target_stride];
        y_l[k] = y;
        a_l[k] = b_l[k] = live_l[k] = corr_l[k] = T(0);
        if (y == p.ignore_index) {
            loss[k * loss_stride] = T(0);
            continue;
        }
        const T w_y = p.weight ? p.weight[y] : T(1);
        loss[k * loss_stride] = index_loss(log_s_l[k], x[k * x_row_stride + y] - m_l[k], w_y, t_l[k], p);
        const IndexGradient<T> d = index_gradient(scale[k * scale_stride], s_l[k], lse_k, w_y, p);
        a_l[k] = d.a;
        b_l[k] = d.b;
        corr_l[k] = d.correction;
        live_l[k] = T(1);
    }
    const V a = vload(a_l), b = vload(b_l);
    const auto live = equal(vload(live_l), V::broadcast(T(1)));
    const T* smoothing_weight = smoothing_weights(p);
    T tile[2 * W][W];
    for (int64_t c = 0; c < C; ++c) {
        const V w = smoothing_weight ? V::broadcast(smoothing_weight[c]) : V::broadcast(T(1));
        store(tile[c], select(live, a * e[c] - b * w, zero));  // ignored rows: 0 even if x is NaN
    }
    for (int64_t k = 0; k < W; ++k) {
        if (live_l[k] != T(0)) tile[y_l[k]][k] -= corr_l[k];
        S* row = grad + k * grad_row_stride;
        for (int64_t c = 0; c < C; ++c) row[c] = tile[c][k];
    }
}

// [Note: the gradient rows written while the next row's statistics are taken] Without label
// smoothing (whose sum over x - m needs the final max first), a row's m and s are its online
// statistics, and rows longer than kTwoSweepMaxClasses are written as softmax's are ([Note: the
// next row's statistics while a row is written]): row r's gradient a e_c while row r + 1's
// statistics are taken. The statistics, and so the loss, are row_max_sum's, the forward kernel's.
// The e_c are staged in row r's own statistics sweep ([Note: staged exponentials]) rather than
// taken again from x in the write. Against each other (AVX-512, AMD Zen 4, 1 and 2 threads),
// staging took float64 to 0.71-0.90x the time on 4096 x 32000 and 1024 x 128256. float32 took each
// e_c again until the staged write's factors took one load ([Note: a staged row's factors]) and
// its next row came into L2: since then staging takes it to 0.79-0.99x (4096 x 32000, 8192 x
// 16384, 1024 x 128256). The half types, which convert every value twice more, keep three sweeps
// (taking each e_c again, they measured 1.05-1.19x slower on Intel).
template <class S>
constexpr bool kOverlapGradientRows = kOverlapLongRows && !is_half_storage<S>;

// The index rows of index_rows_grad, long and without label smoothing (see the note above).
template <class S, class T = compute_t<S>>
void overlapped_index_rows_grad(const S* x, int64_t x_row_stride, const int64_t* target, int64_t target_stride,
                                const T* scale, int64_t scale_stride, T* loss, T* lse, int64_t loss_stride,
                                S* grad, int64_t grad_row_stride, int64_t rows, const CrossEntropyParams<T>& p) {
    const int64_t C = p.classes;
    struct Row {  // what the target entry needs once the row is written
        bool live;
        int64_t y;
        T x_y, m, w_y;
        IndexGradient<T> d;
    } row{};
    // Row r's loss and lse, and its gradient's a (b = 0 without smoothing: index_gradient); nothing
    // for an ignored row, whose gradient is 0 even if x is NaN.
    const auto row_scale = [&](int64_t r, const S* xr, RowMaxSum<T> ms) -> std::optional<T> {
        row.y = target[r * target_stride];
        row.live = row.y != p.ignore_index;
        if (!row.live) {
            loss[r * loss_stride] = T(0);
            if (lse) lse[r * loss_stride] = row_log_sum_exp(xr, C);  // before grad (maybe x) is written
            return std::nullopt;
        }
        row.x_y = xr[row.y];
        row.m = ms.max;
        row.w_y = p.weight ? p.weight[row.y] : T(1);
        const T log_s = scalar_log(ms.sum), lse_r = log_sum_exp(ms.max, log_s);
        loss[r * loss_stride] = index_loss(log_s, row.x_y - ms.max, row.w_y, T(0), p);
        if (lse) lse[r * loss_stride] = lse_r;
        row.d = index_gradient(scale[r * scale_stride], ms.sum, lse_r, row.w_y, p);
        return row.d.a;
    };
    const auto target_entry_of = [&](int64_t r) {
        if (row.live) {
            grad[r * grad_row_stride + row.y] = target_entry(row.d.a, row.d.b, row.w_y, row.d.correction, row.x_y, row.m);
        }
    };
    write_long_staged_rows(x, x_row_stride, grad, grad_row_stride, rows, C, p.stream_grad, row_scale, target_entry_of);
}

template <class S, class T = compute_t<S>>
[[gnu::noinline]]  // see the entry points below
void index_rows_grad(const S* x, int64_t x_row_stride, const int64_t* target, int64_t target_stride,
                     const T* scale, int64_t scale_stride, T* loss, T* lse, int64_t loss_stride, S* grad,
                     int64_t grad_row_stride, int64_t rows, const CrossEntropyParams<T>& p) {
    constexpr int64_t W = Vec<T>::width;
    const int64_t C = p.classes;
    const T eps = p.label_smoothing;
    int64_t first = 0;
    if (rows_fit_lanes<T>(C, x_row_stride)) {
        for (; first + W <= rows; first += W) {
            index_rows_grad_in_lanes(x + first * x_row_stride, x_row_stride, target + first * target_stride,
                                     target_stride, scale + first * scale_stride, scale_stride,
                                     loss + first * loss_stride, lse ? lse + first * loss_stride : nullptr,
                                     loss_stride, grad + first * grad_row_stride, grad_row_stride, p);
        }
    }
    if (kOverlapGradientRows<S> && eps == T(0) && C > kTwoSweepMaxClasses) {
        overlapped_index_rows_grad(x + first * x_row_stride, x_row_stride, target + first * target_stride,
                                   target_stride, scale + first * scale_stride, scale_stride,
                                   loss + first * loss_stride, lse ? lse + first * loss_stride : nullptr, loss_stride,
                                   grad + first * grad_row_stride, grad_row_stride, rows - first, p);
        if (p.stream_grad) stream_fence();
        return;
    }
    using E = StagedExponential<S>;
    std::unique_ptr<E[]> staged;
    for (int64_t r = first; r < rows; ++r) {
        const int64_t y = target[r * target_stride];
        S* gr = grad + r * grad_row_stride;
        if (y == p.ignore_index) {
            loss[r * loss_stride] = T(0);
            if (lse) lse[r * loss_stride] = row_log_sum_exp(x + r * x_row_stride, C);  // before grad (maybe x)
            zero_row(gr, C);
            continue;
        }
        const S* xr = x + r * x_row_stride;
        const T m = row_max(xr, C);
        const T x_y = xr[y];  // before the gradient (which may be x itself) is written
        T t = T(0);
        // [Note: a streamed gradient stages its exponentials in a scratch row]
        if ((is_half_storage<S> || p.stream_grad) && !staged) {
            staged = uninitialised_scratch<E>(C, "a row of cross_entropy's exponentials");
        }
        E* e_row;
        if constexpr (is_half_storage<S>) {
            e_row = staged.get();
        } else {
            e_row = staged ? staged.get() : gr;
        }
        const T s = exp_into_row(xr, m, e_row, C, p.weight, eps != T(0), t, next_row(xr, r, rows, x_row_stride));
        const T w_y = p.weight ? p.weight[y] : T(1);
        const T log_s = scalar_log(s), lse_r = log_sum_exp(m, log_s);
        loss[r * loss_stride] = index_loss(log_s, x_y - m, w_y, t, p);
        if (lse) lse[r * loss_stride] = lse_r;
        const IndexGradient<T> d = index_gradient(scale[r * scale_stride], s, lse_r, w_y, p);
        scale_and_shift_row(xr, m, e_row, gr, C, d.a, d.b, smoothing_weights(p), p.stream_grad);
        gr[y] = target_entry(d.a, d.b, w_y, d.correction, x_y, m);
    }
    if (p.stream_grad) stream_fence();
}

template <class S, class T = compute_t<S>>
[[gnu::noinline]]  // see the entry points below
void probability_rows_grad(const S* x, int64_t x_row_stride, const S* q, int64_t q_row_stride,
                           const T* scale, int64_t scale_stride, T* loss, T* lse, int64_t loss_stride, S* grad,
                           int64_t grad_row_stride, int64_t rows, const CrossEntropyParams<T>& p) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const int64_t C = p.classes;
    for (int64_t r = 0; r < rows; ++r) {
        const S* xr = x + r * x_row_stride;
        const S* qr = q + r * q_row_stride;
        S* gr = grad + r * grad_row_stride;
        const T m = row_max(xr, C);
        const ProbabilityRowSums<T> sums =
            probability_row_sums<S>(xr, qr, m, C, p, stage_exponentials<S> ? gr : nullptr);
        const T sum = sums.sum, b_total = sums.weight_total;
        const T log_s = scalar_log(sum), lse_r = log_sum_exp(m, log_s);
        loss[r * loss_stride] = b_total * log_s - sums.weighted_shifted_sum;
        if (lse) lse[r * loss_stride] = lse_r;
        const T g = scale[r * scale_stride];
        const V factor = V::broadcast(with_z_loss(g * b_total / sum, g, sum, lse_r, p)), vg = V::broadcast(g);
        const SmoothedTargets<T> targets(p);
        for (int64_t i = 0; i < C; i += W) {
            const int64_t lanes = C - i < W ? C - i : W;
            const bool full = lanes == W;
            const V e = row_exponentials(xr, m, gr, i, lanes);
            const V out = factor * e - vg * targets.row(qr, i, lanes);
            if (full) store(gr + i, out); else store_partial(gr + i, lanes, out);
        }
    }
}

// Columns layout: lanes are positions; the per-lane factors are assembled from scalars. Without
// label smoothing the statistics come from one online sweep over four vectors of positions at a
// time and the gradient from a second sweep, streamed as the softmax columns are ([Note: online
// sweep down the columns]); with smoothing, from two sweeps and a third, one vector at a time
// (the smoothing term needs the final max).
template <class T>
struct ColumnGradientFactors {
    static constexpr int64_t W = Vec<T>::width;
    T a[W], b[W], live[W], correction[W], x_y[W];
    int64_t y[W];
};

template <class S, class T = compute_t<S>>
[[gnu::noinline]]  // see the entry points below
void index_columns_grad(const S* x, int64_t x_class_stride, const int64_t* target, int64_t target_stride,
                        const T* scale, int64_t scale_stride, T* loss, T* lse, int64_t loss_stride, S* grad,
                        int64_t grad_class_stride, int64_t columns, const CrossEntropyParams<T>& p) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const int64_t C = p.classes;
    const V zero = V::broadcast(T(0));
    // Writes the loss (and lse) of the `lanes` positions from j and returns their gradient factors.
    auto lane_factors = [&](int64_t j, int64_t lanes, V max, V sum, V shifted_sum, ColumnGradientFactors<T>& f) {
        T m_l[W], s_l[W], t_l[W];
        store(m_l, max);
        store(s_l, sum);
        store(t_l, shifted_sum);
        for (int64_t k = 0; k < W; ++k) {
            f.a[k] = f.b[k] = f.live[k] = f.correction[k] = T(0);
            f.y[k] = -1;
            if (k >= lanes) continue;
            const T log_s = scalar_log(s_l[k]), lse_k = log_sum_exp(m_l[k], log_s);
            if (lse) lse[(j + k) * loss_stride] = lse_k;
            const int64_t y = target[(j + k) * target_stride];
            T& out = loss[(j + k) * loss_stride];
            if (y == p.ignore_index) {
                out = T(0);
                continue;
            }
            const T w_y = p.weight ? p.weight[y] : T(1);
            f.x_y[k] = x[y * x_class_stride + j + k];  // before the gradient (maybe x) is written
            out = index_loss(log_s, f.x_y[k] - m_l[k], w_y, t_l[k], p);
            const IndexGradient<T> d = index_gradient(scale[(j + k) * scale_stride], s_l[k], lse_k, w_y, p);
            f.a[k] = d.a;
            f.b[k] = d.b;
            f.correction[k] = d.correction;
            f.live[k] = T(1);
            f.y[k] = y;
        }
    };
    // The target entries, after the sweep that wrote every other class.
    auto write_targets = [&](int64_t j, int64_t lanes, V max, const ColumnGradientFactors<T>& f) {
        T m_l[W];
        store(m_l, max);
        for (int64_t k = 0; k < lanes; ++k) {
            if (f.y[k] < 0) continue;
            const T w_y = p.weight ? p.weight[f.y[k]] : T(1);
            grad[f.y[k] * grad_class_stride + j + k] = target_entry(f.a[k], f.b[k], w_y, f.correction[k], f.x_y[k], m_l[k]);
        }
    };
    using Mask = decltype(equal(zero, zero));
    if (p.label_smoothing == T(0)) {  // b = 0 (index_gradient): grad_c = a e_c
        constexpr int64_t kMaxBlocks = column_run_blocks<S>();
        ColumnGradientFactors<T> f[kMaxBlocks][kColumnVectors];
        V max[kMaxBlocks][kColumnVectors], a[kMaxBlocks][kColumnVectors];
        Mask live[kMaxBlocks][kColumnVectors];
        for_each_column_run_stats(
            x, x_class_stride, columns, C, p.stream_grad,
            [&](int64_t b, int64_t j, int64_t count, int64_t lanes, const LanesMaxSum<T>* stats) {
                for (int64_t k = 0; k < count; ++k) {
                    lane_factors(j + k * W, count == 1 ? lanes : W, stats[k].max, stats[k].sum, zero, f[b][k]);
                    max[b][k] = stats[k].max;
                    a[b][k] = vload(f[b][k].a);
                    live[b][k] = equal(vload(f[b][k].live), V::broadcast(T(1)));
                }
            },
            [&](const ColumnBlock* blocks, int64_t n) {
                // Ignored lanes: 0 even if x is NaN.
                write_column_run(x, x_class_stride, grad, grad_class_stride, blocks, n, C, p.stream_grad,
                                 [&](int64_t b, int64_t k, V v) {
                                     return select(live[b][k], a[b][k] * vexp(v - max[b][k]), zero);
                                 });
                for (int64_t b = 0; b < n; ++b) {
                    const ColumnBlock& block = blocks[b];
                    for (int64_t k = 0; k < block.count; ++k) {
                        write_targets(block.j + k * W, block.count == 1 ? block.lanes : W, max[b][k], f[b][k]);
                    }
                }
            },
            column_writer_is_narrow<S>(C));
        return;
    }
    const T* smoothing_weight = smoothing_weights(p);
    for (int64_t j = 0; j < columns; j += W) {
        const int64_t lanes = columns - j < W ? columns - j : W;
        const ColumnStatistics<T> st = index_column_statistics(x + j, x_class_stride, lanes, p);
        ColumnGradientFactors<T> f;
        lane_factors(j, lanes, st.max, st.sum, st.shifted_sum, f);
        const V a = vload(f.a), b = vload(f.b);
        const Mask live = equal(vload(f.live), V::broadcast(T(1)));
        for (int64_t c = 0; c < C; ++c) {
            const V e = vexp(load_column(x + j, x_class_stride, c, lanes, T(0)) - st.max);
            const V w = smoothing_weight ? V::broadcast(smoothing_weight[c]) : V::broadcast(T(1));
            const V out = select(live, a * e - b * w, zero);  // ignored lanes: 0 even if x is NaN
            S* ptr = grad + c * grad_class_stride + j;
            if (lanes == W) store(ptr, out); else store_partial(ptr, lanes, out);
        }
        write_targets(j, lanes, st.max, f);
    }
}

template <class S, class T = compute_t<S>>
[[gnu::noinline]]  // see the entry points below
void probability_columns_grad(const S* x, int64_t x_class_stride, const S* q, int64_t q_class_stride,
                              const T* scale, int64_t scale_stride, T* loss, T* lse, int64_t loss_stride, S* grad,
                              int64_t grad_class_stride, int64_t columns, const CrossEntropyParams<T>& p) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    for (int64_t j = 0; j < columns; j += W) {
        const int64_t lanes = columns - j < W ? columns - j : W;
        const ProbabilityColumnStatistics<T> st =
            probability_column_statistics(x + j, x_class_stride, q + j, q_class_stride, lanes, p);
        const V log_s = vlog(st.sum);
        T out_l[W], scale_l[W], m_l[W], log_s_l[W], factor_l[W];
        store(out_l, st.weight_total * log_s - st.weighted_shifted_sum);
        store(m_l, st.max);
        store(log_s_l, log_s);
        for (int64_t k = 0; k < W; ++k) scale_l[k] = k < lanes ? scale[(j + k) * scale_stride] : T(0);
        for (int64_t k = 0; k < lanes; ++k) {
            loss[(j + k) * loss_stride] = out_l[k];
            if (lse) lse[(j + k) * loss_stride] = log_sum_exp(m_l[k], log_s_l[k]);
        }
        const V g = vload(scale_l);
        V factor = g * st.weight_total / st.sum;
        if (p.z_loss_grad != T(0)) {  // (see with_z_loss)
            store(factor_l, factor);
            T sum_l[W];
            store(sum_l, st.sum);
            for (int64_t k = 0; k < W; ++k) {
                factor_l[k] = with_z_loss(factor_l[k], scale_l[k], sum_l[k], log_sum_exp(m_l[k], log_s_l[k]), p);
            }
            factor = vload(factor_l);
        }
        for (int64_t c = 0; c < p.classes; ++c) {
            // q' is read before the gradient is stored: grad may alias x but never q.
            const V e = vexp(load_column(x + j, x_class_stride, c, lanes, T(0)) - st.max);
            const V out = factor * e - g * weighted_target_column(q + j, q_class_stride, c, lanes, p);
            S* ptr = grad + c * grad_class_stride + j;
            if (lanes == W) store(ptr, out); else store_partial(ptr, lanes, out);
        }
    }
}

// The table's entry points, as in cross_entropy.cpp: the block's operands passed on to each
// (out-of-line) kernel as the arguments it takes.
template <class S, class T = compute_t<S>>
void index_rows_grad_entry(const CrossEntropyBlock<S>& b, const CrossEntropyParams<T>& p) {
    index_rows_grad(b.input, b.input_stride, b.target, b.target_stride, b.scale, b.scale_stride, b.loss, b.lse,
                    b.loss_stride, b.grad, b.grad_stride, b.count, p);
}

template <class S, class T = compute_t<S>>
void index_columns_grad_entry(const CrossEntropyBlock<S>& b, const CrossEntropyParams<T>& p) {
    index_columns_grad(b.input, b.input_stride, b.target, b.target_stride, b.scale, b.scale_stride, b.loss, b.lse,
                       b.loss_stride, b.grad, b.grad_stride, b.count, p);
}

template <class S, class T = compute_t<S>>
void probability_rows_grad_entry(const CrossEntropyBlock<S>& b, const CrossEntropyParams<T>& p) {
    probability_rows_grad(b.input, b.input_stride, b.probabilities, b.probability_stride, b.scale, b.scale_stride,
                          b.loss, b.lse, b.loss_stride, b.grad, b.grad_stride, b.count, p);
}

template <class S, class T = compute_t<S>>
void probability_columns_grad_entry(const CrossEntropyBlock<S>& b, const CrossEntropyParams<T>& p) {
    probability_columns_grad(b.input, b.input_stride, b.probabilities, b.probability_stride, b.scale,
                             b.scale_stride, b.loss, b.lse, b.loss_stride, b.grad, b.grad_stride, b.count, p);
}

}  // namespace

void register_cross_entropy_grad_kernels(KernelTable& table) {
    for_each_kernel_set(table, [](auto& set) {
        using S = typename std::decay_t<decltype(set)>::Storage;
        set.cross_entropy.index_rows_grad = &index_rows_grad_entry<S>;
        set.cross_entropy.index_columns_grad = &index_columns_grad_entry<S>;
        set.cross_entropy.probability_rows_grad = &probability_rows_grad_entry<S>;
        set.cross_entropy.probability_columns_grad = &probability_columns_grad_entry<S>;
    });
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
