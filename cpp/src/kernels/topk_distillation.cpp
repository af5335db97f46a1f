// Knowledge distillation from a top-k teacher: the teacher of a large vocabulary is kept as its k
// largest log-probabilities per position, at temperature T, so no N x C teacher array exists. Per
// position, one sweep over the student's row gives every sum, the k entries are gathered, and a
// second sweep (from L1/L2) writes the gradient.
//
// Per position, with student logits s (C classes), m = max_c s_c and the k teacher entries
// (j_1..j_k distinct, log-probabilities l_j):
//   S = sum_c exp(s_c - m),  S_T = sum_c exp((s_c - m) / T)
//   log sigma_j = (s_j - m) / T - log S_T          (the student's softmax(s/T), gathered)
//   sigma_O = 1 - sum_j sigma_j                     (the student's mass outside the k classes)
// The teacher: renormalize: log p_j = l_j - logsumexp_j l_j, p_O = 0; tail: log p_j = l_j,
// p_O = max(0, 1 - sum_j exp(l_j)). With k = C there is no outside bucket: sigma_O = p_O = 0.
// The divergence is taken over the k + 1 buckets b (the k classes and O):
//   kl:         D = sum_b p_b (log p_b - log sigma_b)
//   reverse_kl: D = sum_b sigma_b (log sigma_b - log p_b)
//   jsd:        D = beta sum_b p_b (log p_b - log M_b) + (1 - beta) sum_b sigma_b (log sigma_b - log M_b),
//               M_b = beta p_b + (1 - beta) sigma_b
// with 0 log 0 = 0. Under renormalize this is exactly the dense divergence against a teacher that
// is 0 outside its k classes: each class outside adds the same function of sigma_c, which the O
// bucket sums (kl: 0; jsd: -(1 - beta) log(1 - beta) sigma_c; reverse_kl: infinite, so the caller
// allows it only with k = C).
//
// Gradient. With v_b = dD/dsigma_b (v_c = v_O for every class c outside the k, which is how
// sigma_O depends on them) and d sigma_b / d s_c = sigma_b ([b = c] - sigma_c) / T:
//   T dD/ds_c = sigma_c (v_c - V),  V = sum_b sigma_b v_b
//             = sigma_c (v_O - V) + [c in k] sigma_c (v_c - v_O).
// Writing G_b = sigma_b v_b (the +1s of d(x log x) cancel against sum_b sigma_b = 1 and are left
// out): kl: G_b = -p_b; reverse_kl: G_b = sigma_b (log sigma_b - log p_b); jsd:
// G_b = (1 - beta) sigma_b (log sigma_b - log M_b). So the soft gradient is one coefficient times
// exp((s_c - m) / T) over the whole row, (v_O - V) / S_T, plus k sparse terms G_j - sigma_j v_O.
// The hard term's gradient is cross_entropy's (cross_entropy_terms-inl.hpp), and the position's
// share is scale * (hard_grad dCE/ds + soft_grad T dD/ds), as in distillation.cpp.
//
// [Note: integer temperature] as in distillation.cpp: for T = 1 one exponential serves both sums,
// for T = 2 exp(s - m) = exp((s - m) / 2)^2 (about 2 ulp for that term), else two exponentials.
#include <limits>

#include "fastloss/kernel_table.hpp"
#include "kernels/cross_entropy-inl.hpp"
#include "kernels/cross_entropy_terms-inl.hpp"
#include "kernels/row_statistics-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

template <class T>
struct TemperedRowSums {
    T hard;      // S = sum_c exp(s_c - m)
    T tempered;  // S_T = sum_c exp((s_c - m) / T)
    T smoothed;  // sum_c w_c (s_c - m), with label smoothing only
};

