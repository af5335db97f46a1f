// AVX-512 (F, BW, VL, DQ) vectors: 16 floats or 8 doubles, with mask registers for loop tails and
// vscalef/vgetexp/vgetmant for exp and log. Included only through vec-inl.hpp.

template <class T>
struct Vec;

template <>
struct Vec<float> {
    using Scalar = float;
    using Mask = __mmask16;
    static constexpr int64_t width = 16;
    __m512 v;

    static __mmask16 lanes_below(int64_t n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1u); }
    static Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
    static Vec load_partial(const float* p, int64_t n, float fill) {
        return {_mm512_mask_loadu_ps(_mm512_set1_ps(fill), lanes_below(n), p)};
    }
    static Vec broadcast(float a) { return {_mm512_set1_ps(a)}; }
    static Mask first_lanes(int64_t n) { return lanes_below(n); }
    static Vec gather(const float* base, int64_t stride) {
        const __m512i idx = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(int(stride)));
        return {_mm512_i32gather_ps(idx, base, 4)};
    }
};

template <>
struct Vec<double> {
    using Scalar = double;
    using Mask = __mmask8;
    static constexpr int64_t width = 8;
    __m512d v;

    static __mmask8 lanes_below(int64_t n) { return n >= 8 ? __mmask8(0xff) : __mmask8((1u << n) - 1u); }
    static Vec load(const double* p) { return {_mm512_loadu_pd(p)}; }
    static Vec load_partial(const double* p, int64_t n, double fill) {
        return {_mm512_mask_loadu_pd(_mm512_set1_pd(fill), lanes_below(n), p)};
    }
    static Vec broadcast(double a) { return {_mm512_set1_pd(a)}; }
    static Mask first_lanes(int64_t n) { return lanes_below(n); }
    static Vec gather(const double* base, int64_t stride) {
        const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(int(stride)));
        return {_mm512_i32gather_pd(idx, base, 8)};
    }
};

using VecF = Vec<float>;
using VecD = Vec<double>;

inline void store(float* p, VecF a) { _mm512_storeu_ps(p, a.v); }
inline void store(double* p, VecD a) { _mm512_storeu_pd(p, a.v); }
inline void store_partial(float* p, int64_t n, VecF a) { _mm512_mask_storeu_ps(p, VecF::lanes_below(n), a.v); }
inline void store_partial(double* p, int64_t n, VecD a) { _mm512_mask_storeu_pd(p, VecD::lanes_below(n), a.v); }
// Non-temporal stores (p aligned to 64 bytes) bypass the caches and skip the read-for-ownership
// of ordinary stores; stream_fence() orders them before the results are used.
inline void store_stream(float* p, VecF a) { _mm512_stream_ps(p, a.v); }
inline void store_stream(double* p, VecD a) { _mm512_stream_pd(p, a.v); }
inline void stream_fence() { _mm_sfence(); }
inline float lane0(VecF a) { return _mm512_cvtss_f32(a.v); }
inline double lane0(VecD a) { return _mm512_cvtsd_f64(a.v); }

