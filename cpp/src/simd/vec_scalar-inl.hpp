// Scalar "vectors" of width 1: the baseline x86-64 build and the fallback for other CPUs.
// Same interface as vec_avx2-inl.hpp / vec_avx512-inl.hpp, so kernels are written once.
// Included only through vec-inl.hpp, inside namespace fastloss::<isa>::(anonymous).

template <class T>
struct Vec {
    using Scalar = T;
    using Mask = bool;
    static constexpr int64_t width = 1;
    T v;

    static Vec load(const T* p) { return {*p}; }
    static Vec load_partial(const T* p, int64_t n, T fill) { return {n > 0 ? *p : fill}; }
    static Vec broadcast(T a) { return {a}; }
    static Mask first_lanes(int64_t n) { return n > 0; }  // lanes [0, n) set
    // Lane k = base[k * stride]; the caller guarantees width * |stride| < 2^31.
    static Vec gather(const T* base, int64_t) { return {*base}; }
};

template <class T> inline void store(T* p, Vec<T> a) { *p = a.v; }
template <class T> inline void store_partial(T* p, int64_t n, Vec<T> a) { if (n > 0) *p = a.v; }
// Streaming (non-temporal) store of a vector to a width-aligned address; plain here.
template <class T> inline void store_stream(T* p, Vec<T> a) { *p = a.v; }
inline void stream_fence() {}
template <class T> inline T lane0(Vec<T> a) { return a.v; }

template <class T> inline Vec<T> operator+(Vec<T> a, Vec<T> b) { return {a.v + b.v}; }
template <class T> inline Vec<T> operator-(Vec<T> a, Vec<T> b) { return {a.v - b.v}; }
template <class T> inline Vec<T> operator*(Vec<T> a, Vec<T> b) { return {a.v * b.v}; }
template <class T> inline Vec<T> operator/(Vec<T> a, Vec<T> b) { return {a.v / b.v}; }
// No FMA instruction in the baseline, and std::fma would be a slow library call: two roundings.
template <class T> inline Vec<T> fma(Vec<T> a, Vec<T> b, Vec<T> c) { return {a.v * b.v + c.v}; }
// x86 semantics, shared by every ISA here: if either argument is NaN the result is b.
template <class T> inline Vec<T> max(Vec<T> a, Vec<T> b) { return {a.v > b.v ? a.v : b.v}; }
template <class T> inline Vec<T> min(Vec<T> a, Vec<T> b) { return {a.v < b.v ? a.v : b.v}; }
template <class T> inline Vec<T> abs(Vec<T> a) { return {a.v < T(0) ? -a.v : a.v}; }
template <class T> inline T reduce_max(Vec<T> a) { return a.v; }
template <class T> inline T reduce_sum(Vec<T> a) { return a.v; }

template <class T> inline bool less(Vec<T> a, Vec<T> b) { return a.v < b.v; }
template <class T> inline bool equal(Vec<T> a, Vec<T> b) { return a.v == b.v; }
template <class T> inline bool is_nan(Vec<T> a) { return a.v != a.v; }
inline bool mask_or(bool a, bool b) { return a || b; }
inline bool all_lanes(bool m) { return m; }
template <class T> inline Vec<T> select(bool m, Vec<T> a, Vec<T> b) { return m ? a : b; }

// Round to nearest even for |a| < 2^(mantissa bits - 1), by the add-and-subtract trick (no SSE4.1
// roundss in the baseline). Only called on clamped exponents, far inside that range.
template <class T> inline Vec<T> round_nearest(Vec<T> a) {
    const T magic = sizeof(T) == 4 ? T(12582912.0) : T(6755399441055744.0);  // 1.5 * 2^23, 2^52
    return {(a.v + magic) - magic};  // not folded: no -ffast-math (see CMakeLists.txt)
}

constexpr bool kHasRegisterTableLookup = false;  // see vec-inl.hpp
constexpr bool kHasFixupSpecials = false;  // see vec-inl.hpp
constexpr int kVectorRegisters = 16;       // see vec-inl.hpp

template <class T> struct ScalarBits;
template <> struct ScalarBits<float> {
    using Int = int32_t;
    static constexpr int mantissa_bits = 23;
    static constexpr int bias = 127;
};
template <> struct ScalarBits<double> {
    using Int = int64_t;
    static constexpr int mantissa_bits = 52;
    static constexpr int bias = 1023;
};

