// The small vector layer used by kernels. Included by files in cpp/src/kernels/, which are
// compiled once per instruction set with FASTLOSS_ISA_NS naming the ISA (scalar, avx2, avx512)
// and FASTLOSS_ISA_<NAME> defined. Everything here lands in namespace fastloss::<isa>::(anonymous),
// so each ISA's copy has internal linkage and can never be merged with another's by the linker
// (the failure mode xsimd warns about: an AVX-512 copy of an inline function chosen for baseline
// code, which then crashes on older CPUs).
//
// Interface (identical for every ISA; see vec_scalar-inl.hpp for the plain meaning):
//   Vec<T>::width, Vec<T>::broadcast/first_lanes,
//   vload/vload_partial/vgather(const S*): a Vec<compute_t<S>> from storage type S (float, double,
//   or the half types, widened to float),
//   store/store_partial/vscatter/store_stream/stream_fence, lane0,
//   + - * / fma max min abs, reduce_max reduce_sum, less equal is_nan mask_or all_lanes select,
//   round_nearest, ldexp_integral, split_exponent;
//   kHasRegisterTableLookup: whether the ISA has register_table_lookup (a table of one vector's
//   width, indexed by the low bits of each lane's bit pattern, in one instruction) and ldexp_floor
//   (p * 2^floor(b)), which only the AVX-512 layer defines;
//   kHasFixupSpecials: whether the ISA has fixup_specials(result, x, table) (a special value
//   chosen by the class of x, in one instruction), which only the AVX-512 layer defines.
//   kVectorRegisters: how many vector registers the ISA has (x86-64 scalar code: 16 xmm), for loops
//   that keep many values live at once.
#pragma once

#include <cstdint>

#include "fastloss/half.hpp"
#include <limits>
#include <type_traits>

#if defined(FASTLOSS_ISA_AVX2) || defined(FASTLOSS_ISA_AVX512)
#include <immintrin.h>
#endif

#ifndef FASTLOSS_ISA_NS
#error "vec-inl.hpp is only for files in cpp/src/kernels/, compiled once per ISA"
#endif

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

#if defined(FASTLOSS_ISA_AVX512)
#include "simd/vec_avx512-inl.hpp"
#elif defined(FASTLOSS_ISA_AVX2)
#include "simd/vec_avx2-inl.hpp"
#else
#include "simd/vec_scalar-inl.hpp"
#endif

template <class T>
constexpr T infinity() { return std::numeric_limits<T>::infinity(); }

// Loads from storage type S into a vector of its compute type. For float and double these are the
// ISA's own loads; the half types are widened to float (ISA files: load_widened, store_narrowed).
// Partial loads and stores of half values are the ISA's (load_widened_partial,
// store_narrowed_partial); gathers and scatters go through a small stack buffer: they serve
// strided rows only.
template <class S>
using VecOf = Vec<compute_t<S>>;

// n clamped to [0, width]: the lanes a partial load or store of n values touches.
template <class S>
int64_t partial_lanes(int64_t n) {
    return n < 0 ? 0 : (n > VecOf<S>::width ? VecOf<S>::width : n);
}

template <class S>
VecOf<S> vload(const S* p) {
    if constexpr (is_half_storage<S>) return load_widened(p);
    else return Vec<S>::load(p);
}

template <class S>
VecOf<S> vload_partial(const S* p, int64_t n, compute_t<S> fill) {
    if constexpr (is_half_storage<S>) {
        return load_widened_partial(p, partial_lanes<S>(n), float(S(fill)));  // fill as S holds it
    } else {
        return Vec<S>::load_partial(p, n, fill);
    }
}

// Lane k = base[k * stride]; the caller guarantees width * |stride| < 2^31.
template <class S>
VecOf<S> vgather(const S* base, int64_t stride) {
    if constexpr (is_half_storage<S>) {
        S lanes[VecOf<S>::width];
        for (int64_t k = 0; k < VecOf<S>::width; ++k) lanes[k] = base[k * stride];
        return load_widened(lanes);
    } else {
        return Vec<S>::gather(base, stride);
    }
}

// `value` in lane k, 0 in every other lane.
template <class T>
Vec<T> one_lane(int64_t k, T value) {
    const Vec<T> zero = Vec<T>::broadcast(T(0));
    return select(Vec<T>::first_lanes(k + 1), select(Vec<T>::first_lanes(k), zero, Vec<T>::broadcast(value)), zero);
}

inline void store(Half* p, Vec<float> a) { store_narrowed(p, a); }
inline void store(BFloat16* p, Vec<float> a) { store_narrowed(p, a); }

inline void store_partial(Half* p, int64_t n, Vec<float> a) { store_narrowed_partial(p, partial_lanes<Half>(n), a); }
inline void store_partial(BFloat16* p, int64_t n, Vec<float> a) {
    store_narrowed_partial(p, partial_lanes<BFloat16>(n), a);
}

// base[k * stride] = lane k, narrowed to S: the store of rows held in lanes [Note: few classes].
template <class S>
void vscatter(S* base, int64_t stride, VecOf<S> a) {
    constexpr int64_t W = VecOf<S>::width;
    S lanes[W];
    store(lanes, a);
    for (int64_t k = 0; k < W; ++k) base[k * stride] = lanes[k];
}

}  // namespace
}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
