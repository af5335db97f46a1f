// Per-row statistics of a softmax, shared by every kernel that normalises a row: the max, and the
// sum of exponentials shifted by it. Included by per-ISA kernel files only.
#pragma once

#include <cstdint>
#include <limits>

#include "kernels/prefetch-inl.hpp"
#include "simd/vector_math-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

// Four independent accumulators hide the latency of max/add across loop iterations.
template <class S, class T = compute_t<S>>
T row_max(const S* x, int64_t n) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const V neg_inf = V::broadcast(-infinity<T>());
    V m0 = neg_inf, m1 = neg_inf, m2 = neg_inf, m3 = neg_inf;
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        m0 = max(m0, vload(x + i));
        m1 = max(m1, vload(x + i + W));
        m2 = max(m2, vload(x + i + 2 * W));
        m3 = max(m3, vload(x + i + 3 * W));
    }
    for (; i + W <= n; i += W) m0 = max(m0, vload(x + i));
    if (i < n) m1 = max(m1, vload_partial(x + i, n - i, -infinity<T>()));
    return reduce_max(max(max(m0, m1), max(m2, m3)));
}

// Row r + 1 of `rows` rows `stride` apart, given row r; null after the last: the row that
// row_max_sum and row_sum_exp prefetch.
template <class S>
inline const S* next_row(const S* row, int64_t r, int64_t rows, int64_t stride) {
    return r + 1 < rows ? row + stride : nullptr;
}

// What row_sum_exp may assume of its exponents x_c - shift: shift_is_max (shift >= every x_c, so
// they are <= 0 or NaN: the cheaper vexp_nonpositive serves; a row whose NaN hid its true max
// from row_max sums to NaN whatever the other terms are) or any_shift.
enum class ShiftKind { shift_is_max, any_shift };

// sum_c exp(x_c - shift); if y is not null, also stores y_c = exp(x_c - shift), in the storage
// type or in the compute type. If prefetch is not null, the n elements from it (the next row) are
// fetched into the cache along the way.
template <ShiftKind kShift = ShiftKind::shift_is_max, class S, class T = compute_t<S>, class Y>
T row_sum_exp(const S* x, T shift, Y* y, int64_t n, const S* prefetch = nullptr) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    const auto exp_of = [](V a) {
        if constexpr (kShift == ShiftKind::shift_is_max) {
            return vexp_nonpositive(a);
        } else {
            return vexp(a);
        }
    };
    const V sh = V::broadcast(shift);
    const V zero = V::broadcast(T(0));
    V s0 = zero, s1 = zero, s2 = zero, s3 = zero;
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        if (prefetch) prefetch_elements(prefetch + i, 4 * W);
        const V e0 = exp_of(vload(x + i) - sh);
        const V e1 = exp_of(vload(x + i + W) - sh);
        const V e2 = exp_of(vload(x + i + 2 * W) - sh);
        const V e3 = exp_of(vload(x + i + 3 * W) - sh);
        if (y) {
            store(y + i, e0);
            store(y + i + W, e1);
            store(y + i + 2 * W, e2);
            store(y + i + 3 * W, e3);
        }
        s0 = s0 + e0;
        s1 = s1 + e1;
        s2 = s2 + e2;
        s3 = s3 + e3;
    }
    for (; i + W <= n; i += W) {
        const V e = exp_of(vload(x + i) - sh);
        if (y) store(y + i, e);
        s0 = s0 + e;
    }
    if (prefetch && i < n) prefetch_elements(prefetch + i, n - i);
    if (i < n) {
        // Padding lanes load -inf, whose exp(-inf - shift) is 0 unless shift is -inf too; then
        // every real value is -inf as well and the row is NaN regardless.
        const V e = exp_of(vload_partial(x + i, n - i, -infinity<T>()) - sh);
        if (y) store_partial(y + i, n - i, e);
        s1 = s1 + e;
    }
    return reduce_sum((s0 + s1) + (s2 + s3));
}

