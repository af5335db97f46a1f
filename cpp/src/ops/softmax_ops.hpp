// softmax, log_softmax and logsumexp over one axis of strided arrays: picks the layout
// (axis_geometry.hpp), splits the work across threads (parallel.hpp) and calls the active
// ISA's kernels. Arguments were validated by the caller (the bindings).
#pragma once

#include <cstdint>
#include "ops/inline_vector.hpp"

namespace fastloss {

enum class SoftmaxKind { softmax, log_softmax };

// y = softmax or log_softmax of x along `axis`. x and y have the same shape; strides are in
// elements and may differ (y may be x itself).
template <class T>
void softmax_forward(SoftmaxKind kind, const T* x, const Extents& x_strides, T* y,
                     const Extents& y_strides, const Extents& shape,
                     int axis);

// out = logsumexp of x along `axis`. out_strides has one entry per axis of `shape`; its entry for
// `axis` is ignored.
template <class T>
void logsumexp_forward(const T* x, const Extents& x_strides, T* out,
                       const Extents& out_strides, const Extents& shape,
                       int axis);

// dx = gradient of softmax / log_softmax along `axis`, from the incoming gradient g and the forward
// output y (all three of `shape`; dx may be g).
template <class T>
void softmax_backward(SoftmaxKind kind, const T* g, const Extents& g_strides, const T* y,
                      const Extents& y_strides, T* dx, const Extents& dx_strides,
                      const Extents& shape, int axis);
// out = Shannon entropy along `axis` (strides as for logsumexp_forward) of softmax(x), or, with
// `probabilities`, of x itself (sum of entr(x)). An empty axis gives 0, the empty sum.
template <class T>
void entropy_forward(const T* x, const Extents& x_strides, T* out,
                     const Extents& out_strides, const Extents& shape,
                     int axis, bool probabilities);

}  // namespace fastloss
