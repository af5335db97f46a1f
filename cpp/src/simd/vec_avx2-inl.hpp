// AVX2 + FMA vectors: 8 floats or 4 doubles. Included only through vec-inl.hpp.

template <class T>
struct Vec;

template <>
struct Vec<float> {
    using Scalar = float;
    using Mask = __m256;
    static constexpr int64_t width = 8;
    __m256 v;

    static __m256i lanes_below(int64_t n) {  // all-ones in lanes [0, n)
        return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
    static Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
    static Vec load_partial(const float* p, int64_t n, float fill) {
        const __m256i m = lanes_below(n);
        return {_mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m))};
    }
    static Vec broadcast(float a) { return {_mm256_set1_ps(a)}; }
    static Mask first_lanes(int64_t n) { return _mm256_castsi256_ps(lanes_below(n)); }
    static Vec gather(const float* base, int64_t stride) {
        const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(int(stride)));
        return {_mm256_i32gather_ps(base, idx, 4)};
    }
};

template <>
struct Vec<double> {
    using Scalar = double;
    using Mask = __m256d;
    static constexpr int64_t width = 4;
    __m256d v;

    static __m256i lanes_below(int64_t n) {
        return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
    }
    static Vec load(const double* p) { return {_mm256_loadu_pd(p)}; }
    static Vec load_partial(const double* p, int64_t n, double fill) {
        const __m256i m = lanes_below(n);
        return {_mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m))};
    }
    static Vec broadcast(double a) { return {_mm256_set1_pd(a)}; }
    static Mask first_lanes(int64_t n) { return _mm256_castsi256_pd(lanes_below(n)); }
    static Vec gather(const double* base, int64_t stride) {
        const __m128i idx = _mm_mullo_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32(int(stride)));
        return {_mm256_i32gather_pd(base, idx, 8)};
    }
};

using VecF = Vec<float>;
using VecD = Vec<double>;

inline void store(float* p, VecF a) { _mm256_storeu_ps(p, a.v); }
inline void store(double* p, VecD a) { _mm256_storeu_pd(p, a.v); }
inline void store_partial(float* p, int64_t n, VecF a) { _mm256_maskstore_ps(p, VecF::lanes_below(n), a.v); }
inline void store_partial(double* p, int64_t n, VecD a) { _mm256_maskstore_pd(p, VecD::lanes_below(n), a.v); }
// Non-temporal stores (p aligned to the vector size) bypass the caches and skip the read-for-
// ownership of ordinary stores; stream_fence() orders them before the results are used.
inline void store_stream(float* p, VecF a) { _mm256_stream_ps(p, a.v); }
inline void store_stream(double* p, VecD a) { _mm256_stream_pd(p, a.v); }
inline void stream_fence() { _mm_sfence(); }
inline float lane0(VecF a) { return _mm256_cvtss_f32(a.v); }
inline double lane0(VecD a) { return _mm256_cvtsd_f64(a.v); }

