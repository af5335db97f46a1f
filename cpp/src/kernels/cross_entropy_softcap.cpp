// cross_entropy of index targets with logit soft-capping fused, rows layout: the capped logits
// x'_c = cap tanh(x_c / cap) are formed in registers, never stored.
//
// Per row of n logits (contiguous), three sweeps:
//  1. m = max_c x_c, from memory: loads and compares only, so the row streams in at the memory's
//     pace. tanh is increasing, so m' = cap tanh(m / cap) is the capped row's max (up to the
//     rounding of the tanh; the exponentials below take any sign, so nothing relies on it).
//  2. From L1/L2: s = sum_c exp(x'_c - m') and, with label smoothing, t = sum_c w_c (x'_c - m'),
//     summed in blocks ([Note: long sums]). The loss is cross_entropy_terms' index_loss of them,
//     lse = m' + log s.
//  3. With the gradient, from L1/L2: dL/dx_c = dL/dx'_c (1 - tanh(x_c / cap)^2), with dL/dx'_c the
//     plain kernel's a e_c - b w_c - [c = y] correction (index_gradient), e_c = exp(x'_c - m').
//     a is known only after sweep 2, so without smoothing (b = 0) sweep 2 stores
//     e_c (1 - tanh^2) in grad (which may be x: each element is read before it is written) and
//     sweep 3 scales it by a; with smoothing, sweep 3 computes the tanh and exponential again
//     (the b w_c term needs 1 - tanh^2 apart from e_c).
// Every capped value is softcap-inl.hpp's capped_vector, as cap_row's.
#include "fastloss/kernel_table.hpp"
#include "kernels/cross_entropy-inl.hpp"
#include "kernels/cross_entropy_terms-inl.hpp"
#include "kernels/row_statistics-inl.hpp"
#include "kernels/softcap-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

template <class T>
T capped_scalar(T x, T cap, T& t) {
    using V = Vec<T>;
    V vt;
    const V out = capped_vector(V::broadcast(x), V::broadcast(cap), V::broadcast(T(1) / cap), vt);
    t = lane0(vt);
    return lane0(out);
}

// Sweep 2: s = sum_c exp(x'_c - shift) and, if smoothing, t = sum_c w_c (x'_c - shift). If
// `staged` is not null, exp(x'_c - shift) (1 - tanh(x_c / cap)^2) goes there too (it may be x:
// each vector is loaded before it is stored).
template <class T>
void capped_sums(const T* x, int64_t n, T shift, const CrossEntropyParams<T>& p, bool smoothing, T& s, T& t,
                 T* staged) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V cap = V::broadcast(p.softcap), inverse = V::broadcast(T(1) / p.softcap);
    const V sh = V::broadcast(shift), zero = V::broadcast(T(0)), one = V::broadcast(T(1));
    double s_total = 0.0, t_total = 0.0;
    for (int64_t begin = 0; begin < n; begin += kSumBlockClasses) {
        const int64_t end = begin + kSumBlockClasses < n ? begin + kSumBlockClasses : n;
        V s0 = zero, s1 = zero, t0 = zero;
        int64_t i = begin;
        for (; i + 2 * W <= end; i += 2 * W) {
            V u0, u1;
            const V d0 = capped_vector(vload(x + i), cap, inverse, u0) - sh;
            const V d1 = capped_vector(vload(x + i + W), cap, inverse, u1) - sh;
            const V e0 = vexp(d0), e1 = vexp(d1);
            s0 = s0 + e0;
            s1 = s1 + e1;
            if (staged) {
                store(staged + i, e0 * (one - u0 * u0));
                store(staged + i + W, e1 * (one - u1 * u1));
            }
            if (smoothing) {
                t0 = p.weight ? fma(vload(p.weight + i), d0, t0) : t0 + d0;
                t0 = p.weight ? fma(vload(p.weight + i + W), d1, t0) : t0 + d1;
            }
        }
        for (; i < end; i += W) {
            const int64_t lanes = end - i < W ? end - i : W;
            const auto live = V::first_lanes(lanes);
            V u;
            const V d = capped_vector(vload_partial(x + i, lanes, T(0)), cap, inverse, u) - sh;
            const V e = vexp(d);
            s0 = s0 + select(live, e, zero);
            if (staged) store_partial(staged + i, lanes, e * (one - u * u));
            if (smoothing) {
                const V dl = select(live, d, zero);
                t0 = p.weight ? fma(vload_partial(p.weight + i, lanes, T(0)), dl, t0) : t0 + dl;
            }
        }
        s_total += double(reduce_sum(s0 + s1));
        t_total += double(reduce_sum(t0));
    }
    s = T(s_total);
    t = T(t_total);
}

