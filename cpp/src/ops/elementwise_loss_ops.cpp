#include "ops/elementwise_loss_ops.hpp"

#include <limits>
#include <stdexcept>

#include "fastloss/dispatch.hpp"
#include "fastloss/parallel.hpp"
#include "ops/broadcast_geometry.hpp"

namespace fastloss {
namespace {

// Where each operand sits in the geometry: its index into the offset and stride arrays.
struct ElementwiseSlot {
    enum : int { input, target, weight, pos_weight, out, grad, grad_output };
};

template <class T>
const Extents& strides_or_zeros(const T* p, const Extents& strides,
                                             const Extents& zeros) {
    return p ? strides : zeros;
}

template <class S>
SegmentResult run_segment(ElementwiseLoss kind, const ElementwiseSegment<S>& s, int64_t n, const KernelTable& table,
                          const SigmoidFocalParams<compute_t<S>>& focal, double beta) {
    switch (kind) {
    case ElementwiseLoss::jensen_shannon: return table.kernels<S>().kl_div.jensen_shannon(s, n, false, beta);
    case ElementwiseLoss::jensen_shannon_log_target: return table.kernels<S>().kl_div.jensen_shannon(s, n, true, beta);
    case ElementwiseLoss::kl_div: return table.kernels<S>().kl_div.forward(s, n, false);
    case ElementwiseLoss::kl_div_log_target: return table.kernels<S>().kl_div.forward(s, n, true);
    case ElementwiseLoss::binary_cross_entropy: return table.kernels<S>().binary_cross_entropy.probabilities(s, n);
    case ElementwiseLoss::binary_cross_entropy_with_logits: return table.kernels<S>().binary_cross_entropy.logits(s, n);
    case ElementwiseLoss::sigmoid_focal_loss: return table.kernels<S>().sigmoid_focal_loss.forward(s, n, focal);
    }
    return SegmentResult{};
}

}  // namespace

template <class S>
double elementwise_loss(ElementwiseLoss kind, const ElementwiseLossCall<S>& call) {
    using T = compute_t<S>;
    using Slot = ElementwiseSlot;
    const Extents zeros(call.shape.size(), 0);
    const BroadcastGeometry g = make_broadcast_geometry(
        call.shape, {call.input_strides, call.target_strides, strides_or_zeros(call.weight, call.weight_strides, zeros),
                     strides_or_zeros(call.pos_weight, call.pos_weight_strides, zeros),
                     strides_or_zeros(call.out, call.out_strides, zeros),
                     strides_or_zeros(call.grad, call.grad_strides, zeros),
                     strides_or_zeros(call.grad_output, call.grad_output_strides, zeros)});
    const bool mean = call.reduction == Reduction::mean;
    const double empty_mean = std::numeric_limits<double>::quiet_NaN();  // 0 / 0, as PyTorch
    const int64_t segments = g.segment_count();
    if (segments == 0) return mean && call.mean_count == 0 ? empty_mean : 0.0;
    // The gradient's factor for every element: the mean's 1/D joins grad_output, rounded once.
    T grad_scale = T(1);
    if (call.reduction != Reduction::none && !call.unscaled_gradient) {
        grad_scale = !mean ? call.grad_output_scalar
                           : call.mean_count ? call.grad_output_scalar / T(call.mean_count) : T(0);
    }

    // torchvision weighs by alpha when alpha >= 0, decided here in float64 (a tiny negative alpha
    // would round to -0 in float32); 1 - alpha is rounded once, as torchvision's (1 - alpha).
    SigmoidFocalParams<T> focal;
    focal.alpha_weighting = call.focal_alpha >= 0.0;
    focal.alpha = T(call.focal_alpha);
    focal.one_minus_alpha = T(1.0 - call.focal_alpha);
    focal.gamma = T(call.focal_gamma);

    // One result per fixed chunk of segments, combined below in chunk order.
    const int64_t work = g.segment_work();
    const int64_t chunk = chunk_items(segments, work);
    std::vector<SegmentResult> partial(size_t((segments + chunk - 1) / chunk));
    const KernelTable& table = active_kernels();

    parallel_for(segments, work, [&](int64_t begin, int64_t end) {
        SegmentResult acc;
        int64_t at[kMaxBroadcastOperands];
        for (int64_t i = begin; i < end; ++i) {
            const int64_t n = g.segment(i, at);
            ElementwiseSegment<S> s;
            s.input = call.input + at[Slot::input];
            s.input_stride = g.row_stride[Slot::input];
            s.target = call.target + at[Slot::target];
            s.target_stride = g.row_stride[Slot::target];
            if (call.weight) {
                s.weight = call.weight + at[Slot::weight];
                s.weight_stride = g.row_stride[Slot::weight];
            }
            if (call.pos_weight) {
                s.pos_weight = call.pos_weight + at[Slot::pos_weight];
                s.pos_weight_stride = g.row_stride[Slot::pos_weight];
            }
            if (call.out) {
                s.out = call.out + at[Slot::out];
                s.out_stride = g.row_stride[Slot::out];
            }
            if (call.grad) {
                s.grad = call.grad + at[Slot::grad];
                s.grad_stride = g.row_stride[Slot::grad];
                s.grad_scale = grad_scale;
                if (call.grad_output) {
                    s.grad_output = call.grad_output + at[Slot::grad_output];
                    s.grad_output_stride = g.row_stride[Slot::grad_output];
                }
            }
            const SegmentResult r = run_segment(kind, s, n, table, focal, call.beta);
            acc.sum += r.sum;
            acc.input_out_of_range |= r.input_out_of_range;
            acc.target_out_of_range |= r.target_out_of_range;
        }
        partial[size_t(begin / chunk)] = acc;
    });

    double total = 0.0;
    bool bad_input = false, bad_target = false;
    for (const SegmentResult& r : partial) {
        total += r.sum;
        bad_input |= r.input_out_of_range;
        bad_target |= r.target_out_of_range;
    }
    // PyTorch checks input before target; so do we.
    if (bad_input) throw std::invalid_argument("all elements of input should be between 0 and 1");
    if (bad_target) throw std::invalid_argument("all elements of target should be between 0 and 1");
    if (call.out) return 0.0;
    return !mean ? total : call.mean_count ? total / double(call.mean_count) : empty_mean;
}

#define FASTLOSS_INSTANTIATE(S) template double elementwise_loss<S>(ElementwiseLoss, const ElementwiseLossCall<S>&);
FASTLOSS_FOR_EACH_STORAGE_TYPE(FASTLOSS_INSTANTIATE)
#undef FASTLOSS_INSTANTIATE

}  // namespace fastloss
