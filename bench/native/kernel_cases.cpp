#include "kernel_cases.hpp"

#include <cmath>

#include "data.hpp"
#include "fastloss/half.hpp"
#include "fastloss/parallel.hpp"
#include "ops/cross_entropy_ops.hpp"
#include "ops/distillation_ops.hpp"
#include "ops/elementwise_loss_ops.hpp"
#include "ops/softmax_ops.hpp"

namespace fastloss_bench {

const std::vector<OpInfo>& all_ops() {
    static const std::vector<OpInfo> ops = {
        // op, name, reads, writes, {exp, log, log1p, log1p_unit}, has_class_axis
        {Op::log_softmax, "log_softmax", 1, 1, {1, 0, 0, 0}, true},
        {Op::softmax, "softmax", 1, 1, {1, 0, 0, 0}, true},
        {Op::logsumexp, "logsumexp", 1, 0, {1, 0, 0, 0}, true},
        {Op::entropy, "entropy", 1, 0, {1, 0, 0, 0}, true},
        {Op::cross_entropy, "cross_entropy", 1, 0, {1, 0, 0, 0}, true},
        {Op::cross_entropy_grad, "cross_entropy+grad", 1, 1, {1, 0, 0, 0}, true},
        {Op::nll_loss_grad, "nll_loss+grad", 0, 1, {0, 0, 0, 0}, true},
        {Op::kl_div, "kl_div", 2, 0, {0, 1, 0, 0}, false},
        {Op::binary_cross_entropy, "binary_cross_entropy", 2, 0, {0, 1, 1, 0}, false},
        {Op::bce_with_logits, "bce_with_logits", 2, 0, {1, 0, 0, 1}, false},
        {Op::bce_with_logits_grad, "bce_with_logits+grad", 2, 1, {1, 0, 0, 1}, false},
        {Op::distillation, "distillation", 2, 0, {3, 0, 0, 0}, true},
        {Op::distillation_grad, "distillation+grad", 2, 1, {3, 0, 0, 0}, true},
    };
    return ops;
}

const OpInfo* find_op(const std::string& name) {
    for (const OpInfo& info : all_ops()) {
        if (name == info.name) return &info;
    }
    return nullptr;
}

template <class S>
Operands<S>::Operands(KernelShape size_, Layout layout_)
    : size(size_),
      layout(layout_),
      logits(size_.rows * size_.classes),
      teacher(size_.rows * size_.classes),
      probabilities(size_.rows * size_.classes),
      labels(size_.rows * size_.classes),
      out(size_.rows * size_.classes),
      per_position(size_.rows),
      targets(size_.rows) {
    const int64_t n = size.rows, c = size.classes;
    if (layout == Layout::rows) {
        shape = {n, c};
        full_strides = {c, 1};
        position_strides = {1, 0};  // the class axis's entry is ignored
        axis = 1;
    } else {
        shape = {c, n};
        full_strides = {n, 1};
        position_strides = {0, 1};
        axis = 0;
    }
}

template <class S>
void Operands<S>::fill() {
    // Each array's values come from a different stretch of the same sequence.
    const int64_t n = size.rows * size.classes;
    auto sigmoid = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
    fastloss::parallel_for(n, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
            logits.data()[i] = S(float(logit_value(i)));
            teacher.data()[i] = S(float(logit_value(i + n)));
            probabilities.data()[i] = S(float(sigmoid(logit_value(i + 2 * n))));
            labels.data()[i] = S(float(sigmoid(logit_value(i + 3 * n))));
            out.data()[i] = S(0.0f);
        }
    });
    for (int64_t r = 0; r < size.rows; ++r) {
        per_position.data()[r] = S(0.0f);
        const double u = (logit_value(r + 4 * n) + 10.0) / 20.0;  // in [0, 1)
        targets.data()[r] = int64_t(u * double(size.classes)) % size.classes;
    }
}

