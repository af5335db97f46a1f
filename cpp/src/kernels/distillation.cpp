// Knowledge distillation from student and teacher logits, fused: per position, the hard
// cross-entropy of the student and the KL divergence between the tempered softmaxes, from one read
// of each logit. No log_softmax, softmax or N x C temporary is ever formed.
//
// Per position, with student logits s, teacher logits t, C classes and temperature T:
//   m = max_c s_c,  S = sum_c exp(s_c - m)                  (hard softmax of s)
//   a_c = (s_c - m) / T,  S_a = sum_c exp(a_c)               (softmax(s/T), shifted by m/T)
//   b_c = (t_c - max t) / T,  S_b = sum_c exp(b_c)           (softmax(t/T), shifted by max t / T)
// A shift does not change a softmax, so log softmax(s/T)_c = a_c - log S_a and
// log softmax(t/T)_c = b_c - log S_b, and with p_c = exp(b_c) / S_b (so sum_c p_c = 1):
//   KL = sum_c p_c (log p_c - log softmax(s/T)_c)
//      = sum_c p_c ((b_c - a_c) - log S_b + log S_a)
//      = (1 / S_b) sum_c exp(b_c) (b_c - a_c) - log S_b + log S_a.
// Every exponent is <= 0 (no overflow) and b_c - a_c is formed from shifted values, so nothing of
// the size of the raw logits cancels; the rounding error is that of PyTorch's own
// log_softmax/softmax/kl_div sequence (absolute, of the order of eps * |log p|).
// The hard cross-entropy uses m, S and the linear sums of cross_entropy.cpp (CE(s, y) formulas in
// kernel_table.hpp).
//
// -inf logits, as PyTorch's kl_div(log_softmax(s/T), softmax(t/T)) computes them pointwise as
// xlogy(p, p) - p * lp_s: where p_c = 0 (a -inf teacher logit, or an underflow) the term is
// 0 * lp_s, i.e. 0 unless the student's logit is -inf as well, which gives NaN; a -inf student
// logit where p_c > 0 gives +inf. The formula above would form 0 * (-inf - a_c) = NaN where b_c is
// -inf, so b_c is clamped where exp(b_c) underflows to 0 (see accumulate): the term becomes
// 0 * (lo - a_c), which reproduces both cases. An all -inf row or a +inf logit gives NaN, as the
// softmaxes do.
//
// Two sweeps per row: the maxima of s and t first, then one sweep over both rows for every sum.
// A row pair of 32000 float32 logits is 256 KB, so the second sweep reads from L2: DRAM sees each
// logit once. Sums are two-level (partial sums of kFoldVectors vectors folded into a total), so the
// rounding error grows with C / kFoldVectors + kFoldVectors rather than C.
//
// Gradient with respect to s (the *_grad kernels). With P_c = exp(s_c - m) / S (hard softmax),
// sigma_c = exp(a_c) / S_a = softmax(s/T)_c and p_c = exp(b_c) / S_b = softmax(t/T)_c:
//   dCE/ds_c, index y:       (1-eps) w_y (P_c - [c = y]) + (eps/C)(W P_c - w_c)   (cross_entropy_grad.cpp)
//   dCE/ds_c, probabilities: B P_c - w_c q'_c,  B = sum_c w_c q'_c
//   dKL/ds_c = d/ds_c [-sum_k p_k log sigma_k] = (1/T)(sigma_c sum_k p_k - p_c) = (sigma_c - p_c) / T
// (the only s-dependent part of KL is the cross term; sum_k p_k = 1). The loss weighs CE by alpha
// and KL by (1-alpha) T^2, and the reduction divides them by D (the CE mean's denominator) and N
// (batchmean's shape[0]), so with g the position's scale (grad_output, or the scalar of mean/sum):
//   dL/ds_c = h dCE/ds_c + k (sigma_c - p_c),   h = g alpha / D,   k = g (1-alpha) T / N
//           = hA e_c - hB c_c - [c = y] h (1-eps) w_y + (k / S_a) exp(a_c) - (k / S_b) exp(b_c)
// where e_c = exp(s_c - m) and, for index targets, hA = (h / S)((1-eps) w_y + eps W / C),
// hB = h eps / C, c_c = w_c; for probabilities hA = h B / S, hB = h, c_c = w_c q'_c. The kernels get
// g alpha / D and g (1-alpha) T / N as scale[r] * params.hard_grad and scale[r] * params.soft_grad.
// An ignored position has h = 0 (no CE gradient) but keeps its KL gradient, as in PyTorch's
// expression, whose nll_loss backward writes 0 there; when every target is ignored under mean, the
// loss is NaN (0/0 in CE) and the gradient is the KL part alone, again as autograd gives.
// -inf logits: exp(-inf) = 0 in every term, so the gradient stays finite where PyTorch's does
// (a -inf student logit under a positive p_c gets -k p_c; the loss there is +inf).
//
// Reverse KL and the Jensen-Shannon divergence (params.divergence). With the same shifted
// exponents, log sigma_c = a_c - log S_a and log p_c = b_c - log S_b:
//   KL(sigma || p) = sum_c sigma_c ((a_c - b_c) - log S_a + log S_b)
//                  = (1 / S_a) sum_c exp(a_c) (a_c - b_c) - log S_a + log S_b,
// KL with the roles swapped: its sum is `cross` with exp(a) as the weight, and a is clamped where
// exp(a) underflows as b is for KL, which gives PyTorch's kl_div(log_softmax(t/T), softmax(s/T))
// pointwise: 0 where sigma_c = 0, NaN where p_c = 0 too (0 * -inf), +inf where only p_c = 0.
// As d sigma_k / ds_c = sigma_k ([k = c] - sigma_c) / T, with r_c = log sigma_c - log p_c:
//   T d KL(sigma || p) / ds_c = sigma_c (r_c - KL) = sigma_c ((a_c - b_c) - R),
//   R = (1 / S_a) sum_k exp(a_k) (a_k - b_k)   (the +1 of d(x log x) cancels).
// JSD = beta KL(p || M) + (1 - beta) KL(sigma || M), M_c = beta p_c + (1 - beta) sigma_c. M needs the
// normalised probabilities, so S_a and S_b come first, and a third sweep (the mixture sweep, from
// L1/L2 as the second) forms, with w_s = (1 - beta) / S_a and w_t = beta / S_b:
//   M_c = w_s exp(a_c) + w_t exp(b_c)
//   X_s = sum_c exp(a_c) d_c,   d_c = log sigma_c - log M_c = (a_c - log S_a) - log M_c
//   X_t = sum_c exp(b_c) e_c,   e_c = log p_c - log M_c = (b_c - log S_b) - log M_c
//   JSD = w_t X_t + w_s X_s.
// M_c is clamped below at the smallest normal number before its log, so where both probabilities
// underflow a term is 0 * finite rather than 0 * inf (the true terms are smaller than that number).
// a is clamped as for reverse KL: a -inf student logit adds 0 (kl_div(log M, sigma)'s xlogy).
// With u_c = d JSD / d sigma_c = (1 - beta) d_c (the +1s of d(x log x) cancel between sigma and M):
//   T d JSD / ds_c = sigma_c (u_c - sum_k sigma_k u_k) = w_s exp(a_c) d_c - (w_s X_s / S_a) exp(a_c).
// So both give the gradient's soft part the form k exp(a_c) (kD d_c + kA) per position, kD and kA
// folded with k (reverse: kD = k / S_a, kA = -kD R; JSD: kD = k w_s, kA = -k w_s X_s / S_a), where
// KL's is kA exp(a_c) - kB exp(b_c). The JSD's rows layout keeps exp(a), exp(b) and then d_c in a
// scratch row [Note: stored exponentials], so its mixture sweep costs one log per class and its
// gradient sweep no transcendental (T = 1, 2); rows in lanes keep them in registers, the columns
// layout recomputes them.
//
// Fusion: a third sweep writes the gradient. In the rows layout it reads the exponentials back
// from a scratch row of the call's, where the sums' sweep kept them ([Note: stored exponentials]);
// they cannot be kept in grad, which may be s itself. The columns layout recomputes them from the
// block (still in cache after the sums). Each element of s is read before the gradient element at
// the same index is written, so grad may alias s. The target logit s_y is read for the loss before
// the third sweep.
#include <cmath>
#include <limits>
#include <type_traits>

#include "fastloss/kernel_table.hpp"
#include "kernels/column_sweeps-inl.hpp"
#include "kernels/cross_entropy_terms-inl.hpp"
#include "kernels/row_statistics-inl.hpp"
#include "kernels/store_row-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

constexpr int64_t kFoldVectors = 32;

// What the hard cross-entropy needs besides m and S.
enum class HardTerm {
    plain,          // index targets without smoothing: only s_y
    smoothed,       // index targets with smoothing:    linear = sum_c w_c (s_c - m)
    probabilities,  // probability targets:             linear = sum_c w_c q'_c (s_c - m), coef = sum_c w_c q'_c
};

// [Note: kernel instances] Each kernel here is instantiated per divergence, hard term, integer
// temperature [Note: integer temperature], storage type and ISA, and that count sets this file's
// compile time, the largest part of every build (the sanitizer build's most of all). So whether a
// call writes the gradient is a run-time test (grad != nullptr) on per-row and per-call paths, not
// a template parameter: the forward entries run the same code without a gradient, for a few scalar
// factors per row. Two exceptions: rows in lanes keep the template parameter (a run-time flag
// there made the 32x10 forward 3.3 us against 3.0 us; it was 2.55 us before this change, a cost
// not yet explained, BENCHMARKS.md's ninth sitting), and the rows layout keeps HardTerm::plain
// apart from smoothed (folding them, one add per class, cost the large-vocabulary T = 1 kernel
// 10% of its speed); the columns layout, the rarer one, runs index targets without smoothing as
// smoothed with eps = 0, which index_loss and the zero hB make exact. Rows in lanes also run for
// float and double only (see rows_kernel).

// The class weights of the hard term's linear sum and of the gradient's hB w_c term: always for
// probability targets, for index targets only with smoothing (smoothing_weights: HardTerm::plain
// has neither term, and the columns layout, which runs smoothed without smoothing too, must not
// bring a non-finite weight of a class that no row targets into the gradient as 0 * inf).
template <HardTerm kHard, class T>
const T* hard_weights(const CrossEntropyParams<T>& p) {
    return kHard == HardTerm::probabilities ? p.weight : smoothing_weights(p);
}

