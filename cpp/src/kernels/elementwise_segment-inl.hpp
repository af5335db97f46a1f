// The loop shared by the elementwise losses (kl_div.cpp, binary_cross_entropy.cpp, focal_loss.cpp): one segment of
// broadcast operands, W = Vec<T>::width elements at a time, each operand read exactly once.
//
// A loss is a functor with `V operator()(V x, V t, V w, V pw) const` (the loss) and
// `V operator()(V x, V t, V w, V pw, V& d) const` (the loss, and d = its derivative with respect
// to x, weight included, computed from the same intermediate values), `input_fill` and
// `target_fill` (values that keep a padded tail lane finite and in range) and `checks_range`
// (whether input and target must lie in [0, 1]). Absent operands (weight, pos_weight) are 1.
// A loss may also have `V operator()(V x, V t) const` and `V operator()(V x, V t, V& d) const`,
// its values without weight and pos_weight (has_unweighted_form): the contiguous loop takes those
// when neither operand is given, the common call, and skips the weighting's arithmetic.
//
// Two instantiations of the loop: `contiguous` (every present operand has stride 1: plain and
// masked loads, the hot path) and the general one, where each operand is loaded by its stride:
// 0 repeats one value (a broadcast axis), 1 is a vector load, anything else is gathered through a
// small stack buffer (and the output scattered back). Each exists with and without the gradient
// (s.grad): with it, grad = d * g (g = grad_output or grad_scale) is stored in the same pass, after
// the input has been loaded, so grad may be the input itself.
//
// The contiguous loop prefetches each operand it reads kPrefetchAheadBytes ahead ([Note: prefetch
// ahead in the online sweep]); segments of a row follow each other, so the prefetch runs on past
// a segment's end into the next.
//
// Sums: losses are added in a vector accumulator of type T for kSumBlock elements, then the
// block's total joins a float64 sum. Every lane of a float32 accumulator thus adds at most
// kSumBlock / W terms, and the result depends only on the segment, never on threads.
#pragma once

#include <type_traits>
#include <utility>

#include "fastloss/kernel_table.hpp"
#include "kernels/prefetch-inl.hpp"
#include "simd/vector_math-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

constexpr int64_t kSumBlock = 512;

// Whether Loss has the unweighted forms described above.
template <class Loss, class V, class = void>
struct has_unweighted_form : std::false_type {};
template <class Loss, class V>
struct has_unweighted_form<Loss, V,
                           std::void_t<decltype(std::declval<const Loss&>()(std::declval<V>(), std::declval<V>()))>>
    : std::true_type {};

template <bool Contiguous, class S, class T = compute_t<S>>
inline Vec<T> load_operand(const S* p, int64_t stride, int64_t i, int64_t lanes, T fill) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    if (Contiguous || stride == 1) return lanes == W ? vload(p + i) : vload_partial(p + i, lanes, fill);
    if (stride == 0) return V::broadcast(T(*p));
    S buf[W];
    for (int64_t k = 0; k < W; ++k) buf[k] = k < lanes ? p[(i + k) * stride] : S(fill);
    return vload(buf);
}

template <bool Contiguous, class S, class T = compute_t<S>>
inline void store_operand(S* p, int64_t stride, int64_t i, int64_t lanes, Vec<T> v) {
    constexpr int64_t W = Vec<T>::width;
    if (Contiguous || stride == 1) {
        if (lanes == W) store(p + i, v);
        else store_partial(p + i, lanes, v);
        return;
    }
    S buf[W];
    store(buf, v);
    for (int64_t k = 0; k < lanes; ++k) p[(i + k) * stride] = buf[k];
}

// Lanes where a value lies outside [0, 1], NaN included: !(0 <= v <= 1).
template <class V>
inline auto outside_unit_interval(V v) {
    using T = typename V::Scalar;
    return mask_or(mask_or(less(v, V::broadcast(T(0))), less(V::broadcast(T(1)), v)), is_nan(v));
}