// [Note: online softmax] One sweep computes the max M and the sum S = sum_c exp(x_c - M) of a row
// (Milakov and Gimelshein, arXiv:1805.02867), so a row streaming in from DRAM is read once while the
// exponentials are computed. Each lane keeps its own running max m and sum s; per block of four
// vectors the block's max is taken first and s is rescaled once by exp(m_old - m_new), so the extra
// cost is one exp per 4W elements. A lane that has seen only -inf keeps s = 0 (its exponentials are
// taken relative to 0, never -inf - -inf). Lanes are merged at the end in a fixed order.
// A NaN anywhere makes S NaN. If M = +inf, S is NaN as well (inf - inf); callers that need
// torch.logsumexp's +inf there recompute that rare row.
template <class T>
struct RowMaxSum {
    T max;
    T sum;
};

// The shift an online sweep takes its exponentials relative to: the running max m, or 0 while m is
// still -inf.
template <class T>
Vec<T> online_shift(Vec<T> m) {
    return select(equal(m, Vec<T>::broadcast(-infinity<T>())), Vec<T>::broadcast(T(0)), m);
}

// The factor exp(m_old - m_new) that moves a running sum from one max to a larger one (1 where the
// max did not move).
template <class T>
Vec<T> online_rescale(Vec<T> m_old, Vec<T> m_new) {
    return select(equal(m_old, m_new), Vec<T>::broadcast(T(1)), vexp_nonpositive(m_old - online_shift(m_new)));
}

// u + e d, for e = exp(d) and d <= 0 or NaN: the term of entropy's U = sum_c e_c (x_c - m), which is
// 0 where e is (d = -inf gives 0, not 0 * -inf = NaN). d is clamped below at the lowest finite
// value, as torch.distributions.Categorical clamps its normalised logits: then e = 0 gives 0 * a
// finite d, in two operations (a max and a multiply-add) where a select of the product by e = 0
// took four. max returns its second operand for NaN, so a NaN d stays NaN.
template <class V>
inline V shifted_term(V e, V d, V u) {
    using T = typename V::Scalar;
    return fma(e, max(V::broadcast(std::numeric_limits<T>::lowest()), d), u);
}

// One block of an online sweep, its four vectors v: m holds the running lane maxima and shift
// their online_shift (start both at -inf and 0). When some lane's max moves, moved(m, m_new) is
// called before m and shift follow; then block(v, shift). The shift is kept rather than taken
// from m per block: its compare would run on the FMA pipes that bound these loops on Zen 4.
// Forced inline, as are the other per-block helpers here: once the online sweep's pieces became
// functions of their own GCC stopped inlining some of them, and a call per block made logsumexp
// float64 1.35x slower.
template <class T, class Moved, class Block>
[[gnu::always_inline]] inline void online_block(const Vec<T>* v, Vec<T>& m, Vec<T>& shift, Moved&& moved,
                                                Block&& block) {
    const Vec<T> m_new = max(m, max(max(v[0], v[1]), max(v[2], v[3])));
    if (!all_lanes(equal(m, m_new))) {  // the max rarely moves once a row is under way
        moved(m, m_new);
        m = m_new;
        shift = online_shift(m);
    }
    block(v, shift);
}

// Loads the block of four vectors at x + i into v, a row of n elements, and asks for the row's
// line kPrefetchAheadBytes ahead, or twice that far into L2 only ([Note: the next row fetched into
// L2 while a row is written] in overlapped_rows-inl.hpp).
template <PrefetchInto into = PrefetchInto::l1, class S, class T>
[[gnu::always_inline]] inline void load_block_fetching_ahead(const S* x, int64_t i, int64_t n, Vec<T>* v) {
    constexpr int64_t W = Vec<T>::width;
    constexpr int64_t kAheadBytes = into == PrefetchInto::l1 ? kPrefetchAheadBytes : 2 * kPrefetchAheadBytes;
    constexpr int64_t kAhead = kAheadBytes / int64_t(sizeof(S));  // [Note: prefetch ahead ...]
    if constexpr (4 * W * int64_t(sizeof(S)) >= 64) {  // a cache line or more per block
        if (i + kAhead + 4 * W <= n) prefetch_elements<into>(x + i + kAhead, 4 * W);
    }
    for (int k = 0; k < 4; ++k) v[k] = vload(x + i + k * W);
}