template <class V>
struct DistillationSums {
    V hard;     // sum exp(s - m)
    V student;  // S_a = sum exp(a)
    V teacher;  // S_b = sum exp(b)
    V cross;    // kl: sum exp(b) (b - a), b clamped; reverse_kl: sum exp(a) (a - b), a clamped (accumulate)
    V linear;
    V coef;

    static DistillationSums zero() {
        const V z = V::broadcast(typename V::Scalar(0));
        return {z, z, z, z, z, z};
    }
    void add(const DistillationSums& o) {
        hard = hard + o.hard;
        student = student + o.student;
        teacher = teacher + o.teacher;
        cross = cross + o.cross;
        linear = linear + o.linear;
        coef = coef + o.coef;
    }
    template <class Mask>
    void keep_lanes(Mask live) {
        const V z = V::broadcast(typename V::Scalar(0));
        hard = select(live, hard, z);
        student = select(live, student, z);
        teacher = select(live, teacher, z);
        cross = select(live, cross, z);
        linear = select(live, linear, z);
        coef = select(live, coef, z);
    }
};

// [Note: integer temperature] The three exponentials per class are the cost of this kernel (it is
// compute-bound at two threads). For T = 1 and T = 2, exp(s - m) = exp(a)^T, so the hard term's
// exponential is one or two multiplies instead of a third vexp. Squaring doubles the relative
// error of that one term (to about 2 ulp), far below what the sums add; underflow still gives 0.
// kPower is T for those two temperatures and 0 (three exponentials) otherwise.
//
// One vector of classes: s and t are the logits, ms and mt their maxima, hard_coef the weight of
// the linear hard term (w or w q', see hard_weights).
//
// Every exponent is <= 0 (or NaN): logits are shifted by their row's max, and padding lanes load
// -inf. So the exponentials need no upper clamp, and b is clamped below where exp(b) underflows
// to exactly 0 (ExpConstants::lo): then the cross term exp(b) (b - a) is 0 * (lo - a) there, which
// is PyTorch's 0 * lp_s from the derivation above (0, or NaN where a = -inf), with no separate
// test for exp(b) = 0. A NaN passes the clamp (max returns its second operand).
// The one exception: a NaN hides the values before it from a running max (max returns its second
// operand), so a row holding a NaN can have positive exponents. Its sums are NaN whatever they are,
// and exp of any argument is safe on every ISA (the scalar ldexp_integral clamps its scale).
//
// Returns the class's three exponentials, exp(a), exp(b) and exp(s - m), which the gradient needs
// again: rows in lanes keep them (a few vectors per class); the rows layout recomputes them in its
// third sweep (see Fusion above), and the compiler drops what it does not use.
template <class V>
struct ClassExponentials {
    V student;  // exp(a)
    V teacher;  // exp(b)
    V hard;     // exp(s - m)
};

// Reverse KL's a_c - b_c, with a clamped where exp(a) underflows (see accumulate) and tm = t - m_t:
// max(lo, a) - tm / T as one explicit fma, so that every sweep and layout forms the same bits. As
// a subtraction of the product, GCC fuses it or not by how many uses the product has in each
// inlined context, which differs between the sweeps (and once differed by the kernel instance).
template <class V>
inline V reverse_log_ratio(V a, V tm, V inverse_temperature) {
    using T = typename V::Scalar;
    const V clamped_a = max(V::broadcast(ExpConstants<T>::lo), a);
    return fma(tm, V::broadcast(T(0)) - inverse_temperature, clamped_a);
}

template <Divergence kDiv, HardTerm kHard, int kPower, class V>
inline ClassExponentials<V> accumulate(DistillationSums<V>& acc, V s, V t, V ms, V mt, V inverse_temperature,
                                       V hard_coef) {
    using T = typename V::Scalar;
    const V lo = V::broadcast(ExpConstants<T>::lo);
    const V ds = s - ms;
    const V a = kPower == 1 ? ds : ds * inverse_temperature;
    const V tm = t - mt;
    const V unclamped_b = kPower == 1 ? tm : tm * inverse_temperature;
    const V b = max(lo, unclamped_b);
    const V eb = vexp_clamped(b);
    const V ea = vexp_nonpositive(a);
    V e = ea;
    if constexpr (kPower == 1) {
        acc.hard = acc.hard + ea;
    } else if constexpr (kPower == 2) {
        acc.hard = fma(ea, ea, acc.hard);
        e = ea * ea;
    } else {
        e = vexp_nonpositive(ds);
        acc.hard = acc.hard + e;
    }
    acc.student = acc.student + ea;
    acc.teacher = acc.teacher + eb;
    if constexpr (kDiv == Divergence::kl) acc.cross = fma(eb, b - a, acc.cross);
    if constexpr (kDiv == Divergence::reverse_kl) {
        acc.cross = fma(ea, reverse_log_ratio(a, tm, inverse_temperature), acc.cross);
    }
    if constexpr (kHard != HardTerm::plain) acc.linear = fma(hard_coef, ds, acc.linear);
    if constexpr (kHard == HardTerm::probabilities) acc.coef = acc.coef + hard_coef;
    return {ea, eb, e};
}

template <class T>
T kl_from_sums(T cross, T log_teacher, T log_student, T teacher) {
    return cross / teacher - log_teacher + log_student;
}

// The JSD's mixture sweep (see the top): per position, log S_a, log S_b, w_s = (1 - beta) / S_a
// and w_t = beta / S_b, as scalars (rows) or one position per lane (V).
template <class V>
struct MixtureWeights {
    V log_student, log_teacher, student, teacher;
};

// one_minus_beta and beta as V (the parameter, broadcast where V is a vector).
template <class V>
MixtureWeights<V> mixture_weights(V student_sum, V teacher_sum, V log_student, V log_teacher, V one_minus_beta,
                                  V beta) {
    return {log_student, log_teacher, one_minus_beta / student_sum, beta / teacher_sum};
}

// d_c = log sigma_c - log M_c and e_c = log p_c - log M_c of one class vector, from its
// exponentials and the exponents a, b as accumulate forms them (b already clamped).
template <class V>
struct MixtureLogRatios {
    V student, teacher;
};

template <class V>
inline MixtureLogRatios<V> mixture_log_ratios(const ClassExponentials<V>& x, V a, V b, const MixtureWeights<V>& w) {
    using T = typename V::Scalar;
    const V m = fma(w.teacher, x.teacher, w.student * x.student);
    const V log_m = vlog(max(V::broadcast(std::numeric_limits<T>::min()), m));
    const V clamped_a = max(V::broadcast(ExpConstants<T>::lo), a);
    return {(clamped_a - w.log_student) - log_m, (b - w.log_teacher) - log_m};
}

// X_s and X_t (see the top), with the fold and lane bookkeeping of DistillationSums.
template <class V>
struct MixtureSums {
    V student, teacher;
    static MixtureSums zero() {
        const V z = V::broadcast(typename V::Scalar(0));
        return {z, z};
    }
    void add(const MixtureSums& o) {
        student = student + o.student;
        teacher = teacher + o.teacher;
    }
    template <class Mask>
    void keep_lanes(Mask live) {
        const V z = V::broadcast(typename V::Scalar(0));
        student = select(live, student, z);
        teacher = select(live, teacher, z);
    }
    void accumulate(const ClassExponentials<V>& x, const MixtureLogRatios<V>& r) {
        student = fma(x.student, r.student, student);
        teacher = fma(x.teacher, r.teacher, teacher);
    }
};

// One class vector's exponents and exponentials exactly as accumulate forms them (the same
// clamps, vexp and power trick), for the sweeps after the sums.
template <class V>
struct ClassExponents {
    V ds, a, b;       // s - m_s, a, and b clamped below at ExpConstants::lo
    V reverse_ratio;  // reverse_log_ratio
};

template <int kPower, class V>
inline ClassExponents<V> class_exponents(V s, V t, V ms, V mt, V inverse_temperature) {
    using T = typename V::Scalar;
    const V ds = s - ms;
    const V a = kPower == 1 ? ds : ds * inverse_temperature;
    const V tm = t - mt;
    const V unclamped_b = kPower == 1 ? tm : tm * inverse_temperature;
    const V b = max(V::broadcast(ExpConstants<T>::lo), unclamped_b);
    return {ds, a, b, reverse_log_ratio(a, tm, inverse_temperature)};
}

// The soft gradient's d_c (see the top): a_c - b_c for reverse KL (reverse_log_ratio);
// log sigma_c - log M_c for the JSD.
template <Divergence kDiv, class V>
inline V soft_log_ratio(const ClassExponents<V>& x, const ClassExponentials<V>& e, const MixtureWeights<V>& w) {
    if constexpr (kDiv == Divergence::jsd) {
        return mixture_log_ratios(e, x.a, x.b, w).student;
    } else {
        return x.reverse_ratio;
    }
}

template <int kPower, class V>
inline ClassExponentials<V> class_exponentials(const ClassExponents<V>& x) {
    const V ea = vexp_nonpositive(x.a);
    const V eb = vexp_clamped(x.b);
    const V e = kPower == 1 ? ea : (kPower == 2 ? ea * ea : vexp_nonpositive(x.ds));
    return {ea, eb, e};
}

// [Note: stored exponentials] The rows layout keeps exp(a) and exp(b) of the second sweep in a
// scratch row of T (the caller's, 2 * padded_length(n) values, see DistillationBlock) where a later
// sweep needs them: the gradient's, and the JSD's mixture sweep. The mixture sweep then needs one
// log per class and no exponential, and overwrites exp(b) with d_c. The gradient sweep reads them
// back and takes no exponential for T = 1 and 2 (one, exp(s - m), for other temperatures): it took
// two or three a class before, beside the two the sums sweep takes, and the two stores a class
// cost the sums sweep much less than that on the FMA pipes. The stored values are the bits the
// sweeps would recompute, so rows in lanes (which keep them in registers) still match.
template <class T>
int64_t padded_length(int64_t n) {
    constexpr int64_t W = Vec<T>::width;
    return (n + W - 1) / W * W;
}

