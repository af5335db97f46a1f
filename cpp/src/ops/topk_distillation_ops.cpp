#include "ops/topk_distillation_ops.hpp"

#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "fastloss/dispatch.hpp"
#include "fastloss/parallel.hpp"
#include "fastloss/scratch.hpp"
#include "ops/loss_vocabulary.hpp"
#include "ops/softcapped_rows.hpp"

namespace fastloss {
namespace {

// Every target is ignore_index or a class; every row of indices holds k distinct classes. Checked
// before anything is computed, so that a bad row raises instead of reading out of bounds.
template <class S>
void check_call(const TopkDistillationCall<S>& call) {
    if (call.target) {
        for (int64_t r = 0; r < call.rows; ++r) {
            const int64_t y = call.target[r];
            if (y != call.ignore_index && (y < 0 || y >= call.classes)) throw TargetOutOfBounds(y);
        }
    }
    // seen[c] is the last row (+ 1) that named class c.
    std::vector<int64_t> seen = scratch_vector<int64_t>(call.rows > 0 ? call.classes : 0, "top-k index checks");
    for (int64_t r = 0; r < call.rows; ++r) {
        for (int64_t j = 0; j < call.k; ++j) {
            const int64_t c = call.indices[r * call.k + j];
            if (c < 0 || c >= call.classes) {
                throw std::out_of_range("teacher_topk index " + std::to_string(c) + " at position " +
                                        std::to_string(r) + " is out of bounds for " +
                                        std::to_string(call.classes) + " classes");
            }
            if (seen[size_t(c)] == r + 1) {
                throw std::invalid_argument("teacher_topk indices repeat class " + std::to_string(c) +
                                            " at position " + std::to_string(r) + "; they must be distinct");
            }
            seen[size_t(c)] = r + 1;
        }
    }
}

template <class S>
TopkDistillationParams<compute_t<S>> params_of(const TopkDistillationCall<S>& call) {
    using T = compute_t<S>;
    TopkDistillationParams<T> p;
    p.hard.classes = call.classes;
    p.hard.weight = call.weight;
    double weight_sum = double(call.classes);
    if (call.weight) {
        weight_sum = 0.0;
        for (int64_t c = 0; c < call.classes; ++c) weight_sum += double(call.weight[c]);
    }
    p.hard.weight_sum = T(weight_sum);
    p.hard.ignore_index = call.ignore_index;
    p.hard.label_smoothing = T(call.label_smoothing);
    p.hard.z_loss_grad = T(call.z_loss_grad);
    p.inverse_temperature = T(1.0 / call.temperature);
    p.divergence = call.divergence;
    p.beta = T(call.beta);
    p.residual = call.residual;
    p.k = call.k;
    p.hard_grad = T(call.hard_grad);
    p.soft_grad = T(call.soft_grad);
    return p;
}

}  // namespace

template <class S>
void topk_distillation(const TopkDistillationCall<S>& call) {
    using T = compute_t<S>;
    check_call(call);
    if (call.rows == 0) return;
    const TopkDistillationParams<T> params = params_of(call);
    const auto kernel = active_kernels().kernels<T>().topk_distillation.rows;
    const bool with_grad = call.grad != nullptr;
    // Rows of S are passed as they are when S is T and they need no capping; otherwise each row is
    // capped or widened into a row of T, its gradient formed there in place and then chained
    // through the tanh or narrowed into the caller's row.
    const bool staged = call.softcap > 0.0 || !std::is_same_v<S, T>;
    parallel_for(call.rows, call.classes + call.k, [&](int64_t begin, int64_t end) {
        std::vector<T> scratch = scratch_vector<T>(3 * (call.k + TopkDistillationRows<T>::kScratchPadding),
                                                   "top-k scratch");
        TopkDistillationRows<T> b;
        b.indices = call.indices + begin * call.k;
        b.logprobs = call.logprobs + begin * call.k;
        b.target = call.target ? call.target + begin : nullptr;
        b.hard = call.hard + begin;
        b.soft = call.soft + begin;
        b.lse = call.lse + begin;
        b.scale = with_grad ? call.scale + begin : nullptr;
        b.scratch = scratch.data();
        if (!staged) {
            if constexpr (std::is_same_v<S, T>) {
                b.student = call.student + begin * call.student_stride;
                b.student_stride = call.student_stride;
                b.rows = end - begin;
                if (with_grad) {
                    b.grad = call.grad + begin * call.grad_stride;
                    b.grad_stride = call.grad_stride;
                }
                kernel(b, params);
            }
            return;
        }
        std::optional<SoftcappedRow<S>> capped;
        std::vector<T> widened;
        if (call.softcap > 0.0) {
            capped.emplace(call.classes, T(call.softcap), with_grad, false);
        } else {
            widened = scratch_vector<T>(call.classes, "a widened row");
        }
        b.rows = 1;
        for (int64_t r = begin; r < end; ++r) {
            const S* x = call.student + r * call.student_stride;
            T* row = capped ? capped->cap(x, 1) : widened.data();
            if (!capped) {
                for (int64_t c = 0; c < call.classes; ++c) row[c] = T(x[c]);
            }
            b.student = row;
            if (with_grad) b.grad = row;
            kernel(b, params);
            if (with_grad) {
                S* out = call.grad + r * call.grad_stride;
                if (capped) {
                    capped->chain_into(out, 1);
                } else {
                    for (int64_t c = 0; c < call.classes; ++c) out[c] = S(row[c]);
                }
            }
            b.indices += call.k;
            b.logprobs += call.k;
            if (b.target) ++b.target;
            ++b.hard;
            ++b.soft;
            ++b.lse;
            if (b.scale) ++b.scale;
        }
    });
}

#define FASTLOSS_INSTANTIATE(S) template void topk_distillation<S>(const TopkDistillationCall<S>&);
FASTLOSS_FOR_EACH_STORAGE_TYPE(FASTLOSS_INSTANTIATE)
#undef FASTLOSS_INSTANTIATE

}  // namespace fastloss
