// The benchmarked calls: each op's driver call on one set of operands, and the traffic and math
// that set its ceiling.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "buffer.hpp"
#include "ops/inline_vector.hpp"
#include "options.hpp"

namespace fastloss_bench {

enum class Op {
    log_softmax,
    softmax,
    logsumexp,
    entropy,
    cross_entropy,
    cross_entropy_grad,
    nll_loss_grad,
    kl_div,
    binary_cross_entropy,
    bce_with_logits,
    bce_with_logits_grad,
    distillation,
    distillation_grad,
};

// The transcendental functions one element's math needs, each timed at its own measured
// throughput (math_bench.hpp).
struct MathCounts {
    int exp = 0;
    int log = 0;
    int log1p = 0;
    int log1p_unit = 0;  // log1p on [0, 1]: the softplus of a logit
};

// What one call must do at least, per element of the (positions x classes) operands:
//  * reads / writes: arrays of that size that must cross memory (per-position inputs and outputs
//    are a class-count smaller and not counted);
//  * math: the exps and logs the math needs. Distillation needs three exps: the student's softmax
//    at T = 1 for the hard term and at T for the soft one, and the teacher's at T. kl_div needs
//    log(target), binary_cross_entropy log(p) and log1p(-p), bce_with_logits exp(-|x|) and
//    log1p of it.
// nll_loss's forward reads one element per position; its ceiling is the gradient it writes.
struct OpInfo {
    Op op;
    const char* name;
    int reads;
    int writes;
    MathCounts math;
    bool has_class_axis;  // false: an elementwise loss, the same flat stream in every layout
};

const std::vector<OpInfo>& all_ops();
// nullptr for an unknown name.
const OpInfo* find_op(const std::string& name);

// Every array one (dtype, shape, layout) needs, uninitialised until fill() runs.
template <class S>
struct Operands {
    Operands(KernelShape shape, Layout layout);
    // First-touches every array with the threads that the kernels will use, filling deterministic
    // values: logits in [-10, 10), probabilities in (0, 1), targets in [0, classes).
    void fill();

    KernelShape size;
    Layout layout;
    fastloss::Extents shape, full_strides, position_strides;
    int axis = 1;
    Buffer<S> logits, teacher, probabilities, labels, out, per_position;
    Buffer<int64_t> targets;
};

// Runs one call; returns its scalar result (0 for none).
template <class S>
double run_op(Op op, Operands<S>& a);

}  // namespace fastloss_bench
