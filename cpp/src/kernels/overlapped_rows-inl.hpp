// Rows written while the next row's statistics are taken: the writers of long rows (log_softmax,
// softmax, cross_entropy's gradient). Included by per-ISA kernel files only.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "fastloss/scratch.hpp"

#include "kernels/row_statistics-inl.hpp"
#include "kernels/store_row-inl.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NS {
namespace {

// [Note: the next row's statistics while a row is written] A writer's row r is read twice: once
// from memory for its max and sum, once from L2 to write y. Taken in that order, the loads of row
// r and the stores of y_r go to memory one after the other, each at the bandwidth of one
// direction. Taking the online statistics of row r + 1 ([Note: online softmax]) a block for every
// four vectors of y_r written overlaps them, and the exponentials hide under both. Every row's
// statistics come from the same blocks in the same order as row_online_max_sum's, so a row's bits
// do not depend on the row before it or on which thread takes it.
// The loop keeps the write's constants, the statistics' running max and sums and an exponential's
// constants live together: on AVX2's 16 registers it spilled them and ran 1.6-1.9x slower than two
// sweeps (4096 x 32000), so only ISAs with 32 overlap.
constexpr bool kOverlapLongRows = kVectorRegisters >= 32;

// [Note: the next row fetched into L2 while a row is written] The overlapped loop misses L1 on
// four streams: the next row from memory, and the row it writes, its staged exponentials or the
// row itself, and the next row's stage from L2. Fetched ahead into L1 (prefetcht0), the next row's
// lines hold L1's few miss buffers for a memory latency each, and the L2 streams wait behind
// them. Fetched into L2 only (prefetcht1), twice as far ahead, they do not: softmax float32
// 4096 x 32000 and 8192 x 16384, 1 and 2 threads, 0.73-0.80x the time, log_softmax 0.83-0.87x,
// float64 softmax and cross_entropy's gradient 0.81-0.91x (AMD Zen 4, BENCHMARKS.md). This holds
// while the two rows the loop keeps in L2 fit there with room to spare; at 128256 classes
// (float32) the L2 prefetch made softmax 1.11-1.17x slower, so longer rows keep prefetcht0. The
// read-only sweeps (logsumexp, cross_entropy) keep it too: prefetcht1 was 1.02-1.07x slower there.
constexpr int64_t kRowsInL2Bytes = 512 << 10;  // half of the smallest L2 of an AVX-512 core

template <class T>
bool next_row_fetched_into_l2(int64_t n) {
    return 2 * n * int64_t(sizeof(T)) <= kRowsInL2Bytes;
}

// store_row(y, n, stream, f) that takes the online statistics of the n elements at `next` on the
// way, a block for every four vectors stored, and returns them; staging next's exponentials in
// `stage` if it is not null ([Note: staged exponentials]).
template <PrefetchInto into, class S, class F, class T = compute_t<S>>
RowMaxSum<T> store_row_taking_next_statistics(S* y, int64_t n, bool stream, const S* next, F&& f,
                                              const ExpStage<T>* stage = nullptr) {
    using V = Vec<T>;
    constexpr int64_t W = V::width;
    OnlineMaxSum<T> stats;
    int64_t j = 0;  // next's elements before j are taken
    // Forced inline, as f is: called as functions, the block step and the per-vector step spill the
    // write's registers once a vector (staged softmax float32 ran 1.4x slower, float64 1.9x).
    const auto take_block = [&]() __attribute__((always_inline)) {
        V v[4];
        load_block_fetching_ahead<into>(next, j, n, v);
        stats.add_block(v, stage, j);
        j += 4 * W;
    };
    store_row(y, n, stream, [&](int64_t i) __attribute__((always_inline)) {
        if (i >= j && j + 4 * W <= n) take_block();
        return f(i);
    });
    while (j + 4 * W <= n) take_block();
    stats.add_rest(next, j, n, stage);
    return stats.result();
}

// The rows of x (n elements each, rows of them) written into y: row r's values come from
// row_value(r, x_r, its RowMaxSum), a function of the element index as store_row's f, and each
// row but the last is written while the next row's statistics are taken. after_row(r) runs once
// row r is written.
template <PrefetchInto into, class S, class RowValue, class AfterRow, class T = compute_t<S>>
void write_long_rows_fetching(const S* x, int64_t x_row_stride, S* y, int64_t y_row_stride, int64_t rows, int64_t n,
                              bool stream, RowValue& row_value, AfterRow& after_row) {
    RowMaxSum<T> ms = row_online_max_sum(x, n);
    for (int64_t r = 0; r < rows; ++r) {
        const S* xr = x + r * x_row_stride;
        S* yr = y + r * y_row_stride;
        const S* next = next_row(xr, r, rows, x_row_stride);
        const auto value = row_value(r, xr, ms);
        if (next) {
            ms = store_row_taking_next_statistics<into>(yr, n, stream, next, value);
        } else {
            store_row(yr, n, stream, value);
        }
        after_row(r);
    }
}

template <class S, class RowValue, class AfterRow, class T = compute_t<S>>
void write_long_rows(const S* x, int64_t x_row_stride, S* y, int64_t y_row_stride, int64_t rows, int64_t n,
                     bool stream, RowValue&& row_value, AfterRow&& after_row) {
    if (rows <= 0) return;
    if (next_row_fetched_into_l2<T>(n)) {
        write_long_rows_fetching<PrefetchInto::l2>(x, x_row_stride, y, y_row_stride, rows, n, stream, row_value,
                                                   after_row);
    } else {
        write_long_rows_fetching<PrefetchInto::l1>(x, x_row_stride, y, y_row_stride, rows, n, stream, row_value,
                                                   after_row);
    }
}

// The staged exponentials of two rows, the one being written and the next ([Note: staged
// exponentials]), for rows of n elements.
template <class T>
class TwoStagedRows {
    static constexpr int64_t W = Vec<T>::width;
    static constexpr int64_t kLine = 64 / int64_t(sizeof(T));  // values per cache line