// The mixture sweep over one row pair (rows layout), in distillation_row_sums's fold and tail
// order so rows in lanes can match it [Note: rows in lanes, summed in the row sweep's order].
template <int kPower, class S, class T = compute_t<S>>
MixtureSums<T> mixture_row_sums(const S* s, const S* t, int64_t n, T m_s, T m_t, const MixtureWeights<T>& weights,
                                T* stored, const DistillationParams<T>& p) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V ms = V::broadcast(m_s), mt = V::broadcast(m_t), inv = V::broadcast(p.inverse_temperature);
    const MixtureWeights<V> w{V::broadcast(weights.log_student), V::broadcast(weights.log_teacher),
                              V::broadcast(weights.student), V::broadcast(weights.teacher)};
    T* ratios = stored + padded_length<T>(n);  // exp(b) in, d out [Note: stored exponentials]
    auto add_class = [&](MixtureSums<V>& part, V sv, V tv, int64_t i) {
        const ClassExponents<V> x = class_exponents<kPower>(sv, tv, ms, mt, inv);
        const V unused = V::broadcast(T(0));
        const ClassExponentials<V> e{vload(stored + i), vload(ratios + i), unused};
        const MixtureLogRatios<V> r = mixture_log_ratios(e, x.a, x.b, w);
        part.accumulate(e, r);
        store(ratios + i, r.student);
    };
    MixtureSums<V> total = MixtureSums<V>::zero();
    const int64_t full_end = n - n % W;
    int64_t i = 0;
    while (i < full_end) {
        const int64_t fold_end = full_end - i > kFoldVectors * W ? i + kFoldVectors * W : full_end;
        MixtureSums<V> part = MixtureSums<V>::zero();
        for (; i < fold_end; i += W) add_class(part, vload(s + i), vload(t + i), i);
        total.add(part);
    }
    if (i < n) {  // tail: as distillation_row_sums's
        const int64_t lanes = n - i;
        MixtureSums<V> part = MixtureSums<V>::zero();
        const T fill = -infinity<T>();
        add_class(part, vload_partial(s + i, lanes, fill), vload_partial(t + i, lanes, fill), i);
        part.keep_lanes(V::first_lanes(lanes));
        total.add(part);
    }
    return {reduce_sum(total.student), reduce_sum(total.teacher)};
}

template <class T>
struct RowSums {
    T max;
    T hard, student, teacher, cross, linear, coef;
    T teacher_max;
    T mixture_student = T(0), mixture_teacher = T(0);  // jsd: X_s and X_t (the mixture sweep)
};

// [Note: the next row pair fetched during the sums] The maxima's sweep reads a row pair from
// memory, the sums' sweep reads it again from L2 and takes its exponentials: taken one after the
// other, the memory time and the exponentials' time add up. The sums' sweep asks for the next row
// pair's lines into L2 as it goes, so the next maxima read them from cache and the memory stream
// runs under the exponentials. Measured (native harness, distillation and distillation+grad, T = 2,
// 1 and 2 threads, AMD Zen 4): float32 4096 x 32000 0.72-0.90x the time, float64 4096 x 1000 and
// 4096 x 32000 0.76-0.87x, bfloat16 4096 x 32000 0.88-0.92x. It holds where two row pairs do not
// fit in L2 too (1024 x 128256: 0.82-1.01x): the lines the sums have not reached yet are then
// read from L3, as they were without it. Unlike cross_entropy's single rows ([Note: the next row
// into L1 or L2]), short row pairs go to L2 as well: 4096 x 1000 measured 0.76-1.01x so.

// Both sweeps over one row pair (rows layout); exp(a) and exp(b) are kept in `stored` where it is
// not null [Note: stored exponentials]. The row pair at next_s and next_t, where not null, is
// fetched into L2 on the way [Note: the next row pair fetched during the sums].
template <Divergence kDiv, HardTerm kHard, int kPower, class S, class T = compute_t<S>>
RowSums<T> distillation_row_sums(const S* s, const S* t, const S* q, int64_t n, T* stored,
                                 const DistillationParams<T>& p, const S* next_s = nullptr,
                                 const S* next_t = nullptr) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const T m_s = row_max(s, n), m_t = row_max(t, n);
    const V ms = V::broadcast(m_s), mt = V::broadcast(m_t), inv = V::broadcast(p.inverse_temperature);
    const V keep = V::broadcast(T(1) - p.hard.label_smoothing);
    const V spread = V::broadcast(p.hard.label_smoothing / T(p.hard.classes));
    const T* w = hard_weights<kHard>(p.hard);
    auto hard_coef = [&](int64_t i, int64_t lanes) {
        const bool full = lanes == W;
        V coef = V::broadcast(T(1));
        if constexpr (kHard == HardTerm::probabilities) {
            coef = fma(full ? vload(q + i) : vload_partial(q + i, lanes, T(0)), keep, spread);
        }
        if (w) coef = coef * (full ? vload(w + i) : vload_partial(w + i, lanes, T(0)));
        return coef;
    };

    auto keep_exponentials = [&](const ClassExponentials<V>& e, int64_t i) {
        if (stored) {
            store(stored + i, e.student);
            store(stored + padded_length<T>(n) + i, e.teacher);
        }
    };
    DistillationSums<V> total = DistillationSums<V>::zero();
    const int64_t full_end = n - n % W;
    int64_t i = 0;
    while (i < full_end) {
        const int64_t fold_end = full_end - i > kFoldVectors * W ? i + kFoldVectors * W : full_end;
        DistillationSums<V> part = DistillationSums<V>::zero();
        for (; i < fold_end; i += W) {
            if (next_s) {
                prefetch_elements<PrefetchInto::l2>(next_s + i, W);
                prefetch_elements<PrefetchInto::l2>(next_t + i, W);
            }
            const V sv = vload(s + i), tv = vload(t + i);
            keep_exponentials(accumulate<kDiv, kHard, kPower>(part, sv, tv, ms, mt, inv, hard_coef(i, W)), i);
        }
        total.add(part);
    }
    if (next_s && i < n) {
        prefetch_elements<PrefetchInto::l2>(next_s + i, n - i);
        prefetch_elements<PrefetchInto::l2>(next_t + i, n - i);
    }
    if (i < n) {  // tail: padding lanes load -inf (exponents <= 0), compute garbage and are zeroed
        const int64_t lanes = n - i;
        DistillationSums<V> part = DistillationSums<V>::zero();
        const T fill = -infinity<T>();
        const V sv = vload_partial(s + i, lanes, fill), tv = vload_partial(t + i, lanes, fill);
        keep_exponentials(accumulate<kDiv, kHard, kPower>(part, sv, tv, ms, mt, inv, hard_coef(i, lanes)), i);
        part.keep_lanes(V::first_lanes(lanes));
        total.add(part);
    }
    return {m_s,
            reduce_sum(total.hard),
            reduce_sum(total.student),
            reduce_sum(total.teacher),
            reduce_sum(total.cross),
            reduce_sum(total.linear),
            reduce_sum(total.coef),
            m_t};
}

// The gradient's per-position factors, see the derivation at the top: grad_c = hA e_c - hB c_c +
// kA exp(a_c) - kB exp(b_c) for KL, with kA = k / S_a and kB = k / S_b, and hA e_c - hB c_c +
// exp(a_c) (kD d_c + kA) for reverse KL and JSD, minus `correction` at the target y (y < 0: none).
template <class T>
struct GradientFactors {
    T hA, hB, kA, kB, correction;
    int64_t y;
    T kD = T(0);
};

// The hard term's z-loss share, z' lse^2 at a position that counts (DistillationParams::z_loss);
// without z-loss nothing is added (not even 0), so the loss keeps its bits.
template <class T>
T with_z_loss_share(T hard, T lse, const DistillationParams<T>& p) {
    return p.z_loss == T(0) ? hard : hard + p.z_loss * lse * lse;
}

template <class T>
MixtureWeights<T> row_mixture_weights(T student, T teacher, T log_student, T log_teacher, T beta) {
    return mixture_weights<T>(student, teacher, log_student, log_teacher, T(1) - beta, beta);
}

// One position's hard cross-entropy and soft term from its row sums, written to `hard` and `kl`;
// with grad, also the gradient's factors for the scale g (zero factors otherwise). y is the
// position's index target (unused for probability targets); sr is its row of student logits.
// The logs of the three sums of exponentials come from the caller (one vlog serves W rows in lanes).
template <class T>
struct RowLogs {
    T hard, student, teacher;
};

template <Divergence kDiv, HardTerm kHard, class S, class T>
GradientFactors<T> finish_position(const RowSums<T>& sums, const RowLogs<T>& logs, const S* sr, int64_t y, T g,
                                   bool grad, T& hard, T& kl, const DistillationParams<T>& p) {
    GradientFactors<T> f{T(0), T(0), T(0), T(0), T(0), -1};
    const T log_hard = logs.hard;
    const T h = g * p.hard_grad, k = g * p.soft_grad;
    if constexpr (kDiv == Divergence::kl) {
        kl = kl_from_sums(sums.cross, logs.teacher, logs.student, sums.teacher);
        if (grad) {
            f.kA = k / sums.student;
            f.kB = k / sums.teacher;
        }
    } else if constexpr (kDiv == Divergence::reverse_kl) {
        kl = kl_from_sums(sums.cross, logs.student, logs.teacher, sums.student);
        if (grad) {
            f.kD = k / sums.student;
            f.kA = -f.kD * (sums.cross / sums.student);
        }
    } else {
        const MixtureWeights<T> w =
            row_mixture_weights(sums.student, sums.teacher, logs.student, logs.teacher, p.beta);
        kl = std::fma(w.teacher, sums.mixture_teacher, w.student * sums.mixture_student);
        if (grad) {
            f.kD = k * w.student;
            f.kA = -f.kD * (sums.mixture_student / sums.student);
        }
    }
    if constexpr (kHard == HardTerm::probabilities) {
        const T lse = sums.max + log_hard;
        hard = with_z_loss_share(sums.coef * log_hard - sums.linear, lse, p);
        if (grad) {
            f.hA = with_z_loss(h * sums.coef / sums.hard, h, sums.hard, lse, p.hard);
            f.hB = h;
        }
    } else if (y == p.hard.ignore_index) {
        // Ignored positions have no hard term; their KL term still counts (kl_div has no
        // ignore_index), as in the PyTorch expression.
        hard = T(0);
    } else {
        const T w_y = p.hard.weight ? p.hard.weight[y] : T(1);
        hard = with_z_loss_share(index_loss(log_hard, sr[y] - sums.max, w_y, sums.linear, p.hard),
                                 sums.max + log_hard, p);
        if (grad) {
            const IndexGradient<T> d = index_gradient(h, sums.hard, sums.max + log_hard, w_y, p.hard);
            f.hA = d.a;
            f.hB = d.b;
            f.correction = d.correction;
            f.y = y;
        }
    }
    return f;
}

