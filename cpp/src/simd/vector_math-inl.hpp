// Vectorised exp and log, written once over the vector layer and compiled per ISA.
//
// Both use only add, multiply, FMA, compare/select, exponent manipulation and (float exp on
// AVX-512) a 16-entry constant table, so they are exact functions of their input on a given ISA
// (no library calls, no -ffast-math) and their NaN/inf behaviour is spelled out below.
// tests/test_vector_math.py checks every claim here against float64 / long double references,
// for every compiled ISA.
#pragma once

#include "simd/vec-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

template <class T> struct ExpConstants;
template <> struct ExpConstants<float> {
    static constexpr float log2e = 1.44269504088896341f;
    // ln 2 split so that n * ln2_hi is exact for |n| < 2^9 even without FMA (Cody and Waite).
    static constexpr float ln2_hi = 0.693145751953125f;
    static constexpr float ln2_lo = 1.428606765330187045e-06f;
    // Clamp: exp(-104) < 2^-150 rounds to 0, exp(89) > FLT_MAX overflows to inf.
    static constexpr float lo = -104.0f;
    static constexpr float hi = 89.0f;
};
template <> struct ExpConstants<double> {
    static constexpr double log2e = 1.44269504088896338700;
    static constexpr double ln2_hi = 6.93147180369123816490e-01;  // 32 significant bits
    static constexpr double ln2_lo = 1.90821492927058770002e-10;
    // Clamp: exp(-746) < 2^-1075 rounds to 0, exp(710) > DBL_MAX overflows to inf.
    static constexpr double lo = -746.0;
    static constexpr double hi = 710.0;
};

// exp(x), elementwise.
//
// Method: n = round(x / ln2), r = x - n ln2 (two-constant Cody-Waite reduction, |r| <= ln2/2),
// exp(r) by a polynomial (float: degree 6, fitted; double: degree 13 Taylor, truncation
// r^14/14! = 4e-18), result = exp(r) * 2^n. The polynomial errors are far below half an ULP; the
// error is the rounding of the last operations. On AVX-512, float reduces by ln2/16 and double by
// ln2/8 instead, and takes 2^(j/16) or 2^(j/8) from a table (vexp_table): a polynomial of degree
// 3 (float) or 8 (double) then suffices, which speeds up the loop bodies that are bound by exp.
//
//  Valid lane types: float32, float64.
//  Max error:   1.5 ULP for results in the normal range, float32 and float64, every ISA
//               (measured over millions of inputs: 1.06 ULP float32, with or without the
//               table; 0.99 ULP float64 by the polynomial, 1.01 by the table).
//               Subnormal results: within one subnormal spacing for the polynomials, which
//               round once into the subnormals; within 1.1 for the table path, whose result is
//               rounded to T before vscalef rounds it again (measured 1.01).
//  Valid range: all inputs.
//  Overflow:    x > 88.7228 (float) / 709.7827 (double) gives +inf; +inf gives +inf.
//  Underflow:   x < -103.97 (float) / -745.13 (double) gives +0; -inf gives +0.
//  NaN:         NaN in, NaN out.
template <class V>
inline V vexp_clamped(V x);

template <class V>
inline V vexp(V x) {
    using T = typename V::Scalar;
    using C = ExpConstants<T>;
    // The clamp keeps n in range for ldexp_integral. Operand order matters: max/min return their
    // second operand when either is NaN, so a NaN x passes through both.
    return vexp_clamped(min(V::broadcast(C::hi), max(V::broadcast(C::lo), x)));
}

// exp(x) for x <= 0 (or -inf, or NaN), as in exp(x - max) of a softmax: the same result as
// vexp() with one operation fewer (no upper clamp). Undefined for x > 0.
template <class V>
inline V vexp_nonpositive(V x) {
    using C = ExpConstants<typename V::Scalar>;
    return vexp_clamped(max(V::broadcast(C::lo), x));
}

