// Shannon entropy per position: of softmax(x), fused (no probabilities are materialised), or of
// given probabilities (at the end of this file).
//
// With m = max_c x_c, e_c = exp(x_c - m), S = sum_c e_c and p_c = e_c / S:
//   H = -sum_c p_c log p_c = -sum_c p_c ((x_c - m) - log S) = log S - (1/S) sum_c e_c (x_c - m).
// This is the stable form lse - sum_c p_c x_c with both terms shifted by m: every exponent is
// <= 0, and the shifted logits (<= 0) cancel nothing of the size of the raw logits.
//
// -inf logits: torch.distributions.Categorical(logits=x).entropy() clamps the normalised logits
// to the dtype's lowest finite value, so a class with p_c = 0 adds 0 (p = [0, -inf, 0] gives
// ln 2). Here e_c (x_c - m) would be 0 * -inf = NaN, so x_c - m is clamped the same way
// (shifted_term, row_statistics-inl.hpp) and such terms are 0. An all -inf row (x - m = NaN),
// a +inf logit (inf - inf) or a NaN gives NaN.
//
// Rows: a max sweep, then one sweep for S and the weighted sum from L1/L2 (DRAM sees each logit
// once), which fetches the next row into the cache as it goes, so that row's max sweep reads the
// cache and its DRAM time overlaps these exponentials ([Note: two sweeps for short rows]); rows
// longer than kTwoSweepMaxClasses take one online sweep ([Note: online entropy]). Sums are
// two-level, as in distillation.cpp.
#include "fastloss/kernel_table.hpp"
#include "kernels/column_sweeps-inl.hpp"
#include "kernels/row_statistics-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

constexpr int64_t kFoldVectors = 32;

// s += exp(d), u += exp(d) d (0 where exp(d) = 0), for d = x - m <= 0 (or NaN): shifted_term.
template <class V>
inline void accumulate(V d, V& s, V& u) {
    const V e = vexp_nonpositive(d);
    s = s + e;
    u = shifted_term(e, d, u);
}

// W rows in lanes [Note: few classes], with the bits of the row sweep below [Note: rows in lanes,
// summed in the row sweep's order].
template <class S, class T = compute_t<S>>
void entropy_rows_in_lanes(const S* x, int64_t x_row_stride, S* out, int64_t out_stride, int64_t classes) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    V values[2 * W], exponentials[2 * W], shifted[2 * W];
    const V m = gather_rows(x, x_row_stride, classes, values);
    for (int64_t c = 0; c < classes; ++c) {  // accumulate's e and d
        shifted[c] = values[c] - m;
        exponentials[c] = vexp_nonpositive(shifted[c]);
    }
    const V sum = sum_in_row_order<V>(classes, [&](int64_t c) { return exponentials[c]; });
    const V u = accumulate_in_row_order<V>(
        classes, [&](V partial, int64_t c) { return shifted_term(exponentials[c], shifted[c], partial); });
    vscatter(out, out_stride, vlog(sum) - u / sum);
}

// [Note: online entropy] Rows longer than kTwoSweepMaxClasses take S and U = sum_c e_c (x_c - m)
// in one sweep, as row_online_max_sum takes S ([Note: online softmax]): each lane keeps its
// running max m, and when a block moves it to m', with f = exp(m - m') and delta = m - m' <= 0,
//   S' = f S,   U' = sum_c f e_c ((x_c - m) + delta) = f U + S' delta.
// U and S' delta are both <= 0, so nothing cancels; S' delta rather than f (U + S delta), because
// S delta can overflow where a lane moves from the lowest finite logit, and f = 0 there. Lanes
// merge the same way against the row's max. A lane that has seen only -inf keeps S = U = 0 (its
// exponentials are taken relative to 0), and its delta is finite, so it adds 0.
template <class S, class T = compute_t<S>>
T entropy_row_online(const S* x, int64_t n) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V zero = V::broadcast(T(0)), one = V::broadcast(T(1));
    V m = V::broadcast(-infinity<T>());
    V shift = zero;                     // online_shift(m)
    V s = zero, u = zero;               // this fold's sums
    V total_s = zero, total_u = zero;  // the folds before it
    // Moves every sum from m_old's shift to m_new's.
    auto move = [&](V m_old, V m_new) {
        const V f = online_rescale(m_old, m_new);
        const V delta = online_shift(m_old) - online_shift(m_new);
        s = f * s;
        u = fma(s, delta, f * u);
        total_s = f * total_s;
        total_u = fma(total_s, delta, f * total_u);
    };
    int64_t vectors = 0;
    int64_t i = online_blocks<T>(x, n, [&](const V* block, int64_t) {
        online_block(block, m, shift, move, [&](const V* v, V sh) {
            for (int k = 0; k < 4; ++k) accumulate(v[k] - sh, s, u);
            if ((vectors += 4) >= kFoldVectors) {
                total_s = total_s + s;
                total_u = total_u + u;
                s = zero;
                u = zero;
                vectors = 0;
            }
        });
    });
    for (; i < n; i += W) {  // padding lanes hold -inf: exp gives 0 and the guard drops them
        const V v = i + W <= n ? vload(x + i) : vload_partial(x + i, n - i, -infinity<T>());
        const V m_new = max(m, v);
        move(m, m_new);
        m = m_new;
        accumulate(v - online_shift(m), s, u);
    }
    total_s = total_s + s;
    total_u = total_u + u;
    // Merge lanes against the row's max M.
    const V vM = V::broadcast(reduce_max(m));
    const V f = select(equal(m, vM), one, vexp_nonpositive(m - online_shift(vM)));
    const V delta = online_shift(m) - online_shift(vM);
    const V moved_s = f * total_s;
    const T sum = reduce_sum(moved_s);
    return scalar_log(sum) - reduce_sum(fma(moved_s, delta, f * total_u)) / sum;
}