// The block loop of an online sweep over a row of n elements: step(v, i) takes each block's four
// vectors, the block starting at element i. Returns where the whole blocks end; the caller takes
// the rest a vector at a time.
template <class T, class S, class Step>
int64_t online_blocks(const S* x, int64_t n, Step&& step) {
    constexpr int64_t W = Vec<T>::width;
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        Vec<T> v[4];
        load_block_fetching_ahead(x, i, n, v);
        step(static_cast<const Vec<T>*>(v), i);
    }
    return i;
}

// [Note: staged exponentials] A writer that needs exp(x_c - M) (softmax, cross_entropy's
// gradient) can have the online sweep keep the exponentials it takes, exp(x_c - m), m being the
// running max of c's lane when c was taken, instead of taking them again once M is known. Then
//   exp(x_c - M) = exp(x_c - m) * exp(m - M),
// one factor per lane and entry of the sweep (a block of four vectors, then the rest a vector at a
// time), which changes only in the entries where some lane's max moved (with random logits, about
// one in eight of a 32000-class row's float32 blocks). So the sweep records only those: each one's
// entry and its lanes' new maxima. An ExpStage holds this for one row:
//   - `exps`: room for n + W values;
//   - `moved_entries`: the entries where a max moved, in order, then kNoStagedEntry;
//   - `moved_maxima`: 2W values per moved entry, its maxima in the first W, room for the writer's
//     factors twice over ([Note: a staged row's factors]), and room for one such slot before the
//     first.
// staged_entry() numbers the entries.
template <class T>
struct ExpStage {
    T* exps;
    T* moved_maxima;
    int64_t* moved_entries;
};

constexpr int64_t kNoStagedEntry = -1;  // ends an ExpStage's moved_entries

// The entry of a row's online sweep that holds group g (its elements [gW, gW + W)), the row's
// whole blocks of four vectors numbering `blocks`.
inline int64_t staged_entry(int64_t g, int64_t blocks) { return g < 4 * blocks ? g / 4 : g - 3 * blocks; }

// The running state of an online sweep for a row's max and sum ([Note: online softmax]): blocks
// are added in order from the row's start (add_block), then the rest a vector at a time
// (add_rest), so that a row's bits do not depend on where its sweep runs. Given an ExpStage, they
// also stage the row's exponentials ([Note: staged exponentials]); the sums are the same.
template <class T>
class OnlineMaxSum {
    using V = Vec<T>;
    static constexpr int64_t W = V::width;
    // Two-level sum: blocks add into s_, which is folded into total_ every kBlocksPerFold blocks,
    // so rounding error grows with n / kBlocksPerFold + kBlocksPerFold instead of n (a width-1
    // scalar build would otherwise add 32000 terms into one float).
    static constexpr int kBlocksPerFold = 16;

  public:
    // The block of four vectors v at element i of the row.
    [[gnu::always_inline]] void add_block(const V* v, const ExpStage<T>* stage = nullptr, int64_t i = 0) {
        online_block(
            v, m_, shift_,
            [&](V m_old, V m_new) __attribute__((always_inline)) {
                const V f = online_rescale(m_old, m_new);
                s_ = s_ * f;
                total_ = total_ * f;
                if (stage) record_move(stage, i / (4 * W), m_new);
            },
            [&](const V* u, V sh) __attribute__((always_inline)) {
                V e[4];
                for (int k = 0; k < 4; ++k) e[k] = vexp_nonpositive(u[k] - sh);
                if (stage) {
                    for (int k = 0; k < 4; ++k) store(stage->exps + i + k * W, e[k]);
                }
                s_ = s_ + ((e[0] + e[1]) + (e[2] + e[3]));
                if (++blocks_ == kBlocksPerFold) {
                    total_ = total_ + s_;
                    s_ = V::broadcast(T(0));
                    blocks_ = 0;
                }
            });
    }

