// Elementwise exp/log/log1p/tanh of the active ISA over contiguous arrays (test and benchmark hook).
#pragma once

#include <cstdint>

namespace fastloss {

template <class T>
void vector_exp(const T* x, T* y, int64_t n);
template <class T>
void vector_log(const T* x, T* y, int64_t n);
template <class T>
void vector_log1p(const T* x, T* y, int64_t n);
template <class T>
void vector_log1p_unit(const T* x, T* y, int64_t n);
template <class T>
void vector_tanh(const T* x, T* y, int64_t n);

}  // namespace fastloss
