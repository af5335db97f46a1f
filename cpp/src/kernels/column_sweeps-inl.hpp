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
//
// [Note: wide column runs] A sweep down one block of positions reads a few lines of each class,
// a class stride apart, and DRAM serves such short pieces at half its streaming bandwidth or less.
// So the sweeps take a run of blocks together, whose positions span up to kColumnRunBytes of each
// class row, and walk it class chunk by class chunk: kColumnChunkClasses classes of the first
// block, the same classes of the next, and so on, each block keeping its running state in memory
// between its chunks. Each class row is then read a run's width at a time, in order, and each
// block asks for its next chunk's lines (prefetch_column_chunk_ahead) while it reads this one's.
// A lane's arithmetic is the same in any order of the blocks, so the results do not depend on the
// run. Measured (BENCHMARKS.md's fourteenth and twenty-first sittings), summing or taking the
// log-sum-exp of (32000, 4096) float32 down axis 0 at 1 thread:
//  * on the AVX-512 Intel VM (2 threads): 39.5-46 ms one block at a time, 23.7 ms in runs of
//    4 KiB with chunks of 8 classes (chunks of 16: 25.8 ms; of 4: 26-27 ms);
//  * on Zen 4 (a scratch program calling these templates), logsumexp in runs of 4 KiB with the
//    lines fetched into L1 took 43 ms; in runs of 2, 4, 8 and 16 KiB with them fetched into L2,
//    40, 37, 35 and 33 ms; a plain sum of the same array read 10-15 GB/s in runs of 4 KiB
//    fetched into L1 and 21-27 GB/s in runs of 16 KiB fetched into L2.
// The work items of the columns layout are as wide ([Note: wide column items], position_loops.hpp).
constexpr int64_t kColumnRunBytes = 16384;
constexpr int64_t kColumnChunkClasses = 8;

// Asks for the lines of n elements of p, kColumnChunkClasses classes ahead of the class at p
// (class_stride apart), unless that class is past the last: the next chunk of a block's classes
// [Note: wide column runs]. A chunked sweep fetches into L2 only: a chunk of a run of whole class
// rows a power-of-two stride apart falls into a few L1 sets, and L1 would evict this chunk's lines
// to hold the next one's (prefetcht0 in runs of 4 KiB: 36-54 ms to sum (32000, 4096) float32 on
// Zen 4, prefetcht1: 26-34 ms). A block swept through all its classes in one chunk (few classes,
// kColumnNarrowBytes) fetches into L1, which measured faster there at 2 threads ((1000, 4096)
// float32: logsumexp 0.50 against 0.62 ms).
template <class S>
FASTLOSS_PREFETCH_HELPER void prefetch_column_chunk_ahead(const S* p, int64_t class_stride, int64_t c, int64_t classes,
                                                          int64_t n, bool one_chunk) {
    if (c + kColumnChunkClasses < classes) {
        if (one_chunk) {
            prefetch_elements<PrefetchInto::l1>(p + kColumnChunkClasses * class_stride, n);
        } else {
            prefetch_elements<PrefetchInto::l2>(p + kColumnChunkClasses * class_stride, n);
        }
    }
}

template <class T>
struct LanesMaxSum {
    Vec<T> max;
    Vec<T> sum;
    Vec<T> shifted_sum;  // kShiftedSum only
};

// The running state of one vector of positions in column_online_max_sum: the max, the sum of the
// classes since the last fold and the folded total, and the same two for U.
template <class T>
struct ColumnOnlineState {
    Vec<T> m, s, total, u, u_total;
    static ColumnOnlineState start() {
        const Vec<T> zero = Vec<T>::broadcast(T(0));
        return {Vec<T>::broadcast(-infinity<T>()), zero, zero, zero, zero};
    }
};

