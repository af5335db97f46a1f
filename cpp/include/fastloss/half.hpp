// Half-precision storage types: IEEE binary16 (NumPy's float16) and bfloat16 (ml_dtypes'), as
// 16-bit patterns. Kernels never compute in them: values are widened to float32 on load and
// rounded to nearest-even once on store (PyTorch CPU's "compute in float32, round once").
//
// The scalar conversions here are portable bit manipulation (the baseline x86-64 build has no
// F16C); the kernels' vector loads and stores use F16C / AVX-512 conversions and bit shifts
// (cpp/src/simd/vec_*-inl.hpp). Both round the same way, so every ISA gives the same bits.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace fastloss {

inline uint32_t float_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

inline float bits_float(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

// binary16 -> float32, exact.
inline float half_bits_to_float(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exponent = (h >> 10) & 0x1fu;
    const uint32_t mantissa = h & 0x3ffu;
    if (exponent == 0x1f) return bits_float(sign | 0x7f800000u | (mantissa << 13));  // inf, NaN
    if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float32
        const float magnitude = float(mantissa) * 5.9604644775390625e-8f;
        return sign ? -magnitude : magnitude;
    }
    return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

// float32 -> binary16, round to nearest even; overflow gives inf, NaN stays a (quiet) NaN.
inline uint16_t float_to_half_bits(float f) {
    const uint32_t u = float_bits(f);
    const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
    const uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN
    if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds to inf
    if (a < 0x38800000u) {  // below 2^-14: a subnormal half (or zero), in units of 2^-24
        // |f| * 2^24 < 1024 is exact; adding and subtracting 1.5 * 2^23 rounds it to nearest even.
        const float scaled = bits_float(a) * 16777216.0f;
        const float rounded = (scaled + 12582912.0f) - 12582912.0f;  // not folded: no fast-math
        return uint16_t(sign | uint16_t(rounded));
    }
    // Normal: re-bias the exponent and round the 13 dropped mantissa bits to nearest even (a carry
    // into the exponent is the correct rounding up to the next binade).
    const uint32_t odd = (a >> 13) & 1u;
    return uint16_t(sign | ((a - (112u << 23) + 0xfffu + odd) >> 13));
}

// bfloat16 is the top half of a float32.
inline float bfloat16_bits_to_float(uint16_t b) { return bits_float(uint32_t(b) << 16); }

inline uint16_t float_to_bfloat16_bits(float f) {
    const uint32_t u = float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);  // quiet NaN
    return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);  // nearest even; overflow -> inf
}

struct Half {
    uint16_t bits;
    Half() = default;
    Half(float f) : bits(float_to_half_bits(f)) {}  // NOLINT: implicit, like a built-in float
    operator float() const { return half_bits_to_float(bits); }
};

struct BFloat16 {
    uint16_t bits;
    BFloat16() = default;
    BFloat16(float f) : bits(float_to_bfloat16_bits(f)) {}  // NOLINT
    operator float() const { return bfloat16_bits_to_float(bits); }
};

static_assert(sizeof(Half) == 2 && sizeof(BFloat16) == 2, "half types must be 16-bit patterns");
static_assert(std::is_trivially_copyable_v<Half> && std::is_trivially_copyable_v<BFloat16>);

template <class S>
constexpr bool is_half_storage = std::is_same_v<S, Half> || std::is_same_v<S, BFloat16>;

// Explicit instantiations of the drivers (cpp/src/ops/) for every storage type.
#define FASTLOSS_FOR_EACH_STORAGE_TYPE(MACRO) MACRO(float) MACRO(double) MACRO(Half) MACRO(BFloat16)

// The type a kernel computes in for storage type S: float32 for the half types, S otherwise.
template <class S>
using compute_t = std::conditional_t<is_half_storage<S>, float, S>;

}  // namespace fastloss
