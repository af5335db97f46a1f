// Logit soft-capping over one class axis, a row at a time (cross_entropy's and distillation_loss's
// softcap): x' = cap tanh(x / cap). A driver caps each position's row into a buffer of T that stays
// in cache, runs its plain row kernel of T on it (the gradient with respect to x' formed in place),
// and chains that gradient through the tanh, times 1 - tanh^2, into the caller's layout. The
// capped logits exist one row at a time, never as an array.
#pragma once

#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "fastloss/dispatch.hpp"
#include "fastloss/half.hpp"
#include "fastloss/kernel_table.hpp"
#include "fastloss/scratch.hpp"
#include "ops/axis_geometry.hpp"
#include "ops/cross_entropy_operands.hpp"
#include "ops/position_loops.hpp"

namespace fastloss {

// The row at x, its n values `stride` apart, as contiguous values of T: x itself where it already
// is that, else converted into `buffer` (n values; unused otherwise).
template <class S>
const compute_t<S>* row_in_compute_type(const S* x, int64_t stride, int64_t n, compute_t<S>* buffer) {
    using T = compute_t<S>;
    if constexpr (std::is_same_v<S, T>) {
        if (stride == 1) return x;
    }
    for (int64_t c = 0; c < n; ++c) buffer[c] = T(x[c * stride]);
    return buffer;
}

// Whether row_in_compute_type needs its buffer for rows `stride` apart.
template <class S>
bool converts_row(int64_t stride) {
    return !std::is_same_v<S, compute_t<S>> || stride != 1;
}

// One thread's buffers for capping rows of `classes` logits of S, one row at a time: cap() a row,
// run the plain kernel on capped() (with a gradient, formed in place there), then chain_into() the
// caller's gradient row. Built inside a parallel region (its allocation failures are carried out
// by parallel_for).
template <class S>
class SoftcappedRow {
  public:
    using T = compute_t<S>;

    // `strided`: some row passed to cap() or chain_into() has a class stride other than 1.
    SoftcappedRow(int64_t classes, T softcap, bool with_grad, bool strided)
        : kernels_(active_kernels().kernels<S>().softcap), classes_(classes), softcap_(softcap),
          capped_(uninitialised_scratch<T>(classes, "a capped row")),
          derivative_(with_grad ? uninitialised_scratch<T>(classes, "a row of tanh's derivative") : nullptr),
          staged_(strided ? uninitialised_scratch<S>(classes, "a staged row") : nullptr) {}

    // Caps the row at x, its classes `stride` apart, into capped(), and keeps tanh's derivative
    // there when with_grad. Reads the whole row, so that its gradient row may then overwrite it.
    T* cap(const S* x, int64_t stride) {
        if (stride != 1) {
            gather_row(x, stride, classes_, staged_.get());
            x = staged_.get();
        }
        kernels_.cap_row(x, classes_, softcap_, capped_.get(), derivative_.get());
        return capped_.get();
    }
    T* capped() { return capped_.get(); }

    // out[c * stride] = capped()[c] (d loss / d x'_c) times d x'_c / d x_c, rounded to S.
    void chain_into(S* out, int64_t stride) {
        if (stride == 1) {
            kernels_.chain_row(capped_.get(), derivative_.get(), classes_, out);
            return;
        }
        kernels_.chain_row(capped_.get(), derivative_.get(), classes_, staged_.get());
        for (int64_t c = 0; c < classes_; ++c) out[c * stride] = staged_[c];
    }

  private:
    const SoftcapKernels<S>& kernels_;
    int64_t classes_;
    T softcap_;
    // Each written whole before it is read (a position's row, capped, or its gradient), so left
    // uninitialised: a large vocabulary's parallel chunks hold one row each, and zeroing the rows
    // of every chunk was a tenth of a softcap call (BENCHMARKS.md, eleventh sitting).
    std::unique_ptr<T[]> capped_;
    std::unique_ptr<T[]> derivative_;  // with_grad only (null otherwise)
    std::unique_ptr<S[]> staged_;      // a strided row gathered before capping, or its gradient before the scatter
};

// The cross-entropy block of the one position at offsets `at` of g (CrossEntropySlot's operands),
// its logits capped into `row`, which then takes the gradient with respect to the capped logits in
// place; probability targets are staged as T in `q_row` where they must be (converts_row).
template <class S>
CrossEntropyBlock<compute_t<S>> capped_position_block(const CrossEntropyOperands<S>& operands,
                                                      SoftcappedRow<S>& row, const AxisGeometry& g,
                                                      const int64_t* at, compute_t<S>* q_row) {
    using Slot = CrossEntropySlot;
    const int64_t classes = g.classes;
    CrossEntropyBlock<compute_t<S>> b;
    b.input = row.cap(operands.logits + at[Slot::input], g.class_stride[Slot::input]);
    b.input_stride = classes;
    if (operands.target) {
        b.target = operands.target + at[Slot::target];
    } else {
        b.probabilities = row_in_compute_type(operands.probabilities + at[Slot::target],
                                              g.class_stride[Slot::target], classes, q_row);
        b.probability_stride = classes;
    }
    b.loss = operands.losses + at[Slot::loss];
    if (operands.lse) b.lse = operands.lse + at[Slot::loss];
    if (operands.grad) {
        b.grad = row.capped();  // the gradient with respect to the capped logits, in place
        b.grad_stride = classes;
        b.scale = operands.scale_varies ? operands.scale + at[Slot::scale] : operands.scale;
    }
    b.count = 1;
    return b;
}

}  // namespace fastloss