template <bool Contiguous, bool WithGrad, bool Unweighted, class S, class Loss>
SegmentResult elementwise_segment_loop(const ElementwiseSegment<S>& s, int64_t n, const Loss& loss) {
    using T = compute_t<S>;
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V zero = V::broadcast(T(0)), one = V::broadcast(T(1));
    constexpr int64_t kAhead = kPrefetchAheadBytes / int64_t(sizeof(S));
    SegmentResult result;
    V bad_input = zero, bad_target = zero;  // 1 in a lane that has seen an out-of-range value
    for (int64_t block = 0; block < n; block += kSumBlock) {
        const int64_t block_end = n - block < kSumBlock ? n : block + kSumBlock;
        V acc = zero;
        for (int64_t i = block; i < block_end; i += W) {
            const int64_t lanes = block_end - i < W ? block_end - i : W;
            if constexpr (Contiguous) {
                const S* const read[] = {s.input, s.target, s.weight, s.pos_weight, s.grad_output};
                for (const S* operand : read) {
                    if (operand) prefetch_element_at(operand, i + kAhead);
                }
            }
            const V x = load_operand<Contiguous>(s.input, s.input_stride, i, lanes, Loss::input_fill);
            const V t = load_operand<Contiguous>(s.target, s.target_stride, i, lanes, Loss::target_fill);
            const V w = !Unweighted && s.weight ? load_operand<Contiguous>(s.weight, s.weight_stride, i, lanes, T(1))
                                                : one;
            const V pw = !Unweighted && s.pos_weight
                             ? load_operand<Contiguous>(s.pos_weight, s.pos_weight_stride, i, lanes, T(1))
                             : one;
            if constexpr (Loss::checks_range) {
                bad_input = select(outside_unit_interval(x), one, bad_input);
                bad_target = select(outside_unit_interval(t), one, bad_target);
            }
            V value;
            if constexpr (WithGrad) {
                V d;
                if constexpr (Unweighted) {
                    value = loss(x, t, d);
                } else {
                    value = loss(x, t, w, pw, d);
                }
                const V g = s.grad_output
                                ? load_operand<Contiguous>(s.grad_output, s.grad_output_stride, i, lanes, T(0))
                                : V::broadcast(s.grad_scale);
                store_operand<Contiguous>(s.grad, s.grad_stride, i, lanes, d * g);
            } else if constexpr (Unweighted) {
                value = loss(x, t);
            } else {
                value = loss(x, t, w, pw);
            }
            if (s.out) {
                store_operand<Contiguous>(s.out, s.out_stride, i, lanes, value);
            } else {
                if (lanes < W) value = select(V::first_lanes(lanes), value, zero);
                acc = acc + value;
            }
        }
        if (!s.out) result.sum += double(reduce_sum(acc));
    }
    if constexpr (Loss::checks_range) {
        result.input_out_of_range = reduce_max(bad_input) > T(0);
        result.target_out_of_range = reduce_max(bad_target) > T(0);
    }
    return result;
}

template <class S, class Loss>
SegmentResult elementwise_segment(const ElementwiseSegment<S>& s, int64_t n, const Loss& loss) {
    auto unit = [](const void* p, int64_t stride) { return p == nullptr || stride == 1; };
    const bool contiguous = unit(s.input, s.input_stride) && unit(s.target, s.target_stride) &&
                            unit(s.weight, s.weight_stride) && unit(s.pos_weight, s.pos_weight_stride) &&
                            unit(s.out, s.out_stride) && unit(s.grad, s.grad_stride) &&
                            unit(s.grad_output, s.grad_output_stride);
    if constexpr (has_unweighted_form<Loss, Vec<compute_t<S>>>::value) {
        if (contiguous && !s.weight && !s.pos_weight) {
            return s.grad ? elementwise_segment_loop<true, true, true>(s, n, loss)
                          : elementwise_segment_loop<true, false, true>(s, n, loss);
        }
    }
    if (s.grad) {
        return contiguous ? elementwise_segment_loop<true, true, false>(s, n, loss)
                          : elementwise_segment_loop<false, true, false>(s, n, loss);
    }
    return contiguous ? elementwise_segment_loop<true, false, false>(s, n, loss)
                      : elementwise_segment_loop<false, false, false>(s, n, loss);
}

}  // namespace
}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