// One class vector of the gradient from the class's exponentials (accumulate's), its hard
// coefficient, the factors as vectors and, for reverse KL and JSD, d_c (soft_log_ratio; unused
// for KL).
template <Divergence kDiv, HardTerm kHard, class V>
inline V gradient_vector(const ClassExponentials<V>& x, V hard_coef, V hA, V hB, V kA, V kB, V kD, V ratio) {
    V out;
    if constexpr (kDiv == Divergence::kl) {
        out = fma(hA, x.hard, fma(kA, x.student, V::broadcast(typename V::Scalar(0)) - kB * x.teacher));
    } else {
        out = fma(hA, x.hard, x.student * fma(kD, ratio, kA));
    }
    if constexpr (kHard != HardTerm::plain) out = out - hB * hard_coef;
    return out;
}

// [Note: the rows' gradient streamed] The gradient's sweep reads everything it needs from L2 (the
// row pair, the stored exponentials) and writes a row that goes to memory. Ordinary stores read
// each of its lines from memory first; non-temporal stores do not. So the rows stream the gradient
// where the other writers stream their output (CrossEntropyParams::stream_grad, at least a quarter
// of L3). Measured (native harness, distillation+grad, T = 2, 1 and 2 threads, AMD Zen 4, 32 MiB
// L3), streamed against ordinary stores: float32 4096 x 32000 0.79-0.87x the time, 8192 x 2000,
// 4096 x 4000 and 2048 x 8000 0.75-0.84x, 1024 x 128256 0.91x; float64 4096 x 32000 0.87-0.92x,
// 1024 x 128256 0.93x; bfloat16 4096 x 32000 0.93-0.94x. Only outputs that half fill L3 lose a
// little, as the other writers' do: 4096 x 1000 float32 (16 MB) and float64 1.00-1.07x.

// The gradient's third sweep over one row (rows layout), formed in T before the single store
// (non-temporal with `stream` [Note: the rows' gradient streamed]). `stored` holds exp(a) and, for
// KL and reverse KL, exp(b), for the JSD d [Note: stored exponentials]; exp(s - m) is formed from
// exp(a) as accumulate forms it.
template <Divergence kDiv, HardTerm kHard, int kPower, class S, class T = compute_t<S>>
void distillation_grad_row(const S* s, const S* t, const S* q, S* grad, int64_t n, T m_s, T m_t,
                           const GradientFactors<T>& f, const T* stored, const DistillationParams<T>& p,
                           bool stream) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V ms = V::broadcast(m_s), mt = V::broadcast(m_t), inv = V::broadcast(p.inverse_temperature);
    const V keep = V::broadcast(T(1) - p.hard.label_smoothing);
    const V spread = V::broadcast(p.hard.label_smoothing / T(p.hard.classes));
    const V hA = V::broadcast(f.hA), hB = V::broadcast(f.hB), kA = V::broadcast(f.kA), kB = V::broadcast(f.kB);
    const V kD = V::broadcast(f.kD);
    const T* w = hard_weights<kHard>(p.hard);
    // f(i) at any i, not only multiples of W: a streamed row starts with a vector boundary of grad.
    store_row(grad, n, stream, [&](int64_t i) __attribute__((always_inline)) {
        const int64_t lanes = n - i < W ? n - i : W;
        const bool full = lanes == W;
        // Padding lanes load -inf, so every exponent is <= 0 (see accumulate); they are not stored.
        const V sv = full ? vload(s + i) : vload_partial(s + i, lanes, -infinity<T>());
        const V ds = sv - ms;
        V coef = V::broadcast(T(1));
        if constexpr (kHard == HardTerm::probabilities) {
            coef = fma(full ? vload(q + i) : vload_partial(q + i, lanes, T(0)), keep, spread);
        }
        if (w) coef = coef * (full ? vload(w + i) : vload_partial(w + i, lanes, T(0)));
        const V ea = vload(stored + i), second = vload(stored + padded_length<T>(n) + i);
        const V e = kPower == 1 ? ea : (kPower == 2 ? ea * ea : vexp_nonpositive(ds));
        V out;
        if constexpr (kDiv == Divergence::kl) {
            const V unused = V::broadcast(T(0));
            out = gradient_vector<kDiv, kHard>(ClassExponentials<V>{ea, second, e}, coef, hA, hB, kA, kB, unused,
                                               unused);
        } else if constexpr (kDiv == Divergence::reverse_kl) {
            const V tv = full ? vload(t + i) : vload_partial(t + i, lanes, -infinity<T>());
            out = gradient_vector<kDiv, kHard>(ClassExponentials<V>{ea, second, e}, coef, hA, hB, kA, kB, kD,
                                               class_exponents<kPower>(sv, tv, ms, mt, inv).reverse_ratio);
        } else {
            const ClassExponentials<V> x{ea, V::broadcast(T(0)), e};
            out = gradient_vector<kDiv, kHard>(x, coef, hA, hB, kA, kB, kD, second);
        }
        if (f.y >= i && f.y < i + W) out = out - one_lane(f.y - i, f.correction);
        return out;
    });
}

// W rows in lanes [Note: few classes]: the row sweeps' arithmetic on one vector per class, each
// sum added in the row sweep's order [Note: rows in lanes, summed in the row sweep's order], so
// every row gets the bits rows_kernel gives it. Each student logit is read before any gradient is
// written, so grad may alias s here too. kGrad stays a template parameter here (unlike the other
// kernels, [Note: kernel instances]): the forward instance drops the kept exponentials and the
// gradient factors, a quarter of a small call's time.
template <Divergence kDiv, HardTerm kHard, int kPower, bool kGrad, class S, class T = compute_t<S>>
void rows_in_lanes(const S* s, int64_t s_row_stride, const S* t, int64_t t_row_stride, const int64_t* target,
                   int64_t target_stride, const S* q, int64_t q_row_stride, const T* scale, int64_t scale_stride, T* ce,
                   T* kl, int64_t out_stride, S* grad, int64_t grad_row_stride, const DistillationParams<T>& p) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const int64_t C = p.hard.classes;
    const V inv = V::broadcast(p.inverse_temperature);
    const V keep = V::broadcast(T(1) - p.hard.label_smoothing);
    const V spread = V::broadcast(p.hard.label_smoothing / T(C));
    const T* w = hard_weights<kHard>(p.hard);
    auto hard_coef = [&](int64_t c) {
        V coef = V::broadcast(T(1));
        if constexpr (kHard == HardTerm::probabilities) coef = fma(vgather(q + c, q_row_stride), keep, spread);
        if (w) coef = coef * V::broadcast(w[c]);
        return coef;
    };
    V sv[2 * W], tv[2 * W];
    const V ms = gather_rows(s, s_row_stride, C, sv);
    const V mt = gather_rows(t, t_row_stride, C, tv);
    DistillationSums<V> terms[2 * W];  // accumulate's terms of each class, each added to +0
    ClassExponentials<V> exps[2 * W];  // kept for the gradient
    for (int64_t c = 0; c < C; ++c) {
        terms[c] = DistillationSums<V>::zero();
        exps[c] = accumulate<kDiv, kHard, kPower>(terms[c], sv[c], tv[c], ms, mt, inv, hard_coef(c));
    }
    T m_s[W], m_t[W], hard[W], student[W], teacher[W], cross[W], linear[W], coef[W];
    T log_hard[W], log_student[W], log_teacher[W];
    store(m_s, ms);
    store(m_t, mt);
    const V hard_sum = sum_in_row_order<V>(C, [&](int64_t c) { return terms[c].hard; });
    const V student_sum = sum_in_row_order<V>(C, [&](int64_t c) { return terms[c].student; });
    const V teacher_sum = sum_in_row_order<V>(C, [&](int64_t c) { return terms[c].teacher; });
    store(hard, hard_sum);
    store(student, student_sum);
    store(teacher, teacher_sum);
    store(log_hard, vlog(hard_sum));
    store(log_student, vlog(student_sum));
    store(log_teacher, vlog(teacher_sum));
    store(cross, sum_in_row_order<V>(C, [&](int64_t c) { return terms[c].cross; }));
    store(linear, sum_in_row_order<V>(C, [&](int64_t c) { return terms[c].linear; }));
    store(coef, sum_in_row_order<V>(C, [&](int64_t c) { return terms[c].coef; }));
    // Reverse KL and JSD: each class's d_c for the gradient; JSD: the mixture sweep's sums, its
    // terms added to +0 and summed in the row sweep's order as above.
    V ratio[2 * W];
    T mixture_student[W], mixture_teacher[W];
    if constexpr (kDiv != Divergence::kl) {
        const MixtureWeights<V> mw = mixture_weights(student_sum, teacher_sum, vlog(student_sum), vlog(teacher_sum),
                                                     V::broadcast(T(1) - p.beta), V::broadcast(p.beta));
        MixtureSums<V> mixture[2 * W];
        for (int64_t c = 0; c < C; ++c) {
            const ClassExponents<V> x = class_exponents<kPower>(sv[c], tv[c], ms, mt, inv);
            ratio[c] = soft_log_ratio<kDiv>(x, exps[c], mw);
            if constexpr (kDiv == Divergence::jsd) {
                mixture[c] = MixtureSums<V>::zero();
                mixture[c].accumulate(exps[c], mixture_log_ratios(exps[c], x.a, x.b, mw));
            }
        }
        if constexpr (kDiv == Divergence::jsd) {
            store(mixture_student, sum_in_row_order<V>(C, [&](int64_t c) { return mixture[c].student; }));
            store(mixture_teacher, sum_in_row_order<V>(C, [&](int64_t c) { return mixture[c].teacher; }));
        }
    }
    GradientFactors<T> f[W];
    for (int64_t k = 0; k < W; ++k) {
        RowSums<T> sums{m_s[k], hard[k], student[k], teacher[k], cross[k], linear[k], coef[k], m_t[k]};
        if constexpr (kDiv == Divergence::jsd) {
            sums.mixture_student = mixture_student[k];
            sums.mixture_teacher = mixture_teacher[k];
        }
        const int64_t y = kHard == HardTerm::probabilities ? -1 : target[k * target_stride];
        const T g = kGrad ? scale[k * scale_stride] : T(0);
        const RowLogs<T> logs{log_hard[k], log_student[k], log_teacher[k]};
        f[k] = finish_position<kDiv, kHard>(sums, logs, s + k * s_row_stride, y, g, kGrad,
                                            ce[k * out_stride], kl[k * out_stride], p);
    }
    if constexpr (kGrad) {
        T hA[W], hB[W], kA[W], kB[W], kD[W];
        for (int64_t k = 0; k < W; ++k) {
            hA[k] = f[k].hA;
            hB[k] = f[k].hB;
            kA[k] = f[k].kA;
            kB[k] = f[k].kB;
            kD[k] = f[k].kD;
        }
        const V vhA = vload(hA), vhB = vload(hB), vkA = vload(kA), vkB = vload(kB), vkD = vload(kD);
        V out[2 * W];
        for (int64_t c = 0; c < C; ++c) {
            V d = vkD;  // unused: KL has no d_c
            if constexpr (kDiv != Divergence::kl) d = ratio[c];
            out[c] = gradient_vector<kDiv, kHard>(exps[c], hard_coef(c), vhA, vhB, vkA, vkB, vkD, d);
        }
        for (int64_t k = 0; k < W; ++k) {
            if (f[k].y >= 0) out[f[k].y] = out[f[k].y] - one_lane(k, f[k].correction);
        }
        for (int64_t c = 0; c < C; ++c) vscatter(grad + c, grad_row_stride, out[c]);
    }
}