// Per lane k < lanes, position k of K consecutive vectors at x (lanes < K W only when K = 1):
// M = max_c x[c * class_stride + k] and S = sum_c exp(x - M), as row_online_max_sum defines them
// (-inf, 0 for a lane of -inf; S = NaN for M = +inf or a NaN). Lanes >= lanes load -inf. K vectors
// per class make each class's read K lines long and put K independent misses in flight.
// This steps the classes [c_begin, c_end) of `classes` into `state` (ColumnOnlineState::start()
// before the first; column_online_result after the last), so that a run can interleave its
// blocks, and asks for the lines of the block's next chunk [Note: wide column runs].
// With kShiftedSum, also U = sum_c e_c (x_c - M), e_c = exp(x_c - M), a term being 0 where e_c is
// (entropy.cpp). The running U, taken relative to the shift sh, moves to a new shift sh' as the
// exponentials do, each term's d = x - sh growing by sh - sh': U' = f (U + (sh - sh') S), with
// f = exp(sh - sh').
template <int K, bool kShiftedSum, class S, class T = compute_t<S>>
void column_online_step(const S* x, int64_t class_stride, int64_t lanes, int64_t classes, int64_t c_begin,
                        int64_t c_end, ColumnOnlineState<T>* state) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V zero = V::broadcast(T(0));
    // The folded totals stay in `state`, touched once in kClassesPerFold classes or when a max
    // moves, not in registers beside the maxima, shifts, sums and the exponential's constants:
    // logsumexp of (32000, 4096) float32 over axis 0, 1 thread, 37.0 -> 33.1 ms (Zen 4).
    V m[K], shift[K], s[K], u[K];
    for (int k = 0; k < K; ++k) {
        m[k] = state[k].m;
        shift[k] = online_shift(m[k]);  // follows m: a compare per class would run on the FMA pipes
        s[k] = state[k].s;
        u[k] = kShiftedSum ? state[k].u : zero;
    }
    // Two-level sums, as in row_online_max_sum: a width-1 build would otherwise add every class
    // into one float. Folds fall on absolute class indices, whatever the chunks.
    constexpr int kClassesPerFold = 64;
    const bool one_chunk = c_begin == 0 && c_end == classes;
    for (int64_t c = c_begin; c < c_end; ++c) {
        const S* p = x + c * class_stride;
        prefetch_column_chunk_ahead(p, class_stride, c, classes, K * W, one_chunk);
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
                    const V delta = shift[k] - online_shift(m_new[k]);
                    const auto vanished = equal(f, zero);
                    u[k] = select(vanished, zero, (u[k] + delta * s[k]) * f);
                    state[k].u_total = select(vanished, zero, (state[k].u_total + delta * state[k].total) * f);
                }
                s[k] = s[k] * f;
                state[k].total = state[k].total * f;
                m[k] = m_new[k];
                shift[k] = online_shift(m[k]);
            }
        }
        for (int k = 0; k < K; ++k) {
            const V d = v[k] - shift[k];
            const V e = vexp_nonpositive(d);
            s[k] = s[k] + e;
            if constexpr (kShiftedSum) u[k] = shifted_term(e, d, u[k]);
        }
        if ((c + 1) % kClassesPerFold == 0) {
            for (int k = 0; k < K; ++k) {
                state[k].total = state[k].total + s[k];
                s[k] = zero;
                if constexpr (kShiftedSum) {
                    state[k].u_total = state[k].u_total + u[k];
                    u[k] = zero;
                }
            }
        }
    }
    for (int k = 0; k < K; ++k) {
        state[k].m = m[k];
        state[k].s = s[k];
        if constexpr (kShiftedSum) state[k].u = u[k];
    }
}

template <class T>
LanesMaxSum<T> column_online_result(const ColumnOnlineState<T>& state) {
    return {state.m, state.total + state.s, state.u_total + state.u};
}

// Positions are taken kColumnVectors vectors at a time, and the rest one vector at a time.
constexpr int kColumnVectors = 4;