inline VecF operator+(VecF a, VecF b) { return {_mm256_add_ps(a.v, b.v)}; }
inline VecF operator-(VecF a, VecF b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline VecF operator*(VecF a, VecF b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline VecF operator/(VecF a, VecF b) { return {_mm256_div_ps(a.v, b.v)}; }
inline VecF fma(VecF a, VecF b, VecF c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline VecF max(VecF a, VecF b) { return {_mm256_max_ps(a.v, b.v)}; }  // NaN in either: b
inline VecF min(VecF a, VecF b) { return {_mm256_min_ps(a.v, b.v)}; }
inline VecF abs(VecF a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)}; }
inline VecD operator+(VecD a, VecD b) { return {_mm256_add_pd(a.v, b.v)}; }
inline VecD operator-(VecD a, VecD b) { return {_mm256_sub_pd(a.v, b.v)}; }
inline VecD operator*(VecD a, VecD b) { return {_mm256_mul_pd(a.v, b.v)}; }
inline VecD operator/(VecD a, VecD b) { return {_mm256_div_pd(a.v, b.v)}; }
inline VecD fma(VecD a, VecD b, VecD c) { return {_mm256_fmadd_pd(a.v, b.v, c.v)}; }
inline VecD max(VecD a, VecD b) { return {_mm256_max_pd(a.v, b.v)}; }
inline VecD min(VecD a, VecD b) { return {_mm256_min_pd(a.v, b.v)}; }
inline VecD abs(VecD a) { return {_mm256_andnot_pd(_mm256_set1_pd(-0.0), a.v)}; }

// Horizontal reductions in a fixed lane order (results do not depend on anything but the data).
inline float reduce_max(VecF a) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}
inline float reduce_sum(VecF a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
inline double reduce_max(VecD a) {
    __m128d m = _mm_max_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
    m = _mm_max_sd(m, _mm_unpackhi_pd(m, m));
    return _mm_cvtsd_f64(m);
}
inline double reduce_sum(VecD a) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

inline __m256 less(VecF a, VecF b) { return _mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ); }
inline __m256 equal(VecF a, VecF b) { return _mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ); }
inline __m256 is_nan(VecF a) { return _mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q); }
inline __m256 mask_or(__m256 a, __m256 b) { return _mm256_or_ps(a, b); }
inline bool all_lanes(__m256 m) { return _mm256_movemask_ps(m) == 0xff; }
inline VecF select(__m256 m, VecF a, VecF b) { return {_mm256_blendv_ps(b.v, a.v, m)}; }
inline __m256d less(VecD a, VecD b) { return _mm256_cmp_pd(a.v, b.v, _CMP_LT_OQ); }
inline __m256d equal(VecD a, VecD b) { return _mm256_cmp_pd(a.v, b.v, _CMP_EQ_OQ); }
inline __m256d is_nan(VecD a) { return _mm256_cmp_pd(a.v, a.v, _CMP_UNORD_Q); }
inline __m256d mask_or(__m256d a, __m256d b) { return _mm256_or_pd(a, b); }
inline bool all_lanes(__m256d m) { return _mm256_movemask_pd(m) == 0xf; }
inline VecD select(__m256d m, VecD a, VecD b) { return {_mm256_blendv_pd(b.v, a.v, m)}; }

inline VecF round_nearest(VecF a) { return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
inline VecD round_nearest(VecD a) { return {_mm256_round_pd(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }

constexpr bool kHasRegisterTableLookup = false;  // see vec-inl.hpp
constexpr bool kHasFixupSpecials = false;  // see vec-inl.hpp
constexpr int kVectorRegisters = 16;       // see vec-inl.hpp

// p * 2^n for integral n within the clamp range of exp(): two exact normal scalings, so overflow
// gives inf and underflow rounds once into the subnormals.
inline VecF ldexp_integral(VecF p, VecF n) {
    const __m256i k = _mm256_cvtps_epi32(n.v);
    const __m256i k1 = _mm256_srai_epi32(k, 1);
    const __m256i k2 = _mm256_sub_epi32(k, k1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
    return {_mm256_mul_ps(_mm256_mul_ps(p.v, s1), s2)};
}
inline VecD ldexp_integral(VecD p, VecD n) {
    const __m128i k = _mm256_cvtpd_epi32(n.v);
    const __m128i k1 = _mm_srai_epi32(k, 1);
    const __m128i k2 = _mm_sub_epi32(k, k1);
    const __m256i bias = _mm256_set1_epi64x(1023);
    const __m256d s1 = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(k1), bias), 52));
    const __m256d s2 = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(k2), bias), 52));
    return {_mm256_mul_pd(_mm256_mul_pd(p.v, s1), s2)};
}