// With grad (not null), also the gradient (scale, grad and their strides are unused otherwise).
// `stored`: the scratch row [Note: stored exponentials], with grad and for the JSD (null otherwise).
template <Divergence kDiv, HardTerm kHard, int kPower, class S, class T = compute_t<S>>
void rows_kernel(const S* s, int64_t s_row_stride, const S* t, int64_t t_row_stride, const int64_t* target,
                 int64_t target_stride, const S* q, int64_t q_row_stride, const T* scale, int64_t scale_stride, T* ce,
                 T* kl, int64_t out_stride, S* grad, int64_t grad_row_stride, int64_t rows, T* stored,
                 const DistillationParams<T>& p) {
    const int64_t C = p.hard.classes;
    const bool stream = grad && p.hard.stream_grad;  // [Note: the rows' gradient streamed]
    int64_t r = 0;
    // Rows in lanes for float and double only: half-precision batches of so few classes are rare,
    // and their instances cost compile time [Note: kernel instances]; rows get the same bits alone.
    if constexpr (std::is_same_v<S, T>) {
        constexpr int64_t W = VecOf<S>::width;
        if (rows_fit_lanes<S>(C, s_row_stride) && rows_fit_lanes<S>(C, t_row_stride) &&
            (!q || rows_fit_lanes<S>(C, q_row_stride))) {  // [Note: few classes]
            auto in_lanes = [&](auto with_grad) {
                for (; r + W <= rows; r += W) {
                    rows_in_lanes<kDiv, kHard, kPower, decltype(with_grad)::value>(
                        s + r * s_row_stride, s_row_stride, t + r * t_row_stride, t_row_stride,
                        q ? nullptr : target + r * target_stride, target_stride, q ? q + r * q_row_stride : nullptr,
                        q_row_stride, grad ? scale + r * scale_stride : nullptr, scale_stride, ce + r * out_stride,
                        kl + r * out_stride, out_stride, grad ? grad + r * grad_row_stride : nullptr,
                        grad_row_stride, p);
                }
            };
            if (grad) in_lanes(std::true_type{}); else in_lanes(std::false_type{});
        }
    }
    for (; r < rows; ++r) {
        const S* sr = s + r * s_row_stride;
        const S* tr = t + r * t_row_stride;
        const S* qr = q ? q + r * q_row_stride : nullptr;
        RowSums<T> sums =
            distillation_row_sums<kDiv, kHard, kPower>(sr, tr, qr, C, stored, p, next_row(sr, r, rows, s_row_stride),
                                                       next_row(tr, r, rows, t_row_stride));
        const int64_t y = kHard == HardTerm::probabilities ? -1 : target[r * target_stride];
        const T g = grad ? scale[r * scale_stride] : T(0);
        const RowLogs<T> logs{scalar_log(sums.hard), scalar_log(sums.student), scalar_log(sums.teacher)};
        if constexpr (kDiv == Divergence::jsd) {
            const MixtureWeights<T> weights =
                row_mixture_weights(sums.student, sums.teacher, logs.student, logs.teacher, p.beta);
            const MixtureSums<T> mixture =
                mixture_row_sums<kPower>(sr, tr, C, sums.max, sums.teacher_max, weights, stored, p);
            sums.mixture_student = mixture.student;
            sums.mixture_teacher = mixture.teacher;
        }
        const GradientFactors<T> f =
            finish_position<kDiv, kHard>(sums, logs, sr, y, g, grad != nullptr, ce[r * out_stride], kl[r * out_stride],
                                         p);
        if (grad) {
            distillation_grad_row<kDiv, kHard, kPower>(sr, tr, qr, grad + r * grad_row_stride, C, sums.max,
                                                       sums.teacher_max, f, stored, p, stream);
        }
    }
    if (stream) stream_fence();
}

// One signature for every instance: the forward-only entries pass no scale and no gradient.
#define FASTLOSS_ROWS_ARGS                                                                                      \
    const S *s, int64_t s_row_stride, const S *t, int64_t t_row_stride, const int64_t *target,                  \
        int64_t target_stride, const S *q, int64_t q_row_stride, const T *scale, int64_t scale_stride, T *ce,   \
        T *kl, int64_t out_stride, S *grad, int64_t grad_row_stride, int64_t rows, T *stored,                   \
        const DistillationParams<T> &p
#define FASTLOSS_ROWS_CALL                                                                                      \
    s, s_row_stride, t, t_row_stride, target, target_stride, q, q_row_stride, scale, scale_stride, ce, kl,      \
        out_stride, grad, grad_row_stride, rows, stored, p

template <Divergence kDiv, int kPower, class S, class T = compute_t<S>>
void distillation_rows_with_power(FASTLOSS_ROWS_ARGS) {
    if (q) {
        rows_kernel<kDiv, HardTerm::probabilities, kPower>(FASTLOSS_ROWS_CALL);
    } else if (p.hard.label_smoothing != T(0)) {
        rows_kernel<kDiv, HardTerm::smoothed, kPower>(FASTLOSS_ROWS_CALL);
    } else {
        rows_kernel<kDiv, HardTerm::plain, kPower>(FASTLOSS_ROWS_CALL);
    }
}

// [Note: online distillation columns] The columns layout takes a block of positions (K vectors
// of them, for_each_column_range) down the class axis once for both maxima and every sum, as
// column_online_max_sum does for one operand [Note: online sweep down the columns]: a two-sweep
// block of 32000 classes at a 16 KiB stride fits no cache, and its second sweep read memory again
// (9-17x the roofline, measured). The sums are kept relative to the running shifts sh_s and sh_t
// (online_shift of the maxima). When they grow by delta_s and delta_t, every a_c falls by
// delta_s / T and every b_c by delta_t / T, so with the factors f = exp(-delta_s),
// f_a = exp(-delta_s / T) and f_b = exp(-delta_t / T) (online_rescale's: 0 from a max of -inf):
//   hard' = f hard,   student' = f_a student,   teacher' = f_b teacher,
//   kl:      cross' = f_b (cross + (delta_s - delta_t) / T teacher)     (each b_c - a_c grows so),
//   reverse: cross' = f_a (cross + (delta_t - delta_s) / T student),
//   linear' = linear - delta_s coef,   coef = the sum of the hard coefficients taken so far.
// Where a cross sum's factor underflows to 0, every term taken so far now has a weight of 0,
// which the two-sweep form makes 0 * (lo - a): 0, or NaN where the term was +inf (a -inf logit).
// So the moved sum is cross * 0 there (0 when finite, NaN when +inf or NaN), never 0 times an
// overflowed gap. Lanes where neither max moved keep their bits exactly, so a position's result
// does not depend on the block it is taken in, nor on the thread count.
// A term of +inf (KL: a -inf student logit under a teacher weight exp(b_c) > 0; reverse KL: the
// roles swapped) is NaN in the two-sweep form when that weight underflows to 0 only against the
// final max, which the online sum cannot see once the term is in it. So the sweep also keeps the
// smallest teacher logit at a -inf student logit (reverse KL: the smallest student logit at a -inf
// teacher logit), and the finish makes the sum NaN where that class's weight, formed from the
// final shift as the two-sweep form forms it, is 0. (Logits so far apart that s - max overflows
// to -inf are not tracked so: their terms follow the online sum.)
// The JSD's mixture sweep needs the final S_a and S_b and reads the block a second time; the
// gradient sweep reads it once more, recomputing the exponentials, and streams whole lines.
template <Divergence kDiv, int kPower, class V>
struct MaximaMove {
    V hard, student, teacher;  // the factors f, f_a and f_b
    V cross_gap;               // kl: (delta_s - delta_t) / T; reverse_kl: (delta_t - delta_s) / T
    V delta_s;
    V ms, mt, ms_new, mt_new;

    MaximaMove(V ms_, V mt_, V ms_new_, V mt_new_, V inverse_temperature)
        : ms(ms_), mt(mt_), ms_new(ms_new_), mt_new(mt_new_) {
        const V sh_s = online_shift(ms), sh_s_new = online_shift(ms_new);
        const V sh_t = online_shift(mt), sh_t_new = online_shift(mt_new);
        const V gap_s = ms - sh_s_new, gap_t = mt - sh_t_new;  // <= 0, -inf from a max of -inf
        student = vexp_nonpositive(kPower == 1 ? gap_s : gap_s * inverse_temperature);
        hard = kPower == 1 ? student : (kPower == 2 ? student * student : vexp_nonpositive(gap_s));
        teacher = vexp_nonpositive(kPower == 1 ? gap_t : gap_t * inverse_temperature);
        delta_s = sh_s_new - sh_s;
        const V delta_t = sh_t_new - sh_t;
        cross_gap = (kDiv == Divergence::reverse_kl ? delta_t - delta_s : delta_s - delta_t) * inverse_temperature;
    }