// The table path of exp on ISAs with a one-instruction lookup of a one-register table
// (register_table_lookup): K = 16 entries of float, K = 8 of double, each 2^(j/K) correctly
// rounded, and the polynomial p with e^r = 1 + r p(r) to the degree that |r| <= ln2/(2K) needs.
template <class T> struct ExpTable;
template <> struct ExpTable<float> {
    static constexpr int entries = 16;
    static constexpr float values[entries] = {
        0x1.000000p+0f, 0x1.0b5586p+0f, 0x1.172b84p+0f, 0x1.2387a6p+0f,
        0x1.306fe0p+0f, 0x1.3dea64p+0f, 0x1.4bfdaep+0f, 0x1.5ab07ep+0f,
        0x1.6a09e6p+0f, 0x1.7a1148p+0f, 0x1.8ace54p+0f, 0x1.9c4918p+0f,
        0x1.ae89fap+0f, 0x1.c199bep+0f, 0x1.d5818ep+0f, 0x1.ea4afap+0f};
    // 1.5 * 2^23 / 16 = 1.5 * 2^19: its ulp is 1/16.
    static constexpr float rounding_bias = 1.5f * float(1 << 23) / entries;
    // p(r) = 1 + r/2 + r^2/6 (Taylor); the omitted r^4/24 is below 9.2e-9 relative, 0.15 ULP.
    template <class V> static V p(V r) {
        return fma(fma(V::broadcast(1.0f / 6), r, V::broadcast(0.5f)), r, V::broadcast(1.0f));
    }
};
template <> struct ExpTable<double> {
    static constexpr int entries = 8;
    static constexpr double values[entries] = {
        0x1.0000000000000p+0, 0x1.172b83c7d517bp+0, 0x1.306fe0a31b715p+0, 0x1.4bfdad5362a27p+0,
        0x1.6a09e667f3bcdp+0, 0x1.8ace5422aa0dbp+0, 0x1.ae89f995ad3adp+0, 0x1.d5818dcfba487p+0};
    // 1.5 * 2^52 / 8 = 1.5 * 2^49: its ulp is 1/8.
    static constexpr double rounding_bias = 1.5 * double(int64_t(1) << 52) / entries;
    // p(r) = sum_{k=0}^{7} r^k / (k+1)! (Taylor); the omitted r^9/9! is below 1.5e-18 relative,
    // 0.014 ULP.
    template <class V> static V p(V r) {
        V q = V::broadcast(1.0 / 40320);
        q = fma(q, r, V::broadcast(1.0 / 5040));
        q = fma(q, r, V::broadcast(1.0 / 720));
        q = fma(q, r, V::broadcast(1.0 / 120));
        q = fma(q, r, V::broadcast(1.0 / 24));
        q = fma(q, r, V::broadcast(1.0 / 6));
        q = fma(q, r, V::broadcast(0.5));
        return fma(q, r, V::broadcast(1.0));
    }
};

// exp(x) for x clamped to [lo, hi] (or NaN), on ISAs with register_table_lookup. With
// n = round(K x / ln2) and r = x - n ln2/K (|r| <= ln2/(2K)):
//   exp(x) = 2^floor(n/K) * 2^((n mod K)/K) * e^r,
// the middle factor from ExpTable and e^r = 1 + r p(r). Errors: the table entry's rounding (0.45
// ULP at most for float, 0.5 for double), the final rounding (0.5), the truncation of p (ExpTable)
// and far smaller terms: about 1.13 ULP for float and 1.02 for double in all (measured: see vexp).
template <class V>
inline V vexp_table(V x) {
    using T = typename V::Scalar;
    using C = ExpConstants<T>;
    using Table = ExpTable<T>;
    // Adding the bias, whose ulp is 1/K, rounds x/ln2 to n/K (|n| < 2^14 here) and leaves n in
    // the low bits of the sum's bit pattern, two's complement: their value mod K indexes the
    // table. Subtracting the bias again is exact and runs beside the FMAs (an FMA taking n/K
    // instead measured 6% slower on Zen 4, whose FMA pipes bound these loops).
    const V biased = fma(x, V::broadcast(C::log2e), V::broadcast(Table::rounding_bias));
    const V b = biased - V::broadcast(Table::rounding_bias);  // n/K, exact
    V r = fma(b, V::broadcast(-C::ln2_hi), x);  // b ln2 = n ln2/K
    r = fma(b, V::broadcast(-C::ln2_lo), r);
    const V t = register_table_lookup(Table::values, biased);
    return ldexp_floor(fma(t * r, Table::p(r), t), b);
}