// exp((s - m) / T) and exp(s - m) of one vector of shifted logits d = s - m <= 0.
template <int kPower, class V>
inline void tempered_exponentials(V d, V inverse_temperature, V& tempered, V& hard) {
    if constexpr (kPower == 1) {
        tempered = vexp_nonpositive(d);
        hard = tempered;
    } else if constexpr (kPower == 2) {
        tempered = vexp_nonpositive(d * inverse_temperature);
        hard = tempered * tempered;
    } else {
        tempered = vexp_nonpositive(d * inverse_temperature);
        hard = vexp_nonpositive(d);
    }
}

// The sums of one row, taken in blocks of kSumBlockClasses whose sums are added in float64
// ([Note: long sums]). Padding lanes load -inf (exp 0) and are left out of the smoothing sum.
template <int kPower, class T>
TemperedRowSums<T> tempered_row_sums(const T* x, int64_t n, T shift, T inverse_temperature,
                                     bool smoothing, const T* weight) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V sh = V::broadcast(shift), it = V::broadcast(inverse_temperature), zero = V::broadcast(T(0));
    double hard_total = 0.0, tempered_total = 0.0, smoothed_total = 0.0;
    for (int64_t begin = 0; begin < n; begin += kSumBlockClasses) {
        const int64_t end = begin + kSumBlockClasses < n ? begin + kSumBlockClasses : n;
        V h = zero, t = zero, l = zero;
        for (int64_t i = begin; i < end; i += W) {
            const int64_t lanes = end - i < W ? end - i : W;
            const bool full = lanes == W;
            const V d = (full ? vload(x + i) : vload_partial(x + i, lanes, -infinity<T>())) - sh;
            V et, eh;
            tempered_exponentials<kPower>(d, it, et, eh);
            t = t + et;
            h = h + eh;
            if (smoothing) {
                const V live = full ? d : select(V::first_lanes(lanes), d, zero);
                l = weight ? fma(full ? vload(weight + i) : vload_partial(weight + i, lanes, T(0)), live, l)
                           : l + live;
            }
        }
        hard_total += double(reduce_sum(h));
        tempered_total += double(reduce_sum(t));
        smoothed_total += double(reduce_sum(l));
    }
    return {T(hard_total), T(tempered_total), T(smoothed_total)};
}

// grad_c = a exp(s_c - m) - b w_c + k_soft exp((s_c - m) / T) over a row (b = 0: no w_c term).
// grad may be x: each vector is loaded before it is stored.
template <int kPower, class T>
void dense_gradient_row(const T* x, int64_t n, T shift, T inverse_temperature, T a, T b, const T* weight,
                        T k_soft, T* grad) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V sh = V::broadcast(shift), it = V::broadcast(inverse_temperature);
    const V va = V::broadcast(a), vb = V::broadcast(b), vk = V::broadcast(k_soft);
    for (int64_t i = 0; i < n; i += W) {
        const int64_t lanes = n - i < W ? n - i : W;
        const bool full = lanes == W;
        const V d = (full ? vload(x + i) : vload_partial(x + i, lanes, -infinity<T>())) - sh;
        V et, eh;
        tempered_exponentials<kPower>(d, it, et, eh);
        V g = fma(va, eh, vk * et);
        if (b != T(0)) g = g - (weight ? vb * (full ? vload(weight + i) : vload_partial(weight + i, lanes, T(0))) : vb);
        if (full) store(grad + i, g); else store_partial(grad + i, lanes, g);
    }
}

// x log(x / y) as the divergences take it: 0 where x = 0 (xlogy), given log x and log y; a NaN x
// (from a NaN logit or log-probability) stays NaN.
template <class V>
inline V entropy_term(V x, V log_x, V log_y) {
    const V zero = V::broadcast(typename V::Scalar(0));
    return select(equal(x, zero), zero, x * (log_x - log_y));
}

template <class T>
T scalar_entropy_term(T x, T log_x, T log_y) {
    return x == T(0) ? T(0) : x * (log_x - log_y);
}

// The soft term of one position from its gathered log sigma_j (in `student`, overwritten with
// sigma_j) and the teacher's l_j (in `teacher`, overwritten with log p_j); G_j goes to `g`.
// Returns D, and v_O and V for the gradient.
// The lanes of a vector of T that start at element i of n.
template <class T>
inline int64_t lanes_from(int64_t i, int64_t n) {
    return n - i < Vec<T>::width ? n - i : Vec<T>::width;
}