  public:
    // Each stage's values start on a cache line: unaligned, every vector stored would split
    // across two lines.
    explicit TwoStagedRows(int64_t n)
        : entries_(n / (4 * W) + 4),
          row_(round_up(n + W, kLine)),
          slots_(round_up(2 * W * (entries_ + 1), kLine)),
          values_(uninitialised_scratch<T>(2 * (row_ + slots_) + kLine, "two rows of staged exponentials")),
          moved_entries_(uninitialised_scratch<int64_t>(2 * (entries_ + 1), "the staged exponentials' moves")) {
        const auto address = reinterpret_cast<uintptr_t>(values_.get());
        T* first = values_.get() + (kLine - int64_t(address / sizeof(T) % kLine)) % kLine;
        // A row's last vector may be read W - 1 values past the staged ones: zeros, not garbage.
        const int64_t staged = (n + W - 1) / W * W;
        for (int k = 0; k < 2; ++k) {
            T* exps = first + k * (row_ + slots_);
            for (int64_t i = staged; i < n + W; ++i) exps[i] = T(0);
            // moved_maxima starts one slot in: slot -1 is the factor before the first moved entry
            stages_[k] = {exps, exps + row_ + 2 * W, moved_entries_.get() + k * (entries_ + 1)};
        }
    }

    // The stage of row r (rows alternate between the two).
    const ExpStage<T>* of_row(int64_t r) const { return &stages_[r & 1]; }

  private:
    static int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

    int64_t entries_, row_, slots_;
    std::unique_ptr<T[]> values_;
    std::unique_ptr<int64_t[]> moved_entries_;
    ExpStage<T> stages_[2];
};

// [Note: a staged row's factors] store_row's f for a staged row of n elements whose max is M: the
// vector of lanes i..i+W of exp(x_c - M) * scale, formed as e_c * (exp(m - M) * scale) from the
// staged e_c = exp(x_c - m) ([Note: staged exponentials]). The constructor turns each moved
// entry's maxima m into its factor F = exp(m - M) * scale, stored twice side by side, so that a
// vector that does not start on a stage vector's boundary finds its factor in one load:
// store_row calls f at i = 0, W, 2W, ... or, streaming a row that starts off a vector boundary, at
// 0 and then at rho, W + rho, ...; lane t holds element i + t, of stage lane (i + t) mod W, so its
// factor is F rotated by rho, the W values at F's slot + rho. A vector that straddles the start
// of a moved entry takes the W values at the previous slot + W + rho: its lanes before the entry
// from the previous factor's second copy, the rest from the new factor's first. The slot before
// the first moved entry holds the factor of lanes that have seen only -inf. A factor holds until
// the next moved entry: the vectors before it take one multiply.
// (A window of two factors, stored and reloaded at rho in a call of its own for every moved entry,
// took 13-18% of softmax float32 4096 x 32000 on AMD Zen 4: an exponential's latency, a scan of
// one flag per entry, a store-forwarding stall.)
template <class T>
class StagedRowValue {
    using V = Vec<T>;
    static constexpr int64_t W = V::width;
    static constexpr int64_t kNever = INT64_MAX;

  public:
    StagedRowValue(const ExpStage<T>* stage, int64_t n, T M, T scale)
        : exps_(stage->exps), factors_(stage->moved_maxima), moved_entries_(stage->moved_entries),
          blocks_(n / (4 * W)) {
        // exp(m - M) * scale: 0 * scale in lanes that have seen only -inf (their staged values are 0
        // too), NaN in a lane whose max is the row's +inf (its S is NaN anyway).
        const V shift = V::broadcast(M == -infinity<T>() ? T(0) : M), s = V::broadcast(scale);
        const auto set_factor = [&](int64_t p, V m) {
            const V f = vexp_nonpositive(m - shift) * s;
            store(factors_ + 2 * W * p, f);
            store(factors_ + 2 * W * p + W, f);
        };
        set_factor(-1, V::broadcast(-infinity<T>()));  // before the first moved entry
        int64_t p = 0;
        for (; moved_entries_[p] != kNoStagedEntry; ++p) set_factor(p, vload(factors_ + 2 * W * p));
        moves_ = p;
        boundary_ = moves_ > 0 ? entry_start(moved_entries_[0]) : kNever;
    }