    // A gap times a sum of 0 (a part just folded, or no weight yet) moves nothing, even where the
    // gap overflowed to inf.
    void apply(DistillationSums<V>& x) const {
        const V zero = V::broadcast(typename V::Scalar(0));
        auto moved = [&](V old_value, V new_value) {  // old_value where neither max moved
            return select(equal(ms, ms_new), select(equal(mt, mt_new), old_value, new_value), new_value);
        };
        auto plus_gap = [&](V sum, V gap, V weights) {
            return select(equal(weights, zero), sum, fma(gap, weights, sum));
        };
        V cross = x.cross;
        if constexpr (kDiv == Divergence::kl) {
            cross = select(equal(teacher, zero), x.cross * zero, teacher * plus_gap(x.cross, cross_gap, x.teacher));
        } else if constexpr (kDiv == Divergence::reverse_kl) {
            cross = select(equal(student, zero), x.cross * zero, student * plus_gap(x.cross, cross_gap, x.student));
        }
        x.cross = moved(x.cross, cross);
        x.hard = moved(x.hard, x.hard * hard);
        x.student = moved(x.student, x.student * student);
        x.teacher = moved(x.teacher, x.teacher * teacher);
        // Only the student's max moves the linear sum (an infinite class weight makes 0 * coef NaN).
        x.linear = select(equal(ms, ms_new), x.linear, plus_gap(x.linear, zero - delta_s, x.coef));
    }
};

// A two-level sum of one vector of positions (the fold's part and the total).
template <class T>
struct TwoLevelSum {
    Vec<T> part, total;
};

// The columns kernel's operands: the block's pointers and class strides (positions are
// contiguous in every full operand), and the per-position ones with theirs.
template <class S, class T = compute_t<S>>
struct ColumnOperands {
    const S* s;
    int64_t s_class_stride;
    const S* t;
    int64_t t_class_stride;
    const int64_t* target;
    int64_t target_stride;
    const S* q;
    int64_t q_class_stride;
    const T* scale;
    int64_t scale_stride;
    T* ce;
    T* kl;
    int64_t out_stride;
    S* grad;
    int64_t grad_class_stride;
};

// The running state of one vector of positions in the sums sweep: the maxima, their shifts, and
// the sums of the classes since the last fold (part) and the folded ones (total).
template <class V>
struct ColumnDistillationState {
    V ms, mt, shift_s, shift_t;
    DistillationSums<V> part, total;
    V partner_min;  // see [Note: online distillation columns]: +inf while there is none
    static ColumnDistillationState start() {
        using T = typename V::Scalar;
        const V minus_inf = V::broadcast(-infinity<T>()), zero = V::broadcast(T(0));
        return {minus_inf,
                minus_inf,
                zero,
                zero,
                DistillationSums<V>::zero(),
                DistillationSums<V>::zero(),
                V::broadcast(infinity<T>())};
    }
};

// The finish's check of the +inf cross terms [Note: online distillation columns]: the weight of
// the class with the smallest partner logit, formed as class_exponents and class_exponentials
// form it; where it is 0, the term is 0 * inf = NaN.
template <Divergence kDiv, int kPower, class V>
void vanish_infinite_terms(ColumnDistillationState<V>& st, V inverse_temperature) {
    if constexpr (kDiv == Divergence::kl || kDiv == Divergence::reverse_kl) {
        using T = typename V::Scalar;
        const V zero = V::broadcast(T(0));
        const bool kl = kDiv == Divergence::kl;
        const V gap = st.partner_min - (kl ? st.shift_t : st.shift_s);
        const V exponent = kPower == 1 ? gap : gap * inverse_temperature;
        // max(lo, b) then vexp_clamped for KL, vexp_nonpositive for reverse KL: the same. No
        // partner leaves +inf here, which min(0, .) keeps inside the exp's range.
        const V weight = vexp_nonpositive(min(zero, exponent));
        st.total.cross = select(equal(weight, zero), st.total.cross * zero, st.total.cross);
    }
}

// Everything of one vector of positions after the sums: its state, the JSD's mixture weights and
// sums, and the gradient's factors (see finish_position): hA, hB, kA, kB and kD per lane, and the
// lanes with a target entry in class order (by_target), with their correction.
template <class V>
struct ColumnPositions {
    using T = typename V::Scalar;
    static constexpr int64_t W = V::width;
    ColumnDistillationState<V> state;
    MixtureWeights<V> mixture_weights;
    MixtureSums<V> mixture_part, mixture;
    V hA, hB, kA, kB, kD;
    T correction[W];
    int64_t y[W];
    int64_t by_target[W];
    int64_t targets;
    int64_t next;  // the gradient sweep's place in by_target
};

// Vector k of class c of a full operand at column j (lanes of it when K = 1, the rest loading
// `fill`).
template <int K, class S, class T = compute_t<S>>
inline Vec<T> column_load(const S* base, int64_t stride, int64_t c, int64_t j, int k, int64_t lanes, T fill) {
    const S* ptr = base + c * stride + j + k * Vec<T>::width;
    return K == 1 && lanes < Vec<T>::width ? vload_partial(ptr, lanes, fill) : vload(ptr);
}

// The hard coefficient (hard_weights) of vector k of class c.
template <HardTerm kHard, int K, class S, class T = compute_t<S>>
inline Vec<T> column_hard_coef(const ColumnOperands<S>& o, int64_t c, int64_t j, int k, int64_t lanes,
                               const DistillationParams<T>& p) {
    using V = Vec<T>;
    V coef = V::broadcast(T(1));
    if constexpr (kHard == HardTerm::probabilities) {
        const T eps = p.hard.label_smoothing;
        coef = fma(column_load<K>(o.q, o.q_class_stride, c, j, k, lanes, T(0)), V::broadcast(T(1) - eps),
                   V::broadcast(eps / T(p.hard.classes)));
    }
    const T* w = hard_weights<kHard>(p.hard);
    if (w) coef = coef * V::broadcast(w[c]);
    return coef;
}

// Asks for the lines of class c of the block's full operands [Note: wide column runs].
template <HardTerm kHard, int K, class S>
FASTLOSS_PREFETCH_HELPER void prefetch_column_class(const ColumnOperands<S>& o, int64_t c, int64_t classes, int64_t j) {
    if (c >= classes) return;
    constexpr int64_t n = K * Vec<compute_t<S>>::width;
    prefetch_elements<PrefetchInto::l2>(o.s + c * o.s_class_stride + j, n);
    prefetch_elements<PrefetchInto::l2>(o.t + c * o.t_class_stride + j, n);
    if constexpr (kHard == HardTerm::probabilities) prefetch_elements<PrefetchInto::l2>(o.q + c * o.q_class_stride + j, n);
}

// The classes [c0, c1) of the sums sweep of the K vectors of positions from column j (lanes of
// them). Lanes past `lanes` (K = 1 only) load 0, so that their maxima are 0 and their exponents
// 0: NaN-free and <= 0 as accumulate needs. They are never stored.
template <Divergence kDiv, HardTerm kHard, int kPower, int K, class S, class T = compute_t<S>>
void column_sums_step(const ColumnOperands<S>& o, int64_t j, int64_t lanes, int64_t c0, int64_t c1,
                      ColumnPositions<Vec<T>>* x, const DistillationParams<T>& p) {
    using V = Vec<T>;
    const int64_t C = p.hard.classes;
    const V inv = V::broadcast(p.inverse_temperature);
    ColumnDistillationState<V> st[K];
    for (int k = 0; k < K; ++k) st[k] = x[k].state;
    for (int64_t c = c0; c < c1; ++c) {
        prefetch_column_class<kHard, K>(o, c + kColumnChunkClasses, C, j);
        V sv[K], tv[K], ms_new[K], mt_new[K];
        bool moved = false;
        for (int k = 0; k < K; ++k) {
            sv[k] = column_load<K>(o.s, o.s_class_stride, c, j, k, lanes, T(0));
            tv[k] = column_load<K>(o.t, o.t_class_stride, c, j, k, lanes, T(0));
            ms_new[k] = max(st[k].ms, sv[k]);
            mt_new[k] = max(st[k].mt, tv[k]);
            moved |= !all_lanes(equal(st[k].ms, ms_new[k])) || !all_lanes(equal(st[k].mt, mt_new[k]));
        }
        if (moved) {  // the maxima rarely move once a sweep is under way
            for (int k = 0; k < K; ++k) {
                const MaximaMove<kDiv, kPower, V> move(st[k].ms, st[k].mt, ms_new[k], mt_new[k], inv);
                move.apply(st[k].part);
                move.apply(st[k].total);
                st[k].ms = ms_new[k];
                st[k].mt = mt_new[k];
                st[k].shift_s = online_shift(ms_new[k]);
                st[k].shift_t = online_shift(mt_new[k]);
            }
        }
        for (int k = 0; k < K; ++k) {
            const V coef = column_hard_coef<kHard, K>(o, c, j, k, lanes, p);
            const V minus_inf = V::broadcast(-infinity<T>()), plus_inf = V::broadcast(infinity<T>());
            if constexpr (kDiv == Divergence::kl) {
                st[k].partner_min = min(st[k].partner_min, select(equal(sv[k], minus_inf), tv[k], plus_inf));
            } else if constexpr (kDiv == Divergence::reverse_kl) {
                st[k].partner_min = min(st[k].partner_min, select(equal(tv[k], minus_inf), sv[k], plus_inf));
            }
            accumulate<kDiv, kHard, kPower>(st[k].part, sv[k], tv[k], st[k].shift_s, st[k].shift_t, inv, coef);
            // accumulate sums the coefficients for probability targets only; the move needs them.
            if constexpr (kHard == HardTerm::smoothed) st[k].part.coef = st[k].part.coef + coef;
        }
        if ((c + 1) % kFoldVectors == 0) {
            for (int k = 0; k < K; ++k) {
                st[k].total.add(st[k].part);
                st[k].part = DistillationSums<V>::zero();
            }
        }
    }
    for (int k = 0; k < K; ++k) x[k].state = st[k];
}