    // The elements [i, n) of row x, after add_block has taken those before i.
    template <class S>
    void add_rest(const S* x, int64_t i, int64_t n, const ExpStage<T>* stage = nullptr) {
        const int64_t blocks = i / (4 * W);
        for (; i < n; i += W) {
            const V v = i + W <= n ? vload(x + i) : vload_partial(x + i, n - i, -infinity<T>());
            const V m_new = max(m_, v);
            const V f = online_rescale(m_, m_new);
            shift_ = online_shift(m_new);
            const V e = vexp_nonpositive(v - shift_);
            s_ = s_ * f + e;
            total_ = total_ * f;
            const bool moved = !all_lanes(equal(m_, m_new));
            if (stage) {
                store(stage->exps + i, e);  // padding lanes: exp(-inf) = 0, within the n + W
                if (moved) record_move(stage, staged_entry(i / W, blocks), m_new);
            }
            m_ = m_new;
        }
        if (stage) stage->moved_entries[moves_] = kNoStagedEntry;
    }

    // Merges the lanes: S = sum_lanes s * exp(m - M).
    RowMaxSum<T> result() const {
        const V s = total_ + s_;
        const T M = reduce_max(m_);
        const V vM = V::broadcast(M);
        const V factors = select(equal(m_, vM), V::broadcast(T(1)), vexp_nonpositive(m_ - online_shift(vM)));
        return {M, reduce_sum(s * factors)};
    }

  private:
    // Entry `entry` of the staged row, where some lane's max moved to m.
    void record_move(const ExpStage<T>* stage, int64_t entry, V m) {
        store(stage->moved_maxima + 2 * W * moves_, m);
        stage->moved_entries[moves_++] = entry;
    }

    V m_ = V::broadcast(-infinity<T>());
    V shift_ = V::broadcast(T(0));  // online_shift(m_)
    V s_ = V::broadcast(T(0));
    V total_ = V::broadcast(T(0));
    int blocks_ = 0;
    int64_t moves_ = 0;  // entries recorded in the stage
};

template <class S, class T = compute_t<S>>
RowMaxSum<T> row_online_max_sum(const S* x, int64_t n, const ExpStage<T>* stage = nullptr) {
    OnlineMaxSum<T> stats;
    const int64_t i = online_blocks<T>(x, n, [&](const Vec<T>* v, int64_t at) { stats.add_block(v, stage, at); });
    stats.add_rest(x, i, n, stage);
    return stats.result();
}

// [Note: two sweeps for short rows] The online sweep pays for every block in which some lane's
// max moves, and in a short row that is most blocks (with random logits a lane's running max
// moves about ln(blocks) times). Rows of up to kTwoSweepMaxClasses classes therefore take the max
// first and then the sum of exp(x - max) from L1/L2, while the next row is prefetched, so DRAM
// still sees each logit once and the exponentials overlap with its arrival. The threshold is where
// the two methods break even; the online sweep is ahead on longer rows (BENCHMARKS.md).
constexpr int64_t kTwoSweepMaxClasses = 8192;

// The max M and S = sum_c exp(x_c - M) of a row, as row_online_max_sum defines them (an all -inf
// row gives M = -inf, S = 0; M = +inf or a NaN gives S = NaN). next_row, if not null, is the row
// the caller will read next: it is prefetched while this one's exponentials are computed.
template <class S, class T = compute_t<S>>
RowMaxSum<T> row_max_sum(const S* x, int64_t n, const S* next_row) {
    if (n > kTwoSweepMaxClasses) return row_online_max_sum(x, n);  // [Note: online softmax]
    const T m = row_max(x, n);  // [Note: two sweeps for short rows]
    const T shift = m == -infinity<T>() ? T(0) : m;
    return {m, row_sum_exp(x, shift, static_cast<S*>(nullptr), n, next_row)};
}