    // Forced inline: see store_row_taking_next_statistics.
    [[gnu::always_inline]] V operator()(int64_t i) {
        const V e = vload(exps_ + i);
        return e * (i + W <= factor_end_ ? factor_ : vector_factor(i));
    }

  private:
    int64_t entry_start(int64_t k) const { return k < blocks_ ? 4 * W * k : 4 * W * blocks_ + (k - blocks_) * W; }

    // The factor of the vector at i, which reaches the next moved entry or is the row's first;
    // sets factor_ and factor_end_ for the vectors after it.
    V vector_factor(int64_t i) {
        const int64_t rho = i % W;
        while (i >= boundary_) {  // i reaches past a moved entry's start: its factor holds now
            ++next_;
            boundary_ = next_ < moves_ ? entry_start(moved_entries_[next_]) : kNever;
        }
        if (i + W > boundary_) {  // straddles the start of moved entry next_
            factor_end_ = boundary_;
            return vload(factors_ + 2 * W * next_ - W + rho);
        }
        factor_ = vload(factors_ + 2 * W * (next_ - 1) + rho);
        // After the first call, store_row may move to rho != 0.
        factor_end_ = i == 0 ? W : boundary_;
        return factor_;
    }

    const T* exps_;
    T* factors_;  // slot p: moved entry p's factor, twice; slot -1: the factor before the first
    const int64_t* moved_entries_;
    int64_t blocks_, moves_;
    int64_t next_ = 0;          // the first moved entry the vectors have not reached
    int64_t boundary_;          // where it starts
    V factor_ = V::broadcast(T(0));  // rotated as the vectors before factor_end_ need it
    int64_t factor_end_ = 0;
};

// write_long_rows for writers of y_c = exp(x_c - M) * scale_r: each row's exponentials are staged
// while its statistics are taken ([Note: staged exponentials]), so the write takes none.
// row_scale(r, x_r, its RowMaxSum) gives scale_r, or nothing for a row written as zeros (whatever
// x_r holds, NaN included).
template <PrefetchInto into, class S, class RowScale, class AfterRow, class T = compute_t<S>>
void write_long_staged_rows_fetching(const S* x, int64_t x_row_stride, S* y, int64_t y_row_stride, int64_t rows,
                                     int64_t n, bool stream, RowScale& row_scale, AfterRow& after_row) {
    const TwoStagedRows<T> stages(n);
    const auto zeros = [](int64_t) { return Vec<T>::broadcast(T(0)); };
    RowMaxSum<T> ms = row_online_max_sum(x, n, stages.of_row(0));
    for (int64_t r = 0; r < rows; ++r) {
        const S* xr = x + r * x_row_stride;
        S* yr = y + r * y_row_stride;
        const S* next = next_row(xr, r, rows, x_row_stride);
        const std::optional<T> scale = row_scale(r, xr, ms);
        // Spelled out twice: one generic `write(value)` lambda for both branches made GCC compile
        // cross_entropy's float64 gradient rows 1.15-1.17x slower (AMD Zen 4).
        if (!scale) {
            if (next) {
                ms = store_row_taking_next_statistics<into>(yr, n, stream, next, zeros, stages.of_row(r + 1));
            } else {
                store_row(yr, n, stream, zeros);
            }
        } else {
            StagedRowValue<T> value(stages.of_row(r), n, ms.max, *scale);
            if (next) {
                ms = store_row_taking_next_statistics<into>(yr, n, stream, next, value, stages.of_row(r + 1));
            } else {
                store_row(yr, n, stream, value);
            }
        }
        after_row(r);
    }
}

template <class S, class RowScale, class AfterRow, class T = compute_t<S>>
void write_long_staged_rows(const S* x, int64_t x_row_stride, S* y, int64_t y_row_stride, int64_t rows, int64_t n,
                            bool stream, RowScale&& row_scale, AfterRow&& after_row) {
    if (rows <= 0) return;
    if (next_row_fetched_into_l2<T>(n)) {
        write_long_staged_rows_fetching<PrefetchInto::l2>(x, x_row_stride, y, y_row_stride, rows, n, stream,
                                                          row_scale, after_row);
    } else {
        write_long_staged_rows_fetching<PrefetchInto::l1>(x, x_row_stride, y, y_row_stride, rows, n, stream,
                                                          row_scale, after_row);
    }
}

}  // namespace
}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss
