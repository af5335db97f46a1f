// Sweeps down the class axis of the columns layout, where each lane of a vector is one position:
// the online max and sum of a block of positions, and the sweep that writes a block. Included by
// per-ISA kernel files only.
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/row_statistics-inl.hpp"
#include "simd/vector_math-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

// [Note: online sweep down the columns] The columns layout keeps one position per lane, and its
// sweeps run down the class axis, a class stride apart. That stride is often a power of two of
// 4 KiB or more (a batch of 1024 or 4096 positions), so the lines of one block of positions fall
// into a handful of cache sets: a block of a few hundred classes no longer fits in L2, however
// small, and each further sweep over it reads memory again (four to thirteen times the roofline,
// measured). So the columns take the max and the sum in one online sweep, as the online row sweep
// does in its lanes, and only softmax and log_softmax read the block a second time, to write it.
// The next classes' lines are asked for kColumnPrefetchClasses ahead: no hardware prefetcher
// follows such a stride.
constexpr int64_t kColumnPrefetchClasses = 16;

template <class T>
struct LanesMaxSum {
    Vec<T> max;
    Vec<T> sum;
    Vec<T> shifted_sum;  // kShiftedSum only
};

// Per lane k < lanes, position k of K consecutive vectors at x (lanes < K W only when K = 1):
// M = max_c x[c * class_stride + k] and S = sum_c exp(x - M), as row_online_max_sum defines them
// (-inf, 0 for a lane of -inf; S = NaN for M = +inf or a NaN). Lanes >= lanes load -inf. K vectors
// per class make each class's read K lines long, which the line-pair and stream prefetchers help
// with, and put K independent misses in flight.
// With kShiftedSum, also U = sum_c e_c (x_c - M), e_c = exp(x_c - M), a term being 0 where e_c is
// (entropy.cpp). The running U, taken relative to the shift sh, moves to a new shift sh' as the
// exponentials do, each term's d = x - sh growing by sh - sh': U' = f (U + (sh - sh') S), with
// f = exp(sh - sh').
template <int K, bool kShiftedSum, class S, class T = compute_t<S>>
void column_online_max_sum(const S* x, int64_t class_stride, int64_t lanes, int64_t classes, LanesMaxSum<T>* out) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V zero = V::broadcast(T(0));
    V m[K], s[K], total[K], u[K], u_total[K];
    for (int k = 0; k < K; ++k) {
        m[k] = V::broadcast(-infinity<T>());
        s[k] = total[k] = u[k] = u_total[k] = zero;
    }
    // Two-level sums, as in row_online_max_sum: a width-1 build would otherwise add every class
    // into one float.
    constexpr int kClassesPerFold = 64;
    for (int64_t c = 0; c < classes; ++c) {
        const S* p = x + c * class_stride;
        if (c + kColumnPrefetchClasses < classes) {
            prefetch_elements(p + kColumnPrefetchClasses * class_stride, K * W);
        }
        V v[K], m_new[K];
        bool moved = false;
        for (int k = 0; k < K; ++k) {
            v[k] = K == 1 && lanes < W ? vload_partial(p, lanes, -infinity<T>()) : vload(p + k * W);
            m_new[k] = max(m[k], v[k]);
            moved |= !all_lanes(equal(m[k], m_new[k]));
        }
        if (moved) {  // the maxima rarely move once a sweep is under way
            for (int k = 0; k < K; ++k) {
                const V f = online_rescale(m[k], m_new[k]);
                if constexpr (kShiftedSum) {
                    // Where f underflows to 0 the moved sum is 0, but delta S may have overflowed
                    // to -inf on the way (a max jumping from -3e38, a masked logit): 0, not NaN. A
                    // NaN or +inf keeps S NaN, so the result stays NaN as it must.
                    const V delta = online_shift(m[k]) - online_shift(m_new[k]);
                    const auto vanished = equal(f, zero);
                    u[k] = select(vanished, zero, (u[k] + delta * s[k]) * f);
                    u_total[k] = select(vanished, zero, (u_total[k] + delta * total[k]) * f);
                }
                s[k] = s[k] * f;
                total[k] = total[k] * f;
                m[k] = m_new[k];
            }
        }
        for (int k = 0; k < K; ++k) {
            const V d = v[k] - online_shift(m[k]);
            const V e = vexp_nonpositive(d);
            s[k] = s[k] + e;
            if constexpr (kShiftedSum) u[k] = u[k] + select(equal(e, zero), zero, e * d);
        }
        if ((c + 1) % kClassesPerFold == 0) {
            for (int k = 0; k < K; ++k) {
                total[k] = total[k] + s[k];
                u_total[k] = u_total[k] + u[k];
                s[k] = u[k] = zero;
            }
        }
    }
    for (int k = 0; k < K; ++k) out[k] = {m[k], total[k] + s[k], u_total[k] + u[k]};
}