inline VecF operator+(VecF a, VecF b) { return {_mm512_add_ps(a.v, b.v)}; }
inline VecF operator-(VecF a, VecF b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline VecF operator*(VecF a, VecF b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline VecF operator/(VecF a, VecF b) { return {_mm512_div_ps(a.v, b.v)}; }
inline VecF fma(VecF a, VecF b, VecF c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline VecF max(VecF a, VecF b) { return {_mm512_max_ps(a.v, b.v)}; }  // NaN in either: b
inline VecF min(VecF a, VecF b) { return {_mm512_min_ps(a.v, b.v)}; }
inline VecF abs(VecF a) { return {_mm512_abs_ps(a.v)}; }
inline VecD operator+(VecD a, VecD b) { return {_mm512_add_pd(a.v, b.v)}; }
inline VecD operator-(VecD a, VecD b) { return {_mm512_sub_pd(a.v, b.v)}; }
inline VecD operator*(VecD a, VecD b) { return {_mm512_mul_pd(a.v, b.v)}; }
inline VecD operator/(VecD a, VecD b) { return {_mm512_div_pd(a.v, b.v)}; }
inline VecD fma(VecD a, VecD b, VecD c) { return {_mm512_fmadd_pd(a.v, b.v, c.v)}; }
inline VecD max(VecD a, VecD b) { return {_mm512_max_pd(a.v, b.v)}; }
inline VecD min(VecD a, VecD b) { return {_mm512_min_pd(a.v, b.v)}; }
inline VecD abs(VecD a) { return {_mm512_abs_pd(a.v)}; }

// Horizontal reductions in a fixed lane order (the _mm512_reduce_* sequences are fixed).
inline float reduce_max(VecF a) { return _mm512_reduce_max_ps(a.v); }
inline float reduce_sum(VecF a) { return _mm512_reduce_add_ps(a.v); }
inline double reduce_max(VecD a) { return _mm512_reduce_max_pd(a.v); }
inline double reduce_sum(VecD a) { return _mm512_reduce_add_pd(a.v); }

inline __mmask16 less(VecF a, VecF b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ); }
inline __mmask16 equal(VecF a, VecF b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_EQ_OQ); }
inline __mmask16 is_nan(VecF a) { return _mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q); }
inline __mmask16 mask_or(__mmask16 a, __mmask16 b) { return __mmask16(a | b); }
inline bool all_lanes(__mmask16 m) { return m == 0xffff; }
inline VecF select(__mmask16 m, VecF a, VecF b) { return {_mm512_mask_blend_ps(m, b.v, a.v)}; }
inline __mmask8 less(VecD a, VecD b) { return _mm512_cmp_pd_mask(a.v, b.v, _CMP_LT_OQ); }
inline __mmask8 equal(VecD a, VecD b) { return _mm512_cmp_pd_mask(a.v, b.v, _CMP_EQ_OQ); }
inline __mmask8 is_nan(VecD a) { return _mm512_cmp_pd_mask(a.v, a.v, _CMP_UNORD_Q); }
inline __mmask8 mask_or(__mmask8 a, __mmask8 b) { return __mmask8(a | b); }
inline bool all_lanes(__mmask8 m) { return m == 0xff; }
inline VecD select(__mmask8 m, VecD a, VecD b) { return {_mm512_mask_blend_pd(m, b.v, a.v)}; }

inline VecF round_nearest(VecF a) { return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
inline VecD round_nearest(VecD a) { return {_mm512_roundscale_pd(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }

// p * 2^n: vscalef rounds once and handles overflow to inf and gradual underflow itself.
inline VecF ldexp_integral(VecF p, VecF n) { return {_mm512_scalef_ps(p.v, n.v)}; }
inline VecD ldexp_integral(VecD p, VecD n) { return {_mm512_scalef_pd(p.v, n.v)}; }

// vfixupimm: each lane of x is classed (QNaN, SNaN, zero, one, -inf, +inf, negative, positive;
// subnormals are positive, as DAZ is off) and the four-bit code of its class in `table` (vector
// math's FixupTable) picks the lane's answer: the result as computed, or a special value.
constexpr bool kHasFixupSpecials = true;
inline VecF fixup_specials(VecF result, VecF x, int32_t table) {
    return {_mm512_fixupimm_ps(result.v, x.v, _mm512_set1_epi32(table), 0)};
}
inline VecD fixup_specials(VecD result, VecD x, int32_t table) {
    return {_mm512_fixupimm_pd(result.v, x.v, _mm512_set1_epi64(table), 0)};
}

// A table of one register's width (16 floats, 8 doubles) is looked up in one vpermps/vpermpd:
// lane i gets table[bits(index)_i mod width], the low bits of index's bit pattern (vexp uses it).
constexpr bool kHasRegisterTableLookup = true;
constexpr int kVectorRegisters = 32;  // see vec-inl.hpp
inline VecF register_table_lookup(const float* table, VecF index) {
    return {_mm512_permutexvar_ps(_mm512_castps_si512(index.v), _mm512_loadu_ps(table))};
}
inline VecD register_table_lookup(const double* table, VecD index) {
    return {_mm512_permutexvar_pd(_mm512_castpd_si512(index.v), _mm512_loadu_pd(table))};
}
// p * 2^floor(b) for any b, not just integers: vscalef floors b itself.
inline VecF ldexp_floor(VecF p, VecF b) { return {_mm512_scalef_ps(p.v, b.v)}; }
inline VecD ldexp_floor(VecD p, VecD b) { return {_mm512_scalef_pd(p.v, b.v)}; }

// For finite x > 0 (subnormals included): x = m * 2^e with m in [sqrt(1/2), sqrt(2)).
// vgetmant normalises subnormals itself, so no pre-scaling is needed here.
inline VecF split_exponent(VecF x, VecF& e) {
    __m512 m = _mm512_getmant_ps(x.v, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);  // [1, 2)
    __m512 k = _mm512_getexp_ps(x.v);
    const __mmask16 high = _mm512_cmp_ps_mask(m, _mm512_set1_ps(1.41421356f), _CMP_GT_OQ);
    m = _mm512_mask_mul_ps(m, high, m, _mm512_set1_ps(0.5f));
    k = _mm512_mask_add_ps(k, high, k, _mm512_set1_ps(1.0f));
    e = {k};
    return {m};
}
inline VecD split_exponent(VecD x, VecD& e) {
    __m512d m = _mm512_getmant_pd(x.v, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
    __m512d k = _mm512_getexp_pd(x.v);
    const __mmask8 high = _mm512_cmp_pd_mask(m, _mm512_set1_pd(1.41421356237309504880), _CMP_GT_OQ);
    m = _mm512_mask_mul_pd(m, high, m, _mm512_set1_pd(0.5));
    k = _mm512_mask_add_pd(k, high, k, _mm512_set1_pd(1.0));
    e = {k};
    return {m};
}

// Half-precision storage (see fastloss/half.hpp): widened to float on load, rounded to nearest
// even once on store. float16 uses the AVX-512F conversions; bfloat16 is the top half of a
// float32 (AVX512-BF16 is not assumed).
inline __m256i load_bits16(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline VecF widened(const Half*, __m256i bits) { return {_mm512_cvtph_ps(bits)}; }
// Word i of the bits to the high word of lane i, the low words zeroed by the mask: one permutation
// where a zero extension and a shift were two operations, the shift taking a cycle of the vector
// pipes that the exp-bound loops keep busy (on Zen 4, load included, 0.55 cycles a vector beside
// saturated FMA and add pipes against 0.98: BENCHMARKS.md's twenty-fourth sitting).
inline VecF widened(const BFloat16*, __m256i bits) {
    const __m512i to_high_words = _mm512_set_epi16(15, 0, 14, 0, 13, 0, 12, 0, 11, 0, 10, 0, 9, 0, 8, 0, 7, 0, 6, 0, 5,
                                                   0, 4, 0, 3, 0, 2, 0, 1, 0, 0, 0);
    constexpr __mmask32 kHighWords = 0xaaaaaaaa;
    return {_mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(kHighWords, to_high_words, _mm512_castsi256_si512(bits)))};
}
inline VecF load_widened(const Half* p) { return widened(p, load_bits16(p)); }
inline VecF load_widened(const BFloat16* p) { return widened(p, load_bits16(p)); }
inline __m256i half_bits(VecF a) { return _mm512_cvtps_ph(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// Rounded to nearest even by adding 0x7fff plus the kept half's lowest bit. In a NaN lane that
// sum could carry into an infinity or the sign bit, so a NaN lane takes its own bits instead, the
// quiet bit forced as a conversion quiets a signaling NaN: one masked or, where a separate value
// and a blend cost one operation more on the vector pipes.
inline __m256i bfloat16_bits(VecF a) {
    const __m512i u = _mm512_castps_si512(a.v);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __mmask16 nan = _mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q);
    __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd));
    rounded = _mm512_mask_or_epi32(rounded, nan, u, _mm512_set1_epi32(0x00400000));
    // The high halves of the 16 lanes gathered by one word permutation (a shift and a narrowing
    // move were three uops on the two ports that run AVX-512 integer work on Intel).
    const __m512i high_halves = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 31, 29, 27, 25, 23,
                                                 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    return _mm512_castsi512_si256(_mm512_permutexvar_epi16(high_halves, rounded));
}
inline void store_narrowed(Half* p, VecF a) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), half_bits(a)); }
inline void store_narrowed(BFloat16* p, VecF a) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), bfloat16_bits(a));
}
inline __m256i narrowed(const Half*, VecF a) { return half_bits(a); }
inline __m256i narrowed(const BFloat16*, VecF a) { return bfloat16_bits(a); }
// Loop tails of half values, 0 <= n <= 16 lanes (the others `fill`): the masked loads and stores
// touch nothing past p + n. (Lanes gathered in a stack buffer instead made each tail's load wait
// for store forwarding: a quarter of bfloat16 log_softmax's time on rows of 1000 classes.)
template <class H>
VecF load_widened_partial(const H* p, int64_t n, float fill) {
    const __mmask16 lanes = VecF::lanes_below(n);
    return {_mm512_mask_blend_ps(lanes, _mm512_set1_ps(fill), widened(p, _mm256_maskz_loadu_epi16(lanes, p)).v)};
}
template <class H>
void store_narrowed_partial(H* p, int64_t n, VecF a) {
    _mm256_mask_storeu_epi16(p, VecF::lanes_below(n), narrowed(p, a));
}
inline void store_stream(Half* p, VecF a) { _mm256_stream_si256(reinterpret_cast<__m256i*>(p), half_bits(a)); }
inline void store_stream(BFloat16* p, VecF a) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), bfloat16_bits(a));
}