// vexp_clamped by a polynomial alone, for every ISA and type.
template <class V>
inline V vexp_polynomial(V x) {
    using T = typename V::Scalar;
    using C = ExpConstants<T>;
    const V n = round_nearest(x * V::broadcast(C::log2e));
    V r = fma(n, V::broadcast(-C::ln2_hi), x);
    r = fma(n, V::broadcast(-C::ln2_lo), r);

    if constexpr (sizeof(T) == 4) {
        // exp(r) = 1 + r q(r), q of degree 5 fitted for minimal relative error on |r| <= ln2/2
        // (iteratively reweighted least squares on Chebyshev nodes; max error 2e-9, 0.03 ULP).
        V q = V::broadcast(1.3843653723597527e-03f);
        q = fma(q, r, V::broadcast(8.37415549904108e-03f));
        q = fma(q, r, V::broadcast(4.166800156235695e-02f));
        q = fma(q, r, V::broadcast(1.6666431725025177e-01f));
        q = fma(q, r, V::broadcast(4.999999403953552e-01f));
        q = fma(q, r, V::broadcast(1.0f));
        return ldexp_integral(fma(q, r, V::broadcast(1.0f)), n);
    } else {
        // exp(r) = 1 + r + r^2 g(r), g the Taylor series of (e^r - 1 - r)/r^2 up to r^11.
        V g = V::broadcast(T(1.0 / 6227020800.0));  // 1/13!
        g = fma(g, r, V::broadcast(T(1.0 / 479001600.0)));
        g = fma(g, r, V::broadcast(T(1.0 / 39916800.0)));
        g = fma(g, r, V::broadcast(T(1.0 / 3628800.0)));
        g = fma(g, r, V::broadcast(T(1.0 / 362880.0)));
        g = fma(g, r, V::broadcast(T(1.0 / 40320.0)));
        g = fma(g, r, V::broadcast(T(1.0 / 5040.0)));
        g = fma(g, r, V::broadcast(T(1.0 / 720.0)));
        g = fma(g, r, V::broadcast(T(1.0 / 120.0)));
        g = fma(g, r, V::broadcast(T(1.0 / 24.0)));
        g = fma(g, r, V::broadcast(T(1.0 / 6.0)));
        g = fma(g, r, V::broadcast(T(0.5)));
        return ldexp_integral(fma(r * r, g, r) + V::broadcast(T(1)), n);
    }
}

// The body of exp() for x already clamped to [lo, hi] (or NaN).
template <class V>
inline V vexp_clamped(V x) {
    if constexpr (kHasRegisterTableLookup) {
        return vexp_table(x);
    } else {
        return vexp_polynomial(x);
    }
}

// The answers fixup_specials (AVX-512's vfixupimm) gives a lane, by the class of its input: the
// result as computed, or a special value. A FixupTable lists one per class, in the instruction's
// order of classes.
enum class Fixup : int32_t { keep = 0, nan = 3, minus_infinity = 4, plus_infinity = 5 };
struct FixupTable {
    Fixup quiet_nan, signaling_nan, zero, one, minus_infinity, plus_infinity, negative, positive;
    constexpr int32_t bits() const {
        const Fixup codes[8] = {quiet_nan, signaling_nan, zero, one, minus_infinity, plus_infinity, negative, positive};
        int32_t table = 0;
        for (int k = 0; k < 8; ++k) table |= int32_t(codes[k]) << (4 * k);
        return table;
    }
};