// Sweep 3: grad_c = (a exp(x'_c - shift) - b w_c) (1 - tanh(x_c / cap)^2) (b = 0: no w_c term);
// grad may be x.
template <class T>
void capped_gradient_row(const T* x, int64_t n, T shift, T a, T b, const T* weight, T softcap, T* grad) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V cap = V::broadcast(softcap), inverse = V::broadcast(T(1) / softcap), one = V::broadcast(T(1));
    const V sh = V::broadcast(shift), va = V::broadcast(a), vb = V::broadcast(b);
    for (int64_t i = 0; i < n; i += W) {
        const int64_t lanes = n - i < W ? n - i : W;
        const bool full = lanes == W;
        V t;
        const V d = capped_vector(full ? vload(x + i) : vload_partial(x + i, lanes, T(0)), cap, inverse, t) - sh;
        V g = va * vexp(d);
        if (b != T(0)) g = g - (weight ? vb * (full ? vload(weight + i) : vload_partial(weight + i, lanes, T(0))) : vb);
        g = g * (one - t * t);
        if (full) store(grad + i, g); else store_partial(grad + i, lanes, g);
    }
}

// grad_c *= a over a row.
template <class T>
void scale_row(T* grad, int64_t n, T a) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V va = V::broadcast(a);
    int64_t i = 0;
    for (; i + W <= n; i += W) store(grad + i, va * vload(grad + i));
    if (i < n) store_partial(grad + i, n - i, va * vload_partial(grad + i, n - i, T(0)));
}

template <bool kGrad, class T>
void capped_index_rows(const CrossEntropyBlock<T>& b, const CrossEntropyParams<T>& p) {
    const int64_t n = p.classes;
    const T cap = p.softcap;
    for (int64_t r = 0; r < b.count; ++r) {
        const T* x = b.input + r * b.input_stride;
        const int64_t y = b.target[r * b.target_stride];
        const bool ignored = y == p.ignore_index;
        T unused, t_y = T(0);
        const T shift = capped_scalar(row_max(x, n), cap, unused);
        const T x_y = ignored ? T(0) : capped_scalar(x[y], cap, t_y);  // before grad (maybe x) is written
        const bool smoothing = !ignored && p.label_smoothing != T(0);
        // Without smoothing the gradient is a e_c (1 - t_c^2) but at y: sweep 2 stores
        // e_c (1 - t_c^2) in grad, and sweep 3 only scales it by a.
        T* grad = kGrad ? b.grad + r * b.grad_stride : nullptr;
        T* staged = kGrad && !ignored && !smoothing ? grad : nullptr;
        T s, t;
        capped_sums(x, n, shift, p, smoothing, s, t, staged);
        const T log_s = scalar_log(s), lse = log_sum_exp(shift, log_s);
        if (b.lse) b.lse[r * b.loss_stride] = lse;
        if (ignored) {
            b.loss[r * b.loss_stride] = T(0);
            if constexpr (kGrad) zero_row(grad, n);
            continue;
        }
        const T w_y = p.weight ? p.weight[y] : T(1);
        b.loss[r * b.loss_stride] = index_loss(log_s, x_y - shift, w_y, t, p);
        if constexpr (kGrad) {
            const IndexGradient<T> d = index_gradient(b.scale[r * b.scale_stride], s, lse, w_y, p);
            const T* b_weight = smoothing_weights(p);
            if (staged) {
                scale_row(grad, n, d.a);
            } else {
                capped_gradient_row(x, n, shift, d.a, d.b, b_weight, cap, grad);
            }
            // The target's entry as one expression, as the plain kernel's target_entry forms it.
            const T e_y = lane0(vexp(Vec<T>::broadcast(x_y - shift)));
            const T uniform = d.b * (b_weight ? b_weight[y] : T(1));
            grad[y] = ((d.a * e_y - uniform) - d.correction) * (T(1) - t_y * t_y);
        }
    }
}

}  // namespace

void register_cross_entropy_softcap_kernels(KernelTable& table) {
    table.f32.cross_entropy.capped_index_rows = &capped_index_rows<false, float>;
    table.f32.cross_entropy.capped_index_rows_grad = &capped_index_rows<true, float>;
    table.f64.cross_entropy.capped_index_rows = &capped_index_rows<false, double>;
    table.f64.cross_entropy.capped_index_rows_grad = &capped_index_rows<true, double>;
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