// The blocks of positions a columns kernel takes, in order: block(j, count, lanes) for the count
// vectors of positions from j, count being kColumnVectors or 1 (lanes < W only when count = 1).
// With line_aligned, positions before x's first cache-line boundary go first, one partial
// vector at a time, so that the vectors after them are whole lines when the class stride is a
// multiple of one, and a streamed write sweep can stream them: NumPy's arrays start 16 bytes
// past a line.
template <class S, class Block>
void for_each_column_range(const S* x, int64_t columns, bool line_aligned, Block&& block) {
    constexpr int64_t W = Vec<compute_t<S>>::width;
    int64_t j = 0;
    constexpr uintptr_t kLineBytes = 64;
    const uintptr_t misalignment = reinterpret_cast<uintptr_t>(x) % kLineBytes;
    if (line_aligned && misalignment != 0 && misalignment % sizeof(S) == 0) {
        const int64_t head = std::min<int64_t>(columns, int64_t((kLineBytes - misalignment) / sizeof(S)));
        while (j < head) {
            const int64_t lanes = std::min<int64_t>(W, head - j);
            block(j, 1, lanes);
            j += lanes;
        }
    }
    for (; j + kColumnVectors * W <= columns; j += kColumnVectors * W) block(j, kColumnVectors, kColumnVectors * W);
    for (; j < columns; j += W) block(j, 1, columns - j < W ? columns - j : W);
}

// One block of for_each_column_range.
struct ColumnBlock {
    int64_t j, count, lanes;
};

// The most blocks in one run [Note: wide column runs]: as many of kColumnVectors vectors as span
// kRunBytes of a class row (a run's head and tail blocks are narrower), and at most
// kMaxColumnRunBlocks: a writing kernel keeps a few vectors of every block of a run on the stack.
constexpr int64_t kMaxColumnRunBlocks = 64;

template <class S, int64_t kRunBytes = kColumnRunBytes>
constexpr int64_t column_run_blocks() {
    constexpr int64_t block_bytes = kColumnVectors * Vec<compute_t<S>>::width * int64_t(sizeof(S));
    return std::clamp<int64_t>(kRunBytes / block_bytes, 1, kMaxColumnRunBlocks);
}

// A block that reads at most this many bytes over all its classes stays in L2 between its
// classes' lines, and is swept one block at a time, all classes in one chunk, where that measured
// faster than runs (BENCHMARKS.md's fourteenth sitting; (C, 4096) over axis 0 on AVX-512):
//  * reductions (no sweep of their own to write): float32 and float64 logsumexp at 1000 classes
//    (256 KB per block) 10-13% faster so; at 2000 and 4000 neither way won in both dtypes, at 8000
//    the runs took 0.5-0.7 of the time;
//  * writing kernels: see kColumnNarrowWriterBytes.
// On Zen 4 (twenty-fourth sitting) the reductions still took 0.90-0.96 of the runs' time at 1000
// and 500 classes this way (float32, float64, bfloat16; 1 and 2 threads).
constexpr int64_t kColumnNarrowBytes = 256 * 1024;

// The same for the writing kernels (log_softmax, softmax, cross_entropy's gradient), whose second
// sweep rereads the block: no more than 64 KB a block, 256 float32 classes or 512 half ones. On the
// Intel AVX-512 VM (fourteenth sitting) blocks of 256 KB (1000 float32 classes) were 5-15% faster
// one at a time, but on Zen 4, now that runs are whole 16 KiB items (twenty-first sitting), runs
// took 0.65-0.77 of their time at 1000 float32 classes, 0.85-1.02 at 1000 bfloat16 ones and
// 0.78-0.97 at 500 float32 ones, 1 and 2 threads; at 250 float32 classes (0.73-1.02) and 500 half
// ones (0.77-1.04) neither way won (twenty-fourth sitting). With double, runs took 0.64-0.75 of
// the time at 1000 classes on the Intel VM, so float64 always takes runs.
constexpr int64_t kColumnNarrowWriterBytes = 64 * 1024;

template <class S, int64_t kNarrowBytes = kColumnNarrowBytes>
bool column_block_stays_in_cache(int64_t classes) {
    constexpr int64_t block_bytes = kColumnVectors * Vec<compute_t<S>>::width * int64_t(sizeof(S));
    return classes <= kNarrowBytes / block_bytes;
}