namespace {

template <class S>
fastloss::ClassificationLossCall<S> classification_call(Operands<S>& a, bool grad) {
    fastloss::ClassificationLossCall<S> call;
    call.input = a.logits.data();
    call.input_strides = a.full_strides;
    call.shape = a.shape;
    call.axis = a.axis;
    call.target = a.targets.data();
    call.target_strides = a.position_strides;
    call.reduction = fastloss::Reduction::mean;
    if (grad) {
        call.grad = a.out.data();
        call.grad_strides = a.full_strides;
    }
    return call;
}

// Elementwise losses see one flat stream, whatever the layout.
template <class S>
fastloss::ElementwiseLossCall<S> elementwise_call(Operands<S>& a, const S* input, const S* target,
                                                  bool grad) {
    fastloss::ElementwiseLossCall<S> call;
    call.shape = a.shape;
    call.input = input;
    call.input_strides = a.full_strides;
    call.target = target;
    call.target_strides = a.full_strides;
    call.reduction = fastloss::Reduction::mean;
    call.mean_count = a.size.rows * a.size.classes;
    if (grad) {
        call.grad = a.out.data();
        call.grad_strides = a.full_strides;
    }
    return call;
}

template <class S>
fastloss::DistillationCall<S> distillation_call(Operands<S>& a, bool grad) {
    fastloss::DistillationCall<S> call;
    call.student = a.logits.data();
    call.student_strides = a.full_strides;
    call.teacher = a.teacher.data();
    call.teacher_strides = a.full_strides;
    call.shape = a.shape;
    call.axis = a.axis;
    call.target = a.targets.data();
    call.target_strides = a.position_strides;
    if (grad) {
        call.grad = a.out.data();
        call.grad_strides = a.full_strides;
    }
    return call;
}

}  // namespace

template <class S>
double run_op(Op op, Operands<S>& a) {
    using fastloss::ElementwiseLoss;
    using fastloss::SoftmaxKind;
    switch (op) {
    case Op::log_softmax:
    case Op::softmax:
        fastloss::softmax_forward(op == Op::softmax ? SoftmaxKind::softmax : SoftmaxKind::log_softmax,
                                  a.logits.data(), a.full_strides, a.out.data(), a.full_strides,
                                  a.shape, a.axis);
        return 0;
    case Op::logsumexp:
        fastloss::logsumexp_forward(a.logits.data(), a.full_strides, a.per_position.data(),
                                    a.position_strides, a.shape, a.axis);
        return 0;
    case Op::entropy:
        fastloss::entropy_forward(a.logits.data(), a.full_strides, a.per_position.data(),
                                  a.position_strides, a.shape, a.axis, false);
        return 0;
    case Op::cross_entropy:
    case Op::cross_entropy_grad:
        return fastloss::cross_entropy_forward(classification_call(a, op == Op::cross_entropy_grad));
    case Op::nll_loss_grad:
        return fastloss::nll_loss_forward(classification_call(a, true));
    case Op::kl_div:
        return fastloss::elementwise_loss(
            ElementwiseLoss::kl_div, elementwise_call(a, a.logits.data(), a.probabilities.data(), false));
    case Op::binary_cross_entropy:
        return fastloss::elementwise_loss(
            ElementwiseLoss::binary_cross_entropy,
            elementwise_call(a, a.probabilities.data(), a.labels.data(), false));
    case Op::bce_with_logits:
    case Op::bce_with_logits_grad:
        return fastloss::elementwise_loss(
            ElementwiseLoss::binary_cross_entropy_with_logits,
            elementwise_call(a, a.logits.data(), a.labels.data(), op == Op::bce_with_logits_grad));
    case Op::distillation:
    case Op::distillation_grad:
        return fastloss::distillation_forward(distillation_call(a, op == Op::distillation_grad));
    }
    return 0;
}

using fastloss::BFloat16;
using fastloss::Half;
#define FASTLOSS_BENCH_INSTANTIATE(S) \
    template struct Operands<S>;      \
    template double run_op<S>(Op, Operands<S>&);
FASTLOSS_FOR_EACH_STORAGE_TYPE(FASTLOSS_BENCH_INSTANTIATE)
#undef FASTLOSS_BENCH_INSTANTIATE

}  // namespace fastloss_bench