// [Note: few classes] With fewer than two vectors of classes per row, per-row horizontal work (lane
// reductions, one log per row) costs more than the row itself. Such rows are processed W at a time
// with one row per lane: the values of class c of W rows are gathered into one vector, and one
// vector log serves W rows. Gather indices are 32-bit, hence the stride limit.
template <class S>
bool rows_fit_lanes(int64_t classes, int64_t row_stride) {
    constexpr int64_t W = VecOf<S>::width;
    const int64_t stride = row_stride < 0 ? -row_stride : row_stride;
    return W > 1 && classes > 0 && classes < 2 * W && stride * W + classes < (int64_t(1) << 31);
}

// For W rows in lanes: the shift (the row max; with zero_if_infinite, 0 where the max is +-inf, as
// torch.logsumexp does) and s = sum_c exp(x_c - shift).
template <class T>
struct LanesShiftSum {
    Vec<T> shift;
    Vec<T> sum;
};

// The W rows at x, row_stride apart, in lanes: values[c] receives class c of every row. Returns the
// rows' maxima.
template <class S, class T = compute_t<S>>
Vec<T> gather_rows(const S* x, int64_t row_stride, int64_t classes, Vec<T>* values) {
    Vec<T> m = Vec<T>::broadcast(-infinity<T>());
    for (int64_t c = 0; c < classes; ++c) {
        values[c] = vgather(x + c, row_stride);
        m = max(m, values[c]);
    }
    return m;
}

template <class S, class T = compute_t<S>>
LanesShiftSum<T> lanes_shift_sum(const S* x, int64_t row_stride, int64_t classes, bool zero_if_infinite) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    V values[2 * W];
    const V m = gather_rows(x, row_stride, classes, values);
    const V zero = V::broadcast(T(0));
    const V shift = zero_if_infinite ? select(equal(abs(m), V::broadcast(infinity<T>())), zero, m) : m;
    V s = zero;
    for (int64_t c = 0; c < classes; ++c) s = s + vexp(values[c] - shift);
    return {shift, s};
}

// [Note: rows in lanes, summed in the row sweep's order] A row sweep of n < 2W classes adds its
// terms t_c into vector lanes starting from +0 (lane k: (0 + t_k) + t_{k+W}), and reduce_sum then
// adds lane k + W/2 to lane k, then lane k + W/4, and so on down to lane 1 (every ISA's
// reduce_sum). W rows in lanes hold one vector of terms per class; adding those vectors in the
// same order gives each row the bits its own row sweep gives, so a row's result depends neither on
// the rows beside it nor on how rows are split between threads.
// add(sum, c) is the sum with class c's terms added, as the row sweep adds them (sum + t_c, or a
// multiply-add, see shifted_term).
template <class V, class Add>
V accumulate_in_row_order(int64_t n, Add&& add) {
    constexpr int64_t W = V::width;
    const V zero = V::broadcast(typename V::Scalar(0));
    V lane[W];
    for (int64_t k = 0; k < W; ++k) {
        lane[k] = k < n ? add(zero, k) : zero;
        if (k + W < n) lane[k] = add(lane[k], k + W);
    }
    for (int64_t half = W / 2; half >= 1; half /= 2) {
        for (int64_t k = 0; k < half; ++k) lane[k] = lane[k] + lane[k + half];
    }
    return lane[0];
}

// The same for plain sums: term(c) is the vector of class c's terms.
template <class V, class Term>
V sum_in_row_order(int64_t n, Term&& term) {
    return accumulate_in_row_order<V>(n, [&](V sum, int64_t c) { return sum + term(c); });
}

template <class T>
bool is_infinite(T a) { return a == infinity<T>() || a == -infinity<T>(); }

}  // namespace
}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