// The classes [c0, c1) of the JSD's mixture sweep, in the sums sweep's folds.
template <int kPower, int K, class S, class T = compute_t<S>>
void column_mixture_step(const ColumnOperands<S>& o, int64_t j, int64_t lanes, int64_t c0, int64_t c1,
                         ColumnPositions<Vec<T>>* x, const DistillationParams<T>& p) {
    using V = Vec<T>;
    const V inv = V::broadcast(p.inverse_temperature);
    for (int64_t c = c0; c < c1; ++c) {
        prefetch_column_class<HardTerm::smoothed, K>(o, c + kColumnChunkClasses, p.hard.classes, j);
        for (int k = 0; k < K; ++k) {
            const ClassExponents<V> e = class_exponents<kPower>(
                column_load<K>(o.s, o.s_class_stride, c, j, k, lanes, T(0)),
                column_load<K>(o.t, o.t_class_stride, c, j, k, lanes, T(0)), x[k].state.shift_s, x[k].state.shift_t,
                inv);
            const ClassExponentials<V> ex = class_exponentials<kPower>(e);
            x[k].mixture_part.accumulate(ex, mixture_log_ratios(ex, e.a, e.b, x[k].mixture_weights));
        }
        if ((c + 1) % kFoldVectors == 0) {
            for (int k = 0; k < K; ++k) {
                x[k].mixture.add(x[k].mixture_part);
                x[k].mixture_part = MixtureSums<V>::zero();
            }
        }
    }
}

// The classes [c0, c1) of a sweep that forms the hard term's linear sum again against the final
// shift, as the two-sweep form does, in the sums sweep's folds. Only where a class weight is not
// finite: the online sum takes each class's term against the max so far, and a class that is that
// max adds w (s - max) = inf * 0 = NaN where the final form has w (s - max) = inf * (negative).
template <HardTerm kHard, int K, class S, class T = compute_t<S>>
void column_linear_step(const ColumnOperands<S>& o, int64_t j, int64_t lanes, int64_t c0, int64_t c1,
                        ColumnPositions<Vec<T>>* x, TwoLevelSum<T>* linear, const DistillationParams<T>& p) {
    using V = Vec<T>;
    for (int64_t c = c0; c < c1; ++c) {
        prefetch_column_class<HardTerm::smoothed, K>(o, c + kColumnChunkClasses, p.hard.classes, j);
        for (int k = 0; k < K; ++k) {
            const V ds = column_load<K>(o.s, o.s_class_stride, c, j, k, lanes, T(0)) - x[k].state.shift_s;
            linear[k].part = fma(column_hard_coef<kHard, K>(o, c, j, k, lanes, p), ds, linear[k].part);
        }
        if ((c + 1) % kFoldVectors == 0) {
            for (int k = 0; k < K; ++k) {
                linear[k].total = linear[k].total + linear[k].part;
                linear[k].part = V::broadcast(T(0));
            }
        }
    }
}

// The loss terms of the `live` positions of one vector from column j0 and, with a gradient, their
// factors (zero in dead lanes).
template <Divergence kDiv, HardTerm kHard, class S, class T = compute_t<S>>
void finish_column_positions(const ColumnOperands<S>& o, int64_t j0, int64_t live, ColumnPositions<Vec<T>>& x,
                             const DistillationParams<T>& p) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const DistillationSums<V>& sums = x.state.total;
    T m_lane[W], hard_lane[W], log_hard[W], kl_lane[W], linear[W], coef[W];
    store(m_lane, x.state.shift_s);
    store(hard_lane, sums.hard);
    store(log_hard, vlog(sums.hard));
    if constexpr (kDiv == Divergence::kl) {
        store(kl_lane, sums.cross / sums.teacher - vlog(sums.teacher) + vlog(sums.student));
    } else if constexpr (kDiv == Divergence::reverse_kl) {
        store(kl_lane, sums.cross / sums.student - vlog(sums.student) + vlog(sums.teacher));
    } else {
        store(kl_lane, fma(x.mixture_weights.teacher, x.mixture.teacher, x.mixture_weights.student * x.mixture.student));
    }
    store(linear, sums.linear);
    store(coef, sums.coef);
    T hA_l[W], hB_l[W], k_l[W];
    for (int64_t l = 0; l < W; ++l) {
        hA_l[l] = hB_l[l] = x.correction[l] = k_l[l] = T(0);
        x.y[l] = -1;
    }
    for (int64_t l = 0; l < live; ++l) {
        const int64_t at = (j0 + l) * o.out_stride;
        o.kl[at] = kl_lane[l];
        T& hard = o.ce[at];
        const T g = o.grad ? o.scale[(j0 + l) * o.scale_stride] : T(0);
        const T h = g * p.hard_grad;
        k_l[l] = g * p.soft_grad;
        if constexpr (kHard == HardTerm::probabilities) {
            const T lse = m_lane[l] + log_hard[l];
            hard = with_z_loss_share(coef[l] * log_hard[l] - linear[l], lse, p);
            hA_l[l] = with_z_loss(h * coef[l] / hard_lane[l], h, hard_lane[l], lse, p.hard);
            hB_l[l] = h;
        } else {
            const int64_t y = o.target[(j0 + l) * o.target_stride];
            if (y == p.hard.ignore_index) {
                hard = T(0);
            } else {
                const T w_y = p.hard.weight ? p.hard.weight[y] : T(1);
                const T lse = m_lane[l] + log_hard[l];
                const T s_y = o.s[y * o.s_class_stride + j0 + l];  // before the gradient (maybe s) is written
                hard = with_z_loss_share(index_loss(log_hard[l], s_y - m_lane[l], w_y, linear[l], p.hard), lse, p);
                const IndexGradient<T> d = index_gradient(h, hard_lane[l], lse, w_y, p.hard);
                hA_l[l] = d.a;
                hB_l[l] = d.b;
                x.correction[l] = d.correction;
                x.y[l] = y;
            }
        }
    }
    // The lanes with a target entry, in class order: their correction joins the vector of that
    // class before the single store (insertion sort of at most W lanes).
    int64_t order[W], targets = 0;
    for (int64_t l = 0; l < W; ++l) {
        if (x.y[l] < 0) continue;
        int64_t at = targets++;
        for (; at > 0 && x.y[order[at - 1]] > x.y[l]; --at) order[at] = order[at - 1];
        order[at] = l;
    }
    for (int64_t l = 0; l < targets; ++l) x.by_target[l] = order[l];
    x.targets = targets;
    x.next = 0;
    x.hA = vload(hA_l);
    x.hB = vload(hB_l);
    x.kA = vload(k_l) / sums.student;
    x.kB = vload(k_l) / sums.teacher;
    x.kD = V::broadcast(T(0));
    if constexpr (kDiv == Divergence::reverse_kl) {  // as finish_position's
        x.kD = x.kA;
        x.kA = V::broadcast(T(0)) - x.kD * (sums.cross / sums.student);
    } else if constexpr (kDiv == Divergence::jsd) {
        x.kD = vload(k_l) * x.mixture_weights.student;
        x.kA = V::broadcast(T(0)) - x.kD * (x.mixture.student / sums.student);
    }
}

// The classes [c0, c1) of the gradient sweep: each class's vectors formed from the exponentials
// again, as the sums sweep formed them, and stored once (streamed: see write_column_run). Each s
// is read before the gradient over it is written, so grad may be s.
template <Divergence kDiv, HardTerm kHard, int kPower, int K, class S, class T = compute_t<S>>
void column_grad_step(const ColumnOperands<S>& o, int64_t j, int64_t lanes, int64_t c0, int64_t c1, bool streamed,
                      ColumnPositions<Vec<T>>* x, const DistillationParams<T>& p) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V inv = V::broadcast(p.inverse_temperature);
    for (int64_t c = c0; c < c1; ++c) {
        prefetch_column_class<kHard, K>(o, c + kColumnChunkClasses, p.hard.classes, j);
        for (int k = 0; k < K; ++k) {
            ColumnPositions<V>& f = x[k];
            const ClassExponents<V> e = class_exponents<kPower>(
                column_load<K>(o.s, o.s_class_stride, c, j, k, lanes, T(0)),
                column_load<K>(o.t, o.t_class_stride, c, j, k, lanes, T(0)), f.state.shift_s, f.state.shift_t, inv);
            const ClassExponentials<V> ex = class_exponentials<kPower>(e);
            const V coef = column_hard_coef<kHard, K>(o, c, j, k, lanes, p);
            V out;
            if constexpr (kDiv == Divergence::kl) {
                out = fma(f.hA, ex.hard, fma(f.kA, ex.student, V::broadcast(T(0)) - f.kB * ex.teacher));
                if constexpr (kHard != HardTerm::plain) out = out - f.hB * coef;
            } else {
                const V d = soft_log_ratio<kDiv>(e, ex, f.mixture_weights);
                out = gradient_vector<kDiv, kHard>(ex, coef, f.hA, f.hB, f.kA, f.kB, f.kD, d);
            }
            for (; f.next < f.targets && f.y[f.by_target[f.next]] == c; ++f.next) {
                out = out - one_lane(f.by_target[f.next], f.correction[f.by_target[f.next]]);
            }
            S* ptr = o.grad + c * o.grad_class_stride + j + k * W;
            if (K == 1 && lanes < W) {
                store_partial(ptr, lanes, out);
            } else if (streamed) {
                store_stream(ptr, out);
            } else {
                store(ptr, out);
            }
        }
    }
}

// A column run's blocks each keep about 2 KiB of state here (ColumnPositions), on the stack, so the
// runs stay 4 KiB wide (16 blocks of float32), not kColumnRunBytes.
constexpr int64_t kDistillationRunBytes = 4096;