template <class T>
struct SoftTerm {
    T divergence;
    T outside;  // v_O
    T mean;     // V = sum_b G_b
};

template <class T>
SoftTerm<T> soft_term(T* student, T* teacher, T* g, int64_t k, int64_t classes, const TopkDistillationParams<T>& p) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V zero = V::broadcast(T(0));
    const T beta = p.beta;
    if (p.residual == TopkResidual::renormalize) {
        // log p_j = l_j - logsumexp_j l_j
        V mv = V::broadcast(-infinity<T>());
        for (int64_t i = 0; i < k; i += W) {
            mv = max(mv, vload_partial(teacher + i, lanes_from<T>(i, k), -infinity<T>()));
        }
        const T mt = reduce_max(mv);
        const V shift = V::broadcast(mt);
        V sum = zero;
        for (int64_t i = 0; i < k; i += W) {
            sum = sum + vexp(vload_partial(teacher + i, lanes_from<T>(i, k), -infinity<T>()) - shift);
        }
        const V lz = V::broadcast(mt + scalar_log(reduce_sum(sum)));
        for (int64_t i = 0; i < k; i += W) {
            const int64_t lanes = lanes_from<T>(i, k);
            store_partial(teacher + i, lanes, vload_partial(teacher + i, lanes, T(0)) - lz);
        }
    }
    double sum_q = 0.0, sum_p = 0.0, divergence = 0.0, mean = 0.0;
    const V vbeta = V::broadcast(beta), vrest = V::broadcast(T(1) - beta);
    const V tiny = V::broadcast(std::numeric_limits<T>::min());
    for (int64_t i = 0; i < k; i += W) {
        const int64_t lanes = lanes_from<T>(i, k);
        const auto live = V::first_lanes(lanes);
        const V lq = vload_partial(student + i, lanes, -infinity<T>());
        const V lp = vload_partial(teacher + i, lanes, -infinity<T>());
        const V q = select(live, vexp(lq), zero), pr = select(live, vexp(lp), zero);
        V term, gj;
        if (p.divergence == Divergence::kl) {
            term = entropy_term(pr, lp, lq);
            gj = zero - pr;
        } else if (p.divergence == Divergence::reverse_kl) {
            term = entropy_term(q, lq, lp);
            gj = term;
        } else {
            const V lm = vlog(max(fma(vbeta, pr, vrest * q), tiny));
            const V student_part = entropy_term(q, lq, lm);
            term = fma(vbeta, entropy_term(pr, lp, lm), vrest * student_part);
            gj = vrest * student_part;
        }
        term = select(live, term, zero);
        gj = select(live, gj, zero);
        store_partial(student + i, lanes, q);
        store_partial(g + i, lanes, gj);
        sum_q += double(reduce_sum(q));
        sum_p += double(reduce_sum(pr));
        divergence += double(reduce_sum(term));
        mean += double(reduce_sum(gj));
    }
    // The bucket outside the k classes.
    const bool outside = k < classes;
    const T q_o = outside && sum_q < 1.0 ? T(1.0 - sum_q) : T(0);
    const T p_o = outside && p.residual == TopkResidual::tail && sum_p < 1.0 ? T(1.0 - sum_p) : T(0);
    T term_o = T(0), v_o = T(0), g_o = T(0);
    if (p.divergence == Divergence::kl) {
        if (p_o > T(0)) {
            term_o = p_o * (scalar_log(p_o) - scalar_log(q_o));
            v_o = -p_o / q_o;
        }
        g_o = -p_o;
    } else if (p.divergence == Divergence::reverse_kl) {
        if (q_o > T(0)) {
            v_o = scalar_log(q_o) - scalar_log(p_o);
            term_o = q_o * v_o;
            g_o = term_o;
        }
    } else {
        if (outside && p_o == T(0)) {
            // M_O = (1 - beta) sigma_O: v_O = (1 - beta) log(1 / (1 - beta)) whatever sigma_O is.
            v_o = -(T(1) - beta) * scalar_log(T(1) - beta);
            term_o = q_o * v_o;
            g_o = term_o;
        } else if (q_o > T(0) || p_o > T(0)) {
            const T lm = scalar_log(beta * p_o + (T(1) - beta) * q_o);
            const T student_part = scalar_entropy_term(q_o, scalar_log(q_o), lm);
            term_o = beta * scalar_entropy_term(p_o, scalar_log(p_o), lm) + (T(1) - beta) * student_part;
            if (q_o > T(0)) v_o = (T(1) - beta) * (scalar_log(q_o) - lm);
            g_o = (T(1) - beta) * student_part;
        }
    }
    return {T(divergence + double(term_o)), v_o, T(mean + double(g_o))};
}