// Positions are taken kColumnVectors vectors at a time, and the rest one vector at a time.
constexpr int kColumnVectors = 4;

// finish(j, count, lanes, stats): the count vectors of positions from j (lanes of them when
// count = 1), stats[k] those of vector k (column_online_max_sum's). line_aligned: see below.
template <bool kShiftedSum = false, class S, class Finish>
void for_each_column_block(const S* x, int64_t x_class_stride, int64_t columns, int64_t classes, bool line_aligned,
                           Finish&& finish) {
    using T = compute_t<S>;
    constexpr int64_t W = Vec<T>::width;
    LanesMaxSum<T> stats[kColumnVectors];
    int64_t j = 0;
    // With line_aligned, positions before x's first cache-line boundary go first, one partial
    // vector at a time, so that the vectors after them are whole lines when the class stride is a
    // multiple of one, and a streamed write sweep can stream them: NumPy's arrays start 16 bytes
    // past a line. The head costs one more sweep down the class axis per block of positions:
    // reductions that write nothing were slower for it (logsumexp over axis 0 of (32000, 4096)
    // float32 from NumPy, 61-64 -> 81-83 ms), while log_softmax gained (169-170 -> 145-146 ms).
    constexpr uintptr_t kLineBytes = 64;
    const uintptr_t misalignment = reinterpret_cast<uintptr_t>(x) % kLineBytes;
    if (line_aligned && misalignment != 0 && misalignment % sizeof(S) == 0) {
        const int64_t head = std::min<int64_t>(columns, int64_t((kLineBytes - misalignment) / sizeof(S)));
        while (j < head) {
            const int64_t lanes = std::min<int64_t>(W, head - j);
            column_online_max_sum<1, kShiftedSum>(x + j, x_class_stride, lanes, classes, stats);
            finish(j, 1, lanes, stats);
            j += lanes;
        }
    }
    for (; j + kColumnVectors * W <= columns; j += kColumnVectors * W) {
        column_online_max_sum<kColumnVectors, kShiftedSum>(x + j, x_class_stride, kColumnVectors * W, classes, stats);
        finish(j, kColumnVectors, kColumnVectors * W, stats);
    }
    for (; j < columns; j += W) {
        const int64_t lanes = columns - j < W ? columns - j : W;
        column_online_max_sum<1, kShiftedSum>(x + j, x_class_stride, lanes, classes, stats);
        finish(j, 1, lanes, stats);
    }
}

// A second sweep down the block of `count` vectors at column j: y_c = f(k, x_c) for every class
// (k: the vector), x's next lines prefetched as in the first. With `stream`, a class's vectors are
// stored non-temporally when together they are whole, aligned cache lines: an ordinary store a
// class stride away from the last first reads its line from memory. A line left partly written
// until the next block would be written to memory in pieces, so a block of one narrow vector
// (AVX2 float32, the half types) keeps ordinary stores.
template <class S, class F>
void write_column_block(const S* x, int64_t x_class_stride, S* y, int64_t y_class_stride, int64_t j, int64_t count,
                        int64_t lanes, int64_t classes, bool stream, F&& f) {
    using T = compute_t<S>;
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    constexpr int64_t kLineBytes = 64;
    const bool whole_lines = (count * W * int64_t(sizeof(S))) % kLineBytes == 0 && lanes == count * W &&
                             reinterpret_cast<uintptr_t>(y + j) % kLineBytes == 0 &&
                             (y_class_stride * int64_t(sizeof(S))) % kLineBytes == 0;
    const bool streamed = stream && whole_lines;
    for (int64_t c = 0; c < classes; ++c) {
        const S* p = x + c * x_class_stride + j;
        if (c + kColumnPrefetchClasses < classes) prefetch_elements(p + kColumnPrefetchClasses * x_class_stride, count * W);
        S* q = y + c * y_class_stride + j;
        if (lanes < W) {
            store_partial(q, lanes, f(0, vload_partial(p, lanes, T(0))));
            continue;
        }
        for (int64_t k = 0; k < count; ++k) {
            const V v = f(k, vload(p + k * W));
            if (streamed) store_stream(q + k * W, v); else store(q + k * W, v);
        }
    }
    if (streamed) stream_fence();
}

}  // namespace
}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