template <class T> inline typename ScalarBits<T>::Int bits_of(T a) {
    typename ScalarBits<T>::Int i;
    std::memcpy(&i, &a, sizeof(T));
    return i;
}
template <class T> inline T from_bits(typename ScalarBits<T>::Int i) {
    T a;
    std::memcpy(&a, &i, sizeof(T));
    return a;
}
template <class T> inline T pow2_normal(typename ScalarBits<T>::Int k) {  // 2^k, k in normal range
    using B = ScalarBits<T>;
    using UInt = std::make_unsigned_t<typename B::Int>;
    // Shifted as unsigned: a left shift of a negative signed value is undefined behaviour in C++17
    // (UBSan reported it for the garbage exponent of a NaN input, see ldexp_integral).
    return from_bits<T>(typename B::Int(UInt(k + B::bias) << B::mantissa_bits));
}

// p * 2^n for integral n: two exact normal scalings, so overflow gives inf and underflow rounds
// once into the subnormals. Exact within the clamp range of exp(). Beyond it (only reachable
// through vexp_nonpositive/vexp_clamped given an argument outside their range, e.g. the exponents
// of a row whose max a NaN hid: that row's result is NaN anyway) n is clamped to what two normal
// scalings cover, so the result is still 0 or inf rather than undefined behaviour: converting an
// out-of-range float to an integer is undefined, and SIMD ISAs do not have that problem.
template <class T> inline Vec<T> ldexp_integral(Vec<T> p, Vec<T> n) {
    using Int = typename ScalarBits<T>::Int;
    constexpr T kMaxScale = T(2 * (ScalarBits<T>::bias - 1));  // 2^(k1 + k2), each normal
    // A NaN input passes exp()'s clamps, and converting NaN to an integer is undefined behaviour;
    // the result is NaN whatever the scale, so scale by 2^0.
    const T clamped = n.v < -kMaxScale ? -kMaxScale : (n.v > kMaxScale ? kMaxScale : n.v);
    const Int k = n.v == n.v ? Int(clamped) : Int(0);
    const Int k1 = k >> 1;
    const Int k2 = k - k1;
    return {p.v * pow2_normal<T>(k1) * pow2_normal<T>(k2)};
}

// For finite x > 0 (subnormals included): x = m * 2^e with m in [sqrt(1/2), sqrt(2)).
template <class T> inline Vec<T> split_exponent(Vec<T> x, Vec<T>& e) {
    using B = ScalarBits<T>;
    using Int = typename B::Int;
    const T min_normal = from_bits<T>(Int(1) << B::mantissa_bits);
    T a = x.v;
    Int adjust = 0;
    if (a < min_normal) {  // subnormal: scale into the normal range first
        a *= pow2_normal<T>(B::mantissa_bits);
        adjust = B::mantissa_bits;
    }
    const Int bits = bits_of(a);
    const Int exp_mask = (Int(1) << (sizeof(T) * 8 - 1 - B::mantissa_bits)) - 1;
    Int k = ((bits >> B::mantissa_bits) & exp_mask) - (B::bias - 1);  // m in [0.5, 1)
    const Int mant_mask = (Int(1) << B::mantissa_bits) - 1;
    T m = from_bits<T>((bits & mant_mask) | (Int(B::bias - 1) << B::mantissa_bits));
    if (m < T(0.70710678118654752440)) {
        m *= T(2);
        k -= 1;
    }
    e = {T(k - adjust)};
    return {m};
}

// Half-precision storage (see fastloss/half.hpp): widened to float on load, rounded once on store.
inline Vec<float> load_widened(const Half* p) { return {float(*p)}; }
inline Vec<float> load_widened(const BFloat16* p) { return {float(*p)}; }
inline void store_narrowed(Half* p, Vec<float> a) { *p = Half(a.v); }
inline void store_narrowed(BFloat16* p, Vec<float> a) { *p = BFloat16(a.v); }
// Loop tails: a vector of one lane is whole or empty.
template <class H>
Vec<float> load_widened_partial(const H* p, int64_t n, float fill) { return n > 0 ? load_widened(p) : Vec<float>{fill}; }
template <class H>
void store_narrowed_partial(H* p, int64_t n, Vec<float> a) {
    if (n > 0) store_narrowed(p, a);
}
inline void store_stream(Half* p, Vec<float> a) { store_narrowed(p, a); }
inline void store_stream(BFloat16* p, Vec<float> a) { store_narrowed(p, a); }