template <class S, class T = compute_t<S>>
void entropy_rows(const S* x, int64_t x_row_stride, S* out, int64_t out_stride, int64_t rows, int64_t classes) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const int64_t n = classes;
    const V zero = V::broadcast(T(0));
    int64_t r = 0;
    if (rows_fit_lanes<S>(classes, x_row_stride)) {  // [Note: few classes]
        for (; r + W <= rows; r += W) {
            entropy_rows_in_lanes(x + r * x_row_stride, x_row_stride, out + r * out_stride, out_stride, classes);
        }
    }
    for (; r < rows; ++r) {
        const S* xr = x + r * x_row_stride;
        if (n > kTwoSweepMaxClasses) {  // [Note: online entropy]
            out[r * out_stride] = entropy_row_online(xr, n);
            continue;
        }
        const S* next = next_row(xr, r, rows, x_row_stride);
        const V m = V::broadcast(row_max(xr, n));
        V s = zero, u = zero;
        const int64_t full_end = n - n % W;
        int64_t i = 0;
        while (i < full_end) {
            const int64_t fold_end = full_end - i > kFoldVectors * W ? i + kFoldVectors * W : full_end;
            V ps = zero, pu = zero;
            for (; i < fold_end; i += W) {
                if (next) prefetch_element_at(next, i);
                accumulate(vload(xr + i) - m, ps, pu);
            }
            s = s + ps;
            u = u + pu;
        }
        if (i < n) {  // padding lanes hold -inf: exp gives 0 and the guard drops them
            accumulate(vload_partial(xr + i, n - i, -infinity<T>()) - m, s, u);
        }
        const T sum = reduce_sum(s);
        out[r * out_stride] = scalar_log(sum) - reduce_sum(u) / sum;
    }
}

// Columns layout: lanes are consecutive positions. S and U = sum_c e_c (x_c - m) come from one
// online sweep down the class axis ([Note: online sweep down the columns]).
template <class S, class T = compute_t<S>>
void entropy_columns(const S* x, int64_t x_class_stride, S* out, int64_t out_stride, int64_t columns,
                     int64_t classes) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    for_each_column_block<true>(x, x_class_stride, columns, classes,
                                [&](int64_t j, int64_t count, int64_t lanes, const LanesMaxSum<T>* stats) {
        for (int64_t k = 0; k < count; ++k) {
            T h[W];
            store(h, vlog(stats[k].sum) - stats[k].shifted_sum / stats[k].sum);
            const int64_t n = count == 1 ? lanes : W;
            for (int64_t i = 0; i < n; ++i) out[(j + k * W + i) * out_stride] = h[i];
        }
    });
}

// Probabilities: H = sum_c entr(p_c), one sweep, no max. Two-level sums as above; padding lanes
// hold 0, whose entr is 0.
template <class V>
inline V entr(V p) {  // torch.special.entr: -p log p; 0 at 0; -inf below 0; NaN stays NaN
    using T = typename V::Scalar;
    const V zero = V::broadcast(T(0));
    const V e = select(less(zero, p), zero - p * vlog(p), zero);
    return select(is_nan(p), p, select(less(p, zero), V::broadcast(-infinity<T>()), e));
}

template <class S, class T = compute_t<S>>
void entropy_probability_rows(const S* p, int64_t p_row_stride, S* out, int64_t out_stride, int64_t rows,
                              int64_t classes) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const int64_t n = classes;
    const V zero = V::broadcast(T(0));
    for (int64_t r = 0; r < rows; ++r) {
        const S* pr = p + r * p_row_stride;
        V s = zero;
        const int64_t full_end = n - n % W;
        int64_t i = 0;
        while (i < full_end) {
            const int64_t fold_end = full_end - i > kFoldVectors * W ? i + kFoldVectors * W : full_end;
            V part = zero;
            for (; i < fold_end; i += W) part = part + entr(vload(pr + i));
            s = s + part;
        }
        if (i < n) s = s + entr(vload_partial(pr + i, n - i, T(0)));
        out[r * out_stride] = reduce_sum(s);
    }
}

template <class S, class T = compute_t<S>>
void entropy_probability_columns(const S* p, int64_t p_class_stride, S* out, int64_t out_stride, int64_t columns,
                                 int64_t classes) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V zero = V::broadcast(T(0));
    for (int64_t j = 0; j < columns; j += W) {
        const int64_t lanes = columns - j < W ? columns - j : W;
        V s = zero;
        for (int64_t c0 = 0; c0 < classes; c0 += kFoldVectors) {
            const int64_t c_end = classes - c0 > kFoldVectors ? c0 + kFoldVectors : classes;
            V part = zero;
            for (int64_t c = c0; c < c_end; ++c) {
                const S* ptr = p + c * p_class_stride + j;
                part = part + entr(lanes == W ? vload(ptr) : vload_partial(ptr, lanes, T(0)));
            }
            s = s + part;
        }
        T h[W];
        store(h, s);
        for (int64_t k = 0; k < lanes; ++k) out[(j + k) * out_stride] = h[k];
    }
}

}  // namespace

void register_entropy_kernels(KernelTable& table) {
    for_each_kernel_set(table, [](auto& set) {
        using S = typename std::decay_t<decltype(set)>::Storage;
        set.entropy = {&entropy_rows<S>, &entropy_columns<S>, &entropy_probability_rows<S>,
                       &entropy_probability_columns<S>};
    });
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