// For finite x > 0 (subnormals included): x = m * 2^e with m in [sqrt(1/2), sqrt(2)).
inline VecF split_exponent(VecF x, VecF& e) {
    const __m256 subnormal = _mm256_cmp_ps(x.v, _mm256_set1_ps(1.17549435e-38f), _CMP_LT_OQ);
    const __m256 a = _mm256_blendv_ps(x.v, _mm256_mul_ps(x.v, _mm256_set1_ps(8388608.0f)), subnormal);
    const __m256 adjust = _mm256_and_ps(subnormal, _mm256_set1_ps(23.0f));
    const __m256i bits = _mm256_castps_si256(a);
    __m256 k = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(126)));
    __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)),
                                                   _mm256_set1_epi32(0x3f000000)));
    const __m256 low = _mm256_cmp_ps(m, _mm256_set1_ps(0.70710678f), _CMP_LT_OQ);
    m = _mm256_blendv_ps(m, _mm256_add_ps(m, m), low);
    k = _mm256_sub_ps(k, _mm256_and_ps(low, _mm256_set1_ps(1.0f)));
    e = {_mm256_sub_ps(k, adjust)};
    return {m};
}
inline VecD split_exponent(VecD x, VecD& e) {
    const __m256d subnormal = _mm256_cmp_pd(x.v, _mm256_set1_pd(2.2250738585072014e-308), _CMP_LT_OQ);
    const __m256d a = _mm256_blendv_pd(x.v, _mm256_mul_pd(x.v, _mm256_set1_pd(4503599627370496.0)), subnormal);
    const __m256d adjust = _mm256_and_pd(subnormal, _mm256_set1_pd(52.0));
    const __m256i bits = _mm256_castpd_si256(a);
    // The biased exponent fits in 32 bits: gather the high halves and convert from int32.
    const __m256i exps = _mm256_srli_epi64(bits, 52);
    const __m128i exps32 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(exps, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)));
    __m256d k = _mm256_cvtepi32_pd(_mm_sub_epi32(exps32, _mm_set1_epi32(1022)));
    __m256d m = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi64x(0x000fffffffffffffLL)),
                                                    _mm256_set1_epi64x(0x3fe0000000000000LL)));
    const __m256d low = _mm256_cmp_pd(m, _mm256_set1_pd(0.70710678118654752440), _CMP_LT_OQ);
    m = _mm256_blendv_pd(m, _mm256_add_pd(m, m), low);
    k = _mm256_sub_pd(k, _mm256_and_pd(low, _mm256_set1_pd(1.0)));
    e = {_mm256_sub_pd(k, adjust)};
    return {m};
}

// Half-precision storage (see fastloss/half.hpp): widened to float on load, rounded to nearest
// even once on store. float16 uses F16C; bfloat16 is the top half of a float32, so a shift.
inline __m128i load_bits8(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
inline VecF load_widened(const Half* p) { return {_mm256_cvtph_ps(load_bits8(p))}; }
inline VecF load_widened(const BFloat16* p) {
    return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load_bits8(p)), 16))};
}
inline __m128i half_bits(VecF a) { return _mm256_cvtps_ph(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline __m128i bfloat16_bits(VecF a) {
    const __m256i u = _mm256_castps_si256(a.v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd));
    const __m256i quiet_nan = _mm256_or_si256(u, _mm256_set1_epi32(0x00400000));
    const __m256 nan = _mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q);
    const __m256i r = _mm256_srli_epi32(
        _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(rounded), _mm256_castsi256_ps(quiet_nan), nan)), 16);
    return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));  // values < 2^16
}
inline void store_narrowed(Half* p, VecF a) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), half_bits(a)); }
inline void store_narrowed(BFloat16* p, VecF a) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), bfloat16_bits(a)); }
// Loop tails of half values, 0 <= n <= 8 lanes (the others `fill`), through a stack buffer:
// AVX2 masks 32-bit lanes only, and whole pairs moved by masked loads and stores with an odd last
// value on its own measured no faster (AVX-512's masked 16-bit lanes are: vec_avx512-inl.hpp).
template <class H>
VecF load_widened_partial(const H* p, int64_t n, float fill) {
    H lanes[8];
    for (int64_t k = 0; k < 8; ++k) lanes[k] = k < n ? p[k] : H(fill);
    return load_widened(lanes);
}
template <class H>
void store_narrowed_partial(H* p, int64_t n, VecF a) {
    H lanes[8];
    store_narrowed(lanes, a);
    for (int64_t k = 0; k < n; ++k) p[k] = lanes[k];
}
inline void store_stream(Half* p, VecF a) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), half_bits(a)); }
inline void store_stream(BFloat16* p, VecF a) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), bfloat16_bits(a)); }