// log(x), elementwise.
//
// Method: x = m 2^e with m in [sqrt(1/2), sqrt(2)), f = m - 1, s = f / (2 + f), z = s^2, and
// log(1 + f) = 2 atanh(s) = f - (f^2/2 - s (f^2/2 + R(z))) with R(z) = sum_k 2 z^k / (2k + 1) (the
// Taylor series of 2 atanh(s)/s - 2, truncated at z^4 for float and z^10 for double; |s| <= 0.1716
// so the first omitted term is below 2e-9 / 1e-18 relative). log x = e ln2_hi + (log(1+f) + e ln2_lo).
//
//  Valid lane types: float32, float64.
//  Max error:   1 ULP, float32 and float64, every ISA, subnormal inputs included
//               (measured: 0.82 ULP float32, 0.84 ULP float64).
//  Valid range: all inputs.
//  Specials:    log(+0) = log(-0) = -inf, log(+inf) = +inf, x < 0 gives NaN, NaN gives NaN.
template <class V>
inline V vlog(V x) {
    using T = typename V::Scalar;
    using C = ExpConstants<T>;
    V e;
    const V m = split_exponent(x, e);
    const V f = m - V::broadcast(T(1));
    const V s = f / (f + V::broadcast(T(2)));
    const V z = s * s;
    V R;
    if constexpr (sizeof(T) == 4) {
        R = V::broadcast(T(2.0 / 9));
        R = fma(R, z, V::broadcast(T(2.0 / 7)));
        R = fma(R, z, V::broadcast(T(2.0 / 5)));
        R = fma(R, z, V::broadcast(T(2.0 / 3)));
    } else {
        R = V::broadcast(T(2.0 / 21));
        R = fma(R, z, V::broadcast(T(2.0 / 19)));
        R = fma(R, z, V::broadcast(T(2.0 / 17)));
        R = fma(R, z, V::broadcast(T(2.0 / 15)));
        R = fma(R, z, V::broadcast(T(2.0 / 13)));
        R = fma(R, z, V::broadcast(T(2.0 / 11)));
        R = fma(R, z, V::broadcast(T(2.0 / 9)));
        R = fma(R, z, V::broadcast(T(2.0 / 7)));
        R = fma(R, z, V::broadcast(T(2.0 / 5)));
        R = fma(R, z, V::broadcast(T(2.0 / 3)));
    }
    R = R * z;
    const V half_f2 = V::broadcast(T(0.5)) * f * f;
    const V log1pf_minus_f = fma(s, half_f2 + R, e * V::broadcast(C::ln2_lo)) - half_f2;
    V result = fma(e, V::broadcast(C::ln2_hi), log1pf_minus_f + f);

    if constexpr (kHasFixupSpecials) {
        constexpr FixupTable kLogSpecials = {Fixup::nan, Fixup::nan, Fixup::minus_infinity, Fixup::keep,
                                             Fixup::nan, Fixup::plus_infinity, Fixup::nan, Fixup::keep};
        return fixup_specials(result, x, kLogSpecials.bits());
    } else {
        const V zero = V::broadcast(T(0));
        const V inf = V::broadcast(infinity<T>());
        result = select(equal(x, inf), inf, result);
        result = select(equal(x, zero), V::broadcast(-infinity<T>()), result);
        return select(mask_or(less(x, zero), is_nan(x)), V::broadcast(std::numeric_limits<T>::quiet_NaN()), result);
    }
}