// Columns layout: lanes are consecutive positions, taken in runs of blocks of kColumnVectors
// vectors [Note: wide column runs], each run swept once for the sums [Note: online distillation
// columns], once more for the JSD's mixture, and once more to write the gradient. A streamed
// gradient first peels the positions before its first cache line (for_each_column_range).
template <Divergence kDiv, HardTerm kHard, int kPower, class S, class T = compute_t<S>>
void columns_kernel(const S* s, int64_t s_class_stride, const S* t, int64_t t_class_stride, const int64_t* target,
                    int64_t target_stride, const S* q, int64_t q_class_stride, const T* scale, int64_t scale_stride,
                    T* ce, T* kl, int64_t out_stride, S* grad, int64_t grad_class_stride, int64_t columns,
                    const DistillationParams<T>& p) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    constexpr int K = kColumnVectors;
    constexpr int64_t kMaxBlocks = column_run_blocks<S, kDistillationRunBytes>();
    const int64_t C = p.hard.classes;
    const ColumnOperands<S> o{s,     s_class_stride, t,     t_class_stride, target, target_stride, q,   q_class_stride,
                              scale, scale_stride,   ce,    kl,             out_stride, grad,      grad_class_stride};
    const bool stream = grad && p.hard.stream_grad;
    const T* w = hard_weights<kHard>(p.hard);
    bool has_nonfinite_weight = false;
    for (int64_t c = 0; w && c < C; ++c) has_nonfinite_weight |= !std::isfinite(w[c]);
    for_each_column_run<kDistillationRunBytes>(stream ? grad : s, columns, stream, false,
                                               [&](const ColumnBlock* blocks, int64_t n) {
        ColumnPositions<V> x[kMaxBlocks][K];
        for (int64_t b = 0; b < n; ++b) {
            for (int k = 0; k < K; ++k) x[b][k].state = ColumnDistillationState<V>::start();
        }
        sweep_column_run(n, C, [&](int64_t b, int64_t c0, int64_t c1) {
            const ColumnBlock& block = blocks[b];
            if (block.count == K) {
                column_sums_step<kDiv, kHard, kPower, K>(o, block.j, block.lanes, c0, c1, x[b], p);
            } else {
                column_sums_step<kDiv, kHard, kPower, 1>(o, block.j, block.lanes, c0, c1, x[b], p);
            }
        });
        for (int64_t b = 0; b < n; ++b) {
            for (int k = 0; k < blocks[b].count; ++k) {
                ColumnDistillationState<V>& st = x[b][k].state;
                st.total.add(st.part);
                vanish_infinite_terms<kDiv, kPower>(st, V::broadcast(p.inverse_temperature));
                const DistillationSums<V>& sums = st.total;
                x[b][k].mixture_weights =
                    mixture_weights(sums.student, sums.teacher, vlog(sums.student), vlog(sums.teacher),
                                    V::broadcast(T(1) - p.beta), V::broadcast(p.beta));
                x[b][k].mixture_part = x[b][k].mixture = MixtureSums<V>::zero();
            }
        }
        if (kHard != HardTerm::plain && has_nonfinite_weight) {  // see column_linear_step
            TwoLevelSum<T> linear[kMaxBlocks][K];
            for (int64_t b = 0; b < n; ++b) {
                for (int k = 0; k < K; ++k) linear[b][k].part = linear[b][k].total = V::broadcast(T(0));
            }
            sweep_column_run(n, C, [&](int64_t b, int64_t c0, int64_t c1) {
                const ColumnBlock& block = blocks[b];
                if (block.count == K) {
                    column_linear_step<kHard, K>(o, block.j, block.lanes, c0, c1, x[b], linear[b], p);
                } else {
                    column_linear_step<kHard, 1>(o, block.j, block.lanes, c0, c1, x[b], linear[b], p);
                }
            });
            for (int64_t b = 0; b < n; ++b) {
                for (int k = 0; k < blocks[b].count; ++k) {
                    x[b][k].state.total.linear = linear[b][k].total + linear[b][k].part;
                }
            }
        }
        if constexpr (kDiv == Divergence::jsd) {
            sweep_column_run(n, C, [&](int64_t b, int64_t c0, int64_t c1) {
                const ColumnBlock& block = blocks[b];
                if (block.count == K) {
                    column_mixture_step<kPower, K>(o, block.j, block.lanes, c0, c1, x[b], p);
                } else {
                    column_mixture_step<kPower, 1>(o, block.j, block.lanes, c0, c1, x[b], p);
                }
            });
            for (int64_t b = 0; b < n; ++b) {
                for (int k = 0; k < blocks[b].count; ++k) x[b][k].mixture.add(x[b][k].mixture_part);
            }
        }
        for (int64_t b = 0; b < n; ++b) {
            const ColumnBlock& block = blocks[b];
            for (int k = 0; k < block.count; ++k) {
                finish_column_positions<kDiv, kHard>(o, block.j + k * W, block.count == 1 ? block.lanes : W, x[b][k],
                                                     p);
            }
        }
        if (!grad) return;
        bool streamed[kMaxBlocks];
        const bool any_streamed = streamed_column_blocks(grad, grad_class_stride, blocks, n, stream, streamed);
        sweep_column_run(n, C, [&](int64_t b, int64_t c0, int64_t c1) {
            const ColumnBlock& block = blocks[b];
            if (block.count == K) {
                column_grad_step<kDiv, kHard, kPower, K>(o, block.j, block.lanes, c0, c1, streamed[b], x[b], p);
            } else {
                column_grad_step<kDiv, kHard, kPower, 1>(o, block.j, block.lanes, c0, c1, streamed[b], x[b], p);
            }
        });
        if (any_streamed) stream_fence();
    });
}

#define FASTLOSS_COLUMNS_ARGS                                                                                   \
    const S *s, int64_t s_class_stride, const S *t, int64_t t_class_stride, const int64_t *target,              \
        int64_t target_stride, const S *q, int64_t q_class_stride, const T *scale, int64_t scale_stride, T *ce, \
        T *kl, int64_t out_stride, S *grad, int64_t grad_class_stride, int64_t columns,                          \
        const DistillationParams<T> &p
#define FASTLOSS_COLUMNS_CALL                                                                                   \
    s, s_class_stride, t, t_class_stride, target, target_stride, q, q_class_stride, scale, scale_stride, ce, kl, \
        out_stride, grad, grad_class_stride, columns, p

template <Divergence kDiv, int kPower, class S, class T = compute_t<S>>
void distillation_columns_with_power(FASTLOSS_COLUMNS_ARGS) {
    if (q) {
        columns_kernel<kDiv, HardTerm::probabilities, kPower>(FASTLOSS_COLUMNS_CALL);
    } else {  // with or without smoothing [Note: kernel instances]
        columns_kernel<kDiv, HardTerm::smoothed, kPower>(FASTLOSS_COLUMNS_CALL);
    }
}

// Picks the kernel instance for the temperature [Note: integer temperature].
template <Divergence kDiv, class S, class T = compute_t<S>>
void distillation_rows_for(FASTLOSS_ROWS_ARGS) {
    auto* kernel = p.inverse_temperature == T(1)     ? &distillation_rows_with_power<kDiv, 1, S>
                   : p.inverse_temperature == T(0.5) ? &distillation_rows_with_power<kDiv, 2, S>
                                                     : &distillation_rows_with_power<kDiv, 0, S>;
    kernel(FASTLOSS_ROWS_CALL);
}

template <Divergence kDiv, class S, class T = compute_t<S>>
void distillation_columns_for(FASTLOSS_COLUMNS_ARGS) {
    auto* kernel = p.inverse_temperature == T(1)     ? &distillation_columns_with_power<kDiv, 1, S>
                   : p.inverse_temperature == T(0.5) ? &distillation_columns_with_power<kDiv, 2, S>
                                                     : &distillation_columns_with_power<kDiv, 0, S>;
    kernel(FASTLOSS_COLUMNS_CALL);
}

// ... and for the divergence.
template <class S, class T = compute_t<S>>
void distillation_rows_any(FASTLOSS_ROWS_ARGS) {
    switch (p.divergence) {
        case Divergence::reverse_kl: return distillation_rows_for<Divergence::reverse_kl, S>(FASTLOSS_ROWS_CALL);
        case Divergence::jsd: return distillation_rows_for<Divergence::jsd, S>(FASTLOSS_ROWS_CALL);
        default: return distillation_rows_for<Divergence::kl, S>(FASTLOSS_ROWS_CALL);
    }
}

template <class S, class T = compute_t<S>>
void distillation_columns_any(FASTLOSS_COLUMNS_ARGS) {
    switch (p.divergence) {
        case Divergence::reverse_kl:
            return distillation_columns_for<Divergence::reverse_kl, S>(FASTLOSS_COLUMNS_CALL);
        case Divergence::jsd: return distillation_columns_for<Divergence::jsd, S>(FASTLOSS_COLUMNS_CALL);
        default: return distillation_columns_for<Divergence::kl, S>(FASTLOSS_COLUMNS_CALL);
    }
}

#undef FASTLOSS_ROWS_ARGS
#undef FASTLOSS_ROWS_CALL
#undef FASTLOSS_COLUMNS_ARGS
#undef FASTLOSS_COLUMNS_CALL

// The table's entry points pass the block's operands on one by one, as the kernels above take
// them, the forward entries passing the gradient's as nullptr and 0 to the same kernel instances
// [Note: kernel instances]. The kernels keep
// their argument lists on purpose: GCC fuses multiplies into adds where it sees fit
// (-ffp-contract=fast, its default), so how it inlines and propagates constants in this file
// decides the last bit of a loss, and taking the block all the way down moves some float32 losses
// by an ulp on AVX2 and AVX-512.
template <bool kGrad, class S, class T = compute_t<S>>
void rows_entry(const DistillationBlock<S>& b, const DistillationParams<T>& p) {
    const CrossEntropyBlock<S>& h = b.hard;
    distillation_rows_any<S, T>(h.input, h.input_stride, b.teacher, b.teacher_stride, h.target, h.target_stride,
                                h.probabilities, h.probability_stride, kGrad ? h.scale : nullptr,
                                kGrad ? h.scale_stride : 0, h.loss, b.kl, h.loss_stride, kGrad ? h.grad : nullptr,
                                kGrad ? h.grad_stride : 0, h.count, b.stored, p);
}

template <bool kGrad, class S, class T = compute_t<S>>
void columns_entry(const DistillationBlock<S>& b, const DistillationParams<T>& p) {
    const CrossEntropyBlock<S>& h = b.hard;
    distillation_columns_any<S, T>(h.input, h.input_stride, b.teacher, b.teacher_stride, h.target, h.target_stride,
                                   h.probabilities, h.probability_stride, kGrad ? h.scale : nullptr,
                                   kGrad ? h.scale_stride : 0, h.loss, b.kl, h.loss_stride, kGrad ? h.grad : nullptr,
                                   kGrad ? h.grad_stride : 0, h.count, p);
}

template <class S>
DistillationKernels<S> make_distillation_kernels() {
    DistillationKernels<S> k;
    k.rows = &rows_entry<false, S>;
    k.columns = &columns_entry<false, S>;
    k.rows_grad = &rows_entry<true, S>;
    k.columns_grad = &columns_entry<true, S>;
    return k;
}

}  // namespace

void register_distillation_kernels(KernelTable& table) {
    for_each_kernel_set(table, [](auto& set) {
        set.distillation = make_distillation_kernels<typename std::decay_t<decltype(set)>::Storage>();
    });
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