// The blocks of for_each_column_range, handed to run(blocks, n) up to column_run_blocks<S, kRunBytes>()
// at a time, or one at a time with `narrow` (see kColumnNarrowBytes).
template <int64_t kRunBytes = kColumnRunBytes, class S, class Run>
void for_each_column_run(const S* x, int64_t columns, bool line_aligned, bool narrow, Run&& run) {
    constexpr int64_t kMaxBlocks = column_run_blocks<S, kRunBytes>();
    const int64_t run_blocks = narrow ? 1 : kMaxBlocks;
    ColumnBlock blocks[kMaxBlocks];
    int64_t n = 0;
    for_each_column_range(x, columns, line_aligned, [&](int64_t j, int64_t count, int64_t lanes) {
        blocks[n++] = {j, count, lanes};
        if (n == run_blocks) {
            run(static_cast<const ColumnBlock*>(blocks), n);
            n = 0;
        }
    });
    if (n > 0) run(static_cast<const ColumnBlock*>(blocks), n);
}

// Walks the classes of a run in chunks [Note: wide column runs]: step(b, c_begin, c_end) for each
// block b < n of each chunk; a run of one block takes every class in one chunk.
template <class Step>
void sweep_column_run(int64_t n, int64_t classes, Step&& step) {
    const int64_t chunk = n == 1 ? classes : kColumnChunkClasses;
    for (int64_t c0 = 0; c0 < classes; c0 += chunk) {
        const int64_t c1 = classes - c0 > chunk ? c0 + chunk : classes;
        for (int64_t b = 0; b < n; ++b) step(b, c0, c1);
    }
}

// Whether a writing kernel sweeps one block at a time (kColumnNarrowWriterBytes).
template <class S>
bool column_writer_is_narrow(int64_t classes) {
    return sizeof(compute_t<S>) == sizeof(float) && column_block_stays_in_cache<S, kColumnNarrowWriterBytes>(classes);
}

// For each run of for_each_column_run: finish(b, j, count, lanes, stats) for its blocks b < n in
// order, stats[k] being the max and sums of vector k of block b (column_online_step), and then
// after_run(blocks, n), where a writing kernel writes the run (write_column_run). `narrow`: see
// kColumnNarrowBytes (column_writer_is_narrow for the writing kernels).
template <bool kShiftedSum = false, class S, class Finish, class AfterRun>
void for_each_column_run_stats(const S* x, int64_t x_class_stride, int64_t columns, int64_t classes,
                               bool line_aligned, Finish&& finish, AfterRun&& after_run, bool narrow) {
    using T = compute_t<S>;
    constexpr int64_t kMaxBlocks = column_run_blocks<S>();
    for_each_column_run(x, columns, line_aligned, narrow, [&](const ColumnBlock* blocks, int64_t n) {
        ColumnOnlineState<T> state[kMaxBlocks][kColumnVectors];
        for (int64_t b = 0; b < n; ++b) {
            for (int k = 0; k < kColumnVectors; ++k) state[b][k] = ColumnOnlineState<T>::start();
        }
        sweep_column_run(n, classes, [&](int64_t b, int64_t c0, int64_t c1) {
            const ColumnBlock& block = blocks[b];
            if (block.count == kColumnVectors) {
                column_online_step<kColumnVectors, kShiftedSum>(x + block.j, x_class_stride, block.lanes, classes, c0,
                                                                c1, state[b]);
            } else {
                column_online_step<1, kShiftedSum>(x + block.j, x_class_stride, block.lanes, classes, c0, c1,
                                                   state[b]);
            }
        });
        for (int64_t b = 0; b < n; ++b) {
            LanesMaxSum<T> stats[kColumnVectors];
            for (int k = 0; k < blocks[b].count; ++k) stats[k] = column_online_result(state[b][k]);
            finish(b, blocks[b].j, blocks[b].count, blocks[b].lanes, static_cast<const LanesMaxSum<T>*>(stats));
        }
        after_run(blocks, n);
    });
}