// log(1 + a), elementwise, accurate where 1 + a rounds (the softplus of BCE with logits needs
// log(1 + e) for e = exp(-|x|) down to 1e-38, where log(1 + e) would give 0 instead of e).
//
// Method: u = 1 + a (rounded), log1p(a) = log(u) + (a - (u - 1)) / u. For u in [1/2, 2] the
// subtraction u - 1 is exact, so a - (u - 1) is exactly the rounding error of 1 + a, and the
// quotient corrects log(u) to first order (log(u + d) = log u + d/u + O(d^2), |d| <= ulp(1)/2).
// When 1 + a rounds to 1 the result is exactly a. (Goldberg, "What every computer scientist
// should know about floating-point arithmetic", theorem 4.)
//
//  Valid lane types: float32, float64.
//  Max error:   2 ULP, float32 and float64, every ISA (measured over millions of a in [-1, 1],
//               tiny a of both signs included: 1.44 ULP float32 and float64).
//  Valid range: a >= -1.
//  Specials:    log1p(-1) = -inf, log1p(+inf) = +inf, a < -1 gives NaN, NaN gives NaN.
template <class V>
inline V vlog1p(V a) {
    using T = typename V::Scalar;
    const V one = V::broadcast(T(1));
    const V u = a + one;
    const V result = vlog(u) + (a - (u - one)) / u;
    // u = 0 and u = inf make the correction 0/0 or inf/inf; the log alone is right there.
    if constexpr (kHasFixupSpecials) {
        constexpr FixupTable kLogOfSum = {Fixup::keep, Fixup::keep, Fixup::minus_infinity, Fixup::keep,
                                          Fixup::keep, Fixup::plus_infinity, Fixup::keep, Fixup::keep};
        return fixup_specials(result, u, kLogOfSum.bits());
    } else {
        const V inf = V::broadcast(infinity<T>());
        return select(equal(u, V::broadcast(T(0))), V::broadcast(-infinity<T>()), select(equal(u, inf), inf, result));
    }
}

// log(1 + e) for e in [0, 1], elementwise: the log1p of softplus(-x) = max(-x, 0) + log1p(e),
// e = exp(-|x|). Cheaper than vlog1p (no exponent split), which matters because BCE with logits
// spends its time here.
//
// Method, float: log(1 + e) = e + e^2 q(e), q of degree 9 fitted for minimal relative error on
// [0, 1] (iteratively reweighted least squares on Chebyshev nodes, coefficients rounded to float:
// max error 0.13 ULP before rounding of the evaluation). No division: the loops that call it are
// bound by their FMA pipes, and the quotient of the series below cost more there (log1p_unit
// float32, AVX-512, 1 thread: 3.9 G/s with the series, 5.0 with the polynomial).
// Method, double: with s = e / (2 + e) in [0, 1/3], log(1 + e) = 2 atanh(s) = 2 s (1 + z/3 +
// z^2/5 + ...), z = s^2 <= 1/9, truncated after z^16, evaluated by Horner's scheme: the first
// omitted term is below 2e-18 relative, and the rounding of the quotient dominates. (A polynomial
// as for float needs degree 22 in double, and measured slower: 1.14 against 0.97 G/s.)
//
//  Valid lane types: float32, float64.
//  Max error:   2 ULP on [0, 1], float32 and float64, every ISA (measured over millions of e,
//               uniform and exp(-uniform): float32 1.18 ULP with FMA, 1.49 without (the scalar
//               baseline); float64 1.58 ULP, the quotient's half ULP relative being up to a whole
//               ULP of the result). Subnormal e: a few subnormal spacings.
//  Valid range: e in [0, 1] (outside it neither form is accurate; e > 1 is never passed).
//  Specials:    e = 0 gives 0, NaN gives NaN.
template <class V>
inline V vlog1p_unit(V e) {
    using T = typename V::Scalar;
    if constexpr (sizeof(T) == 4) {
        constexpr float q[] = {-0.49999988079071045f, 0.33332690596580505f, -0.24988579750061035f,
                               0.19897931814193726f,  -0.16129335761070251f, 0.12467123568058014f,
                               -0.08307408541440964f, 0.041981376707553864f, -0.0136314881965518f,
                               0.002072949195280671f};
        V r = V::broadcast(q[9]);
        for (int j = 8; j >= 0; --j) r = fma(r, e, V::broadcast(q[j]));
        return fma(e * e, r, e);  // e last, so the small term keeps its precision
    } else {
        const V two = V::broadcast(T(2));
        const V d = e + two;
        // d rounds, which would cost s up to an ULP; its rounding error is exact (d - 2 is exact
        // by Sterbenz), and s(1 - delta/d) removes it to first order. The correction is ~2^-53
        // relative, so a crude 1/d (within 12% on [0, 1]) suffices: 1/(2 + e) ~ 1/2 - e/6.
        const V delta = e - (d - two);
        const V s = e / d;
        const V minus_inv_d = fma(e, V::broadcast(T(1) / T(6)), V::broadcast(T(-0.5)));
        // r(z) = sum_j z^j / (2j + 3) by Horner's scheme. (Estrin's scheme has half the
        // dependency chain but needs the powers of z: BCE with logits, which spends its time here,
        // is bound by the number of multiply-adds, not by latency, so Horner's fewer operations
        // make it faster.)
        constexpr int n = 16;  // z^0 .. z^(n-1), so the series ends at z^n
        const V z = s * s;
        V r = V::broadcast(T(1) / T(2 * (n - 1) + 3));
        for (int j = n - 2; j >= 0; --j) r = fma(r, z, V::broadcast(T(1) / T(2 * j + 3)));
        // 2 s (1 + z r), with 2 s corrected for the rounding of d (computed off the critical
        // path): the 1 is added last so the small terms keep their precision.
        const V two_s = s + s;
        const V base = fma(two_s * delta, minus_inv_d, two_s);
        return fma(two_s * z, r, base);
    }
}

