// The small vector layer used by kernels. Included by files in cpp/src/kernels/, which are
// compiled once per instruction set with FASTLOSS_ISA_NS naming the ISA (scalar, avx2, avx512)
// and FASTLOSS_ISA_<NAME> defined. Everything here lands in namespace fastloss::<isa>::(anonymous),
// so each ISA's copy has internal linkage and can never be merged with another's by the linker
// (the failure mode xsimd warns about: an AVX-512 copy of an inline function chosen for baseline
// code, which then crashes on older CPUs).
//
// Interface (identical for every ISA; see vec_scalar-inl.hpp for the plain meaning):
//   Vec<T>::width, Vec<T>::load/load_partial/broadcast/first_lanes/gather,
//   store/store_partial/store_stream/stream_fence, lane0,
//   + - * / fma max min abs, reduce_max reduce_sum, less equal is_nan mask_or all_lanes select,
//   round_nearest, ldexp_integral, split_exponent.
#pragma once

#include <cstdint>
#include <cstring>
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

}  // namespace
}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