// finish(j, count, lanes, stats) for each block of for_each_column_range, in order (see
// for_each_column_run_stats), for the kernels that write no sweep of their own.
template <bool kShiftedSum = false, class S, class Finish>
void for_each_column_block(const S* x, int64_t x_class_stride, int64_t columns, int64_t classes, Finish&& finish) {
    const bool narrow = column_block_stays_in_cache<S>(classes);
    for_each_column_run_stats<kShiftedSum>(
        x, x_class_stride, columns, classes, false,
        [&](int64_t, int64_t j, int64_t count, int64_t lanes, const auto* stats) { finish(j, count, lanes, stats); },
        [](const ColumnBlock*, int64_t) {}, narrow);
}

// Whether the count vectors of positions from j (lanes of them) are whole, aligned cache lines of
// y in every class, so that a write sweep may store them non-temporally.
template <class S>
bool whole_column_lines(const S* y, int64_t y_class_stride, int64_t j, int64_t count, int64_t lanes) {
    constexpr int64_t W = Vec<compute_t<S>>::width;
    constexpr int64_t kLineBytes = 64;
    return (count * W * int64_t(sizeof(S))) % kLineBytes == 0 && lanes == count * W &&
           reinterpret_cast<uintptr_t>(y + j) % kLineBytes == 0 && (y_class_stride * int64_t(sizeof(S))) % kLineBytes == 0;
}

// streamed[b] for each block b < n of a run: whether a write sweep with `stream` stores block b
// of y non-temporally (whole_column_lines). Returns whether any block is, for the closing fence.
template <class S>
bool streamed_column_blocks(const S* y, int64_t y_class_stride, const ColumnBlock* blocks, int64_t n, bool stream,
                            bool* streamed) {
    bool any = false;
    for (int64_t b = 0; b < n; ++b) {
        streamed[b] = stream && whole_column_lines(y, y_class_stride, blocks[b].j, blocks[b].count, blocks[b].lanes);
        any |= streamed[b];
    }
    return any;
}

// The second sweep of a run of blocks (for_each_column_run), in the same chunks of classes
// [Note: wide column runs]: y_c = f(b, k, x_c) for vector k of block b and every class c. With
// `stream`, a block's vectors are stored non-temporally when together they are whole, aligned
// cache lines (whole_column_lines): an ordinary store a class stride away from the last first
// reads its line from memory. A line left partly written until the next block would be written to
// memory in pieces, so a block of one narrow vector (AVX2 float32, the half types) keeps ordinary
// stores.
template <class S, class F>
void write_column_run(const S* x, int64_t x_class_stride, S* y, int64_t y_class_stride, const ColumnBlock* blocks,
                      int64_t n, int64_t classes, bool stream, F&& f) {
    using T = compute_t<S>;
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    constexpr int64_t kMaxBlocks = column_run_blocks<S>();
    bool streamed[kMaxBlocks];
    const bool any_streamed = streamed_column_blocks(y, y_class_stride, blocks, n, stream, streamed);
    sweep_column_run(n, classes, [&](int64_t b, int64_t c0, int64_t c1) {
        const ColumnBlock& block = blocks[b];
        for (int64_t c = c0; c < c1; ++c) {
            const S* p = x + c * x_class_stride + block.j;
            prefetch_column_chunk_ahead(p, x_class_stride, c, classes, block.count * W, n == 1);
            S* q = y + c * y_class_stride + block.j;
            if (block.lanes < W) {
                store_partial(q, block.lanes, f(b, 0, vload_partial(p, block.lanes, T(0))));
                continue;
            }
            for (int64_t k = 0; k < block.count; ++k) {
                const V v = f(b, k, vload(p + k * W));
                if (streamed[b]) store_stream(q + k * W, v); else store(q + k * W, v);
            }
        }
    });
    if (any_streamed) stream_fence();
}

}  // namespace
}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