template <int kPower, class T>
void position(const TopkDistillationRows<T>& b, const TopkDistillationParams<T>& p, int64_t r) {
    const int64_t n = p.hard.classes, k = p.k;
    const T it = p.inverse_temperature;
    const T* x = b.student + r * b.student_stride;
    const T m = row_max(x, n);
    const T shift = m == -infinity<T>() ? T(0) : m;
    const int64_t y = b.target ? b.target[r] : p.hard.ignore_index;
    const bool counted = b.target != nullptr && y != p.hard.ignore_index;
    const bool smoothing = counted && p.hard.label_smoothing != T(0);
    const TemperedRowSums<T> sums = tempered_row_sums<kPower>(x, n, shift, it, smoothing, p.hard.weight);
    const T log_s = scalar_log(sums.hard);
    const T lse = log_sum_exp(m, log_s);
    const T w_y = counted ? (p.hard.weight ? p.hard.weight[y] : T(1)) : T(0);
    b.lse[r] = lse;
    b.hard[r] = counted ? index_loss(log_s, x[y] - shift, w_y, sums.smoothed, p.hard) : T(0);

    const int64_t stride = k + TopkDistillationRows<T>::kScratchPadding;
    T* student = b.scratch;
    T* teacher = student + stride;
    T* g = teacher + stride;
    const int64_t* indices = b.indices + r * k;
    const T log_st = scalar_log(sums.tempered);
    for (int64_t j = 0; j < k; ++j) {
        student[j] = (x[indices[j]] - shift) * it - log_st;
        teacher[j] = b.logprobs[r * k + j];
    }
    const SoftTerm<T> soft = soft_term(student, teacher, g, k, n, p);
    b.soft[r] = soft.divergence;
    if (!b.grad) return;

    const T scale = b.scale[r];
    const T k_soft = scale * p.soft_grad;
    IndexGradient<T> hard{T(0), T(0), T(0)};
    if (counted) hard = index_gradient(scale * p.hard_grad, sums.hard, lse, w_y, p.hard);
    T* grad = b.grad + r * b.grad_stride;
    dense_gradient_row<kPower>(x, n, shift, it, hard.a, hard.b, smoothing_weights(p.hard),
                               k_soft * (soft.outside - soft.mean) / sums.tempered, grad);
    if (counted) grad[y] -= hard.correction;
    for (int64_t j = 0; j < k; ++j) grad[indices[j]] += k_soft * (g[j] - student[j] * soft.outside);
}

template <class T>
void rows_kernel(const TopkDistillationRows<T>& b, const TopkDistillationParams<T>& p) {
    const T it = p.inverse_temperature;
    for (int64_t r = 0; r < b.rows; ++r) {
        if (it == T(1)) {
            position<1>(b, p, r);
        } else if (it == T(0.5)) {
            position<2>(b, p, r);
        } else {
            position<0>(b, p, r);
        }
    }
}

}  // namespace

void register_topk_distillation_kernels(KernelTable& table) {
    table.f32.topk_distillation.rows = &rows_kernel<float>;
    table.f64.topk_distillation.rows = &rows_kernel<double>;
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