// tanh(x), elementwise (the logit soft-capping of cross_entropy).
//
// Method: for |x| < 0.55, the Taylor series x + sum_n a_n x^(2n-1) (a_n from the Bernoulli
// numbers, kTanhTaylor), truncated where the next term is below 2^-27 (float: up to x^17) or
// 2^-56 (double: up to x^37) of the result; alternating and decreasing, so the truncation error is
// below that next term. For |x| >= 0.55, sign(x) (1 - 2 / (exp(2|x|) + 1)): tanh >= 0.5 there,
// so the subtraction loses under one ULP, and exp's overflow gives exactly +-1.
//
//  Valid lane types: float32, float64.
//  Max error:   2 ULP, float32 and float64, every ISA (measured: see tests/test_vector_math.py).
//  Valid range: all inputs.
//  Specials:    tanh(+-0) = +-0, tanh(+-inf) = +-1, NaN gives NaN.
constexpr double kTanhTaylor[18] = {
    -0.3333333333333333, 0.13333333333333333, -0.05396825396825397,
    0.021869488536155203, -0.008863235529902197, 0.003592128036572481,
    -0.0014558343870513183, 0.000590027440945586, -0.00023912911424355248,
    9.691537956929451e-05, -3.927832388331683e-05, 1.5918905069328964e-05,
    -6.451689215655431e-06, 2.6147711512907546e-06, -1.0597268320104654e-06,
    4.294911078273806e-07, -1.7406618963571648e-07, 7.054636946400968e-08};

template <class V>
inline V vtanh(V x) {
    using T = typename V::Scalar;
    constexpr int terms = sizeof(T) == 4 ? 8 : 18;  // a_2 .. a_(terms + 1): x^3 .. x^(2 terms + 1)
    const V one = V::broadcast(T(1));
    const V a = abs(x);
    const V z = x * x;
    V p = V::broadcast(T(kTanhTaylor[terms - 1]));
    for (int n = terms - 2; n >= 0; --n) p = fma(p, z, V::broadcast(T(kTanhTaylor[n])));
    const V small = select(equal(x, V::broadcast(T(0))), x, fma(x * z, p, x));  // keeps -0's sign
    const auto is_small = less(a, V::broadcast(T(0.55)));
    // Soft-capped logits mostly lie where the series alone serves: the exponential and the
    // division are only paid for a vector that needs them (same result either way).
    if (all_lanes(is_small)) return small;
    const V large = one - V::broadcast(T(2)) / (vexp(a + a) + one);  // tanh(|x|); NaN stays NaN
    const V signed_large = select(less(x, V::broadcast(T(0))), V::broadcast(T(0)) - large, large);
    return select(is_small, small, signed_large);
}

// Scalar helpers for once-per-row work (one log per row of a softmax).
template <class T>
inline T scalar_log(T a) { return lane0(vlog(Vec<T>::broadcast(a))); }

}  // namespace
}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
