# Generated from the compiled module by: pybind11-stubgen fastloss._core -o stubs
# (regenerate after changing cpp/bindings/; tests/test_stubs.py checks it is current)
"""
fastloss native kernels (private: use the fastloss package)
"""
from __future__ import annotations
import numpy
import typing
__all__: list[str] = ['available_capabilities', 'binary_cross_entropy', 'binary_cross_entropy_common_case', 'binary_cross_entropy_with_logits', 'binary_cross_entropy_with_logits_common_case', 'compiled_capabilities', 'cosine_embedding_loss', 'cosine_embedding_loss_common_case', 'cpu_capability', 'cross_entropy', 'cross_entropy_common_case', 'distillation_loss', 'distillation_loss_common_case', 'entropy', 'entropy_common_case', 'forked_child_runs_serially', 'get_num_threads', 'jensen_shannon_divergence', 'kl_div', 'kl_div_common_case', 'linear_cross_entropy_fold_tile', 'linear_cross_entropy_tile_gradient', 'log_softmax', 'log_softmax_backward', 'log_softmax_backward_common_case', 'log_softmax_common_case', 'logsumexp', 'logsumexp_common_case', 'merge_row_statistics', 'nll_loss', 'nll_loss_common_case', 'openmp_runtime', 'set_num_threads', 'sigmoid_focal_loss', 'sigmoid_focal_loss_common_case', 'softmax', 'softmax_backward', 'softmax_backward_common_case', 'softmax_common_case', 'topk_distillation']
def _set_capability(name: str) -> None:
    """
    Make `name` the active variant (for tests).
    """
def _set_streaming_store_min_bytes(bytes: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    Outputs at least this large are streamed (for tests; negative: the default). Returns the previous threshold.
    """
def _vector_exp(x: numpy.ndarray, out: numpy.ndarray) -> None:
    ...
def _vector_log(x: numpy.ndarray, out: numpy.ndarray) -> None:
    ...
def _vector_log1p(x: numpy.ndarray, out: numpy.ndarray) -> None:
    ...
def _vector_log1p_unit(x: numpy.ndarray, out: numpy.ndarray) -> None:
    ...
def _vector_tanh(x: numpy.ndarray, out: numpy.ndarray) -> None:
    ...
def available_capabilities() -> list[str]:
    """
    Variants compiled into this build that this CPU can run, slowest first.
    """
def binary_cross_entropy(input: numpy.ndarray, target: numpy.ndarray, weight: typing.Any, reduction: str, mean_count: typing.SupportsInt, out: typing.Any, grad: typing.Any = None, grad_output: typing.Any = None, unscaled_gradient: bool = False) -> typing.Any:
    """
    Binary cross-entropy of probabilities. reduction: 'sum', 'mean' (the sum / mean_count) or 'none' (every loss written to out; returns None). With grad, also writes there (it may be input itself) the gradient with respect to the input, times grad_output (reduction 'none', the input's shape) or times the number grad_output (/ mean_count for a mean); with unscaled_gradient, the gradient alone.
    """
def binary_cross_entropy_common_case(input: typing.Any, target: typing.Any, weight: typing.Any, reduction: typing.Any, return_grad: typing.Any, grad_output: typing.Any, grad_out: typing.Any) -> typing.Any:
    """
    binary_cross_entropy's arguments as given: the result of the common call (common_case.hpp); None for any other.
    """
def binary_cross_entropy_with_logits(input: numpy.ndarray, target: numpy.ndarray, weight: typing.Any, pos_weight: typing.Any, reduction: str, mean_count: typing.SupportsInt, out: typing.Any, grad: typing.Any = None, grad_output: typing.Any = None, unscaled_gradient: bool = False) -> typing.Any:
    """
    Binary cross-entropy of logits. reduction: 'sum', 'mean' (the sum / mean_count) or 'none' (every loss written to out; returns None). With grad, also writes there (it may be input itself) the gradient with respect to the input, times grad_output (reduction 'none', the input's shape) or times the number grad_output (/ mean_count for a mean); with unscaled_gradient, the gradient alone.
    """
def binary_cross_entropy_with_logits_common_case(input: typing.Any, target: typing.Any, weight: typing.Any, pos_weight: typing.Any, reduction: typing.Any, return_grad: typing.Any, grad_output: typing.Any, grad_out: typing.Any) -> typing.Any:
    """
    binary_cross_entropy_with_logits's arguments as given: the result of the common call (common_case.hpp); None for any other.
    """
def compiled_capabilities() -> list[str]:
    """
    Variants compiled into this build.
    """
def cosine_embedding_loss(x1: numpy.ndarray, x2: numpy.ndarray, target: numpy.ndarray, margin: typing.SupportsFloat | typing.SupportsIndex, reduction: str, out: typing.Any, grad: typing.Any = None, grad_output: typing.Any = None) -> float:
    """
    Cosine embedding loss of (N, D) rows with float64 targets (N,); returns the mean/sum, or writes to out; with grad, also writes the gradient w.r.t. x1 there.
    """
def cosine_embedding_loss_common_case(x1: typing.Any, x2: typing.Any, target: typing.Any, margin: typing.Any, reduction: typing.Any, return_grad: typing.Any, grad_output: typing.Any, grad_out: typing.Any) -> typing.Any:
    """
    cosine_embedding_loss's arguments as given: the result of the common call (common_case.hpp); None for any other.
    """
def cpu_capability() -> str:
    """
    Name of the active instruction-set variant.
    """
def cross_entropy(input: numpy.ndarray, target: numpy.ndarray, weight: typing.Any, ignore_index: typing.SupportsInt | typing.SupportsIndex, label_smoothing: typing.SupportsFloat | typing.SupportsIndex, reduction: str, axis: typing.SupportsInt | typing.SupportsIndex, out: typing.Any, grad: typing.Any = None, grad_output: typing.Any = None, z_loss: typing.SupportsFloat | typing.SupportsIndex = 0.0, lse: typing.Any = None, softcap: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> typing.Any:
    """
    Cross-entropy from logits; returns the mean/sum (a NumPy scalar for float32/float64), or writes per-position losses to out (and returns None); with grad, also writes the gradient w.r.t. the input there; with z_loss, adds z lse^2 per non-ignored position (Liger's reduction); with lse, writes each position's log-sum-exp there; softcap > 0: of the logits softcap tanh(x / softcap).
    """
def cross_entropy_common_case(input: typing.Any, target: typing.Any, weight: typing.Any, ignore_index: typing.Any, reduction: typing.Any, label_smoothing: typing.Any, axis: typing.Any, return_grad: typing.Any, grad_output: typing.Any, grad_out: typing.Any) -> typing.Any:
    """
    cross_entropy's arguments as given: the result for (N, C) logits with int64 targets and default options (mean, sum, or none without gradient); None for any other call.
    """
def distillation_loss(student_logits: numpy.ndarray, teacher_logits: numpy.ndarray, target: numpy.ndarray, weight: typing.Any, ignore_index: typing.SupportsInt | typing.SupportsIndex, label_smoothing: typing.SupportsFloat | typing.SupportsIndex, temperature: typing.SupportsFloat | typing.SupportsIndex, alpha: typing.SupportsFloat | typing.SupportsIndex, divergence: str, beta: typing.SupportsFloat | typing.SupportsIndex, reduction: str, axis: typing.SupportsInt | typing.SupportsIndex, out: typing.Any, grad: typing.Any = None, grad_output: typing.Any = None, z_loss: typing.SupportsFloat | typing.SupportsIndex = 0.0, softcap: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> typing.Any:
    """
    alpha CE(s, target) + (1 - alpha) T^2 D(softmax(t/T), softmax(s/T)), D = KL(p || sigma) ('kl'), KL(sigma || p) ('reverse_kl') or the generalized JSD with beta ('jsd'); returns the mean/sum, or writes per-position losses to out; with grad, also writes the gradient w.r.t. s there; softcap > 0: with s' = softcap tanh(s / softcap) in place of s in both terms (the gradient still w.r.t. s).
    """
def distillation_loss_common_case(student_logits: typing.Any, teacher_logits: typing.Any, target: typing.Any, temperature: typing.Any, alpha: typing.Any, divergence: typing.Any, beta: typing.Any, reduction: typing.Any, weight: typing.Any, ignore_index: typing.Any, label_smoothing: typing.Any, axis: typing.Any, return_grad: typing.Any, grad_output: typing.Any, grad_out: typing.Any) -> typing.Any:
    """
    distillation_loss's arguments as given: the result of the common call (common_case.hpp); None for any other.
    """
def entropy(x: numpy.ndarray, out: numpy.ndarray, axis: typing.SupportsInt | typing.SupportsIndex, probabilities: bool = False) -> None:
    """
    out = Shannon entropy along axis of softmax(x), or with probabilities=True of x itself (sum of -x log x, torch.special.entr); out shaped as for logsumexp.
    """
def entropy_common_case(logits: typing.Any, axis: typing.Any, probs: typing.Any) -> typing.Any:
    """
    entropy's arguments as given: the result of the common call (common_case.hpp); None for any other.
    """
def forked_child_runs_serially() -> bool:
    ...
def get_num_threads() -> int:
    ...
def jensen_shannon_divergence(input: numpy.ndarray, target: numpy.ndarray, log_target: bool, beta: typing.SupportsFloat | typing.SupportsIndex, reduction: str, mean_count: typing.SupportsInt | typing.SupportsIndex, out: typing.Any, grad: typing.Any = None, grad_output: typing.Any = None, unscaled_gradient: bool = False) -> typing.Any:
    """
    Pointwise generalized Jensen-Shannon divergence (Liger's) of same-shape arrays: input log q, target p (log p with log_target); beta = 0 and 1 are the forward and reverse KL. reduction: 'sum', 'mean' (the sum / mean_count) or 'none' (every loss written to out; returns None). With grad, also writes there (it may be input itself) the gradient with respect to the input, times grad_output (reduction 'none', the input's shape) or times the number grad_output (/ mean_count for a mean); with unscaled_gradient, the gradient alone.
    """
def kl_div(input: numpy.ndarray, target: numpy.ndarray, log_target: bool, reduction: str, mean_count: typing.SupportsInt, out: typing.Any, grad: typing.Any = None, grad_output: typing.Any = None, unscaled_gradient: bool = False) -> typing.Any:
    """
    Pointwise KL divergence of same-shape arrays. reduction: 'sum', 'mean' (the sum / mean_count) or 'none' (every loss written to out; returns None). With grad, also writes there (it may be input itself) the gradient with respect to the input, times grad_output (reduction 'none', the input's shape) or times the number grad_output (/ mean_count for a mean); with unscaled_gradient, the gradient alone.
    """
def kl_div_common_case(input: typing.Any, target: typing.Any, reduction: typing.Any, log_target: typing.Any, return_grad: typing.Any, grad_output: typing.Any, grad_out: typing.Any) -> typing.Any:
    """
    kl_div's arguments as given: the result of the common call (common_case.hpp); None for any other.
    """
def linear_cross_entropy_fold_tile(logits: numpy.ndarray, column_begin: typing.SupportsInt | typing.SupportsIndex, classes: typing.SupportsInt | typing.SupportsIndex, label_smoothing: typing.SupportsFloat | typing.SupportsIndex, weighted_logit_sum: bool, tile_weight_sum: typing.SupportsFloat | typing.SupportsIndex, bias: typing.Any, weight: typing.Any, target: typing.Any, probabilities: typing.Any, statistics: numpy.ndarray, *, softcap: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
    """
    Adds bias to a (rows, columns) tile of logits of classes [column_begin, column_begin + columns) in place, soft-caps them in place (softcap > 0), and merges each row's statistics of the tile into statistics (rows, 5).
    """
def linear_cross_entropy_tile_gradient(logits: numpy.ndarray, column_begin: typing.SupportsInt | typing.SupportsIndex, classes: typing.SupportsInt | typing.SupportsIndex, label_smoothing: typing.SupportsFloat | typing.SupportsIndex, weight: typing.Any, target: typing.Any, probabilities: typing.Any, factors: numpy.ndarray, *, softcap: typing.SupportsFloat | typing.SupportsIndex = 0.0, capped: bool = False) -> None:
    """
    Overwrites a tile of logits with the loss's gradient with respect to them, given each row's factors (lse, a, b_uniform, b_target, correction). softcap > 0: the gradient with respect to the logits before capping; capped: the tile holds the capped logits already (else they are capped here).
    """
def log_softmax(x: numpy.ndarray, out: numpy.ndarray, axis: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    out = log_softmax(x) along axis (axis already normalised, out preallocated).
    """
def log_softmax_backward(grad_output: numpy.ndarray, output: numpy.ndarray, out: numpy.ndarray, axis: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    out = gradient of log_softmax from grad_output and the log_softmax output.
    """
def log_softmax_backward_common_case(grad_output: typing.Any, output: typing.Any, axis: typing.Any, out: typing.Any) -> typing.Any:
    """
    log_softmax_backward's arguments as given: the result of the common call (common_case.hpp); None for any other.
    """
def log_softmax_common_case(x: typing.Any, axis: typing.Any, dtype: typing.Any, out: typing.Any) -> typing.Any:
    """
    log_softmax's arguments as given: the result of the common call (common_case.hpp); None for any other.
    """
def logsumexp(x: numpy.ndarray, out: numpy.ndarray, axis: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    out = logsumexp(x) along axis; out has x's shape without, or with 1 on, that axis.
    """
def logsumexp_common_case(x: typing.Any, axis: typing.Any, keepdims: typing.Any) -> typing.Any:
    """
    logsumexp's arguments as given: the result of the common call (common_case.hpp); None for any other.
    """
def merge_row_statistics(into: numpy.ndarray, piece: numpy.ndarray) -> None:
    """
    into = merge(into, piece), row by row, in place: float64 arrays of shape (..., 5) of mergeable softmax row statistics (max, sum_exp, target_logit, weighted_logit_sum, target_mass).
    """
def nll_loss(input: numpy.ndarray, target: numpy.ndarray, weight: typing.Any, ignore_index: typing.SupportsInt | typing.SupportsIndex, reduction: str, axis: typing.SupportsInt | typing.SupportsIndex, out: typing.Any, grad: typing.Any = None, grad_output: typing.Any = None) -> typing.Any:
    """
    Negative log-likelihood of log-probabilities; returns the mean/sum, or writes to out.
    """
def nll_loss_common_case(input: typing.Any, target: typing.Any, weight: typing.Any, ignore_index: typing.Any, reduction: typing.Any, axis: typing.Any, return_grad: typing.Any, grad_output: typing.Any, grad_out: typing.Any) -> typing.Any:
    """
    nll_loss's arguments as given: the result for (N, C) log-probabilities with int64 targets and default options (mean, sum, or none without gradient); None for any other call.
    """
def openmp_runtime() -> str:
    ...
def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    ...
def sigmoid_focal_loss(input: numpy.ndarray, target: numpy.ndarray, alpha: typing.SupportsFloat | typing.SupportsIndex, gamma: typing.SupportsFloat | typing.SupportsIndex, reduction: str, mean_count: typing.SupportsInt, out: typing.Any, grad: typing.Any = None, grad_output: typing.Any = None, unscaled_gradient: bool = False) -> typing.Any:
    """
    Sigmoid focal loss of logits (alpha < 0: no alpha weighting). reduction: 'sum', 'mean' (the sum / mean_count) or 'none' (every loss written to out; returns None). With grad, also writes there (it may be input itself) the gradient with respect to the input, times grad_output (reduction 'none', the input's shape) or times the number grad_output (/ mean_count for a mean); with unscaled_gradient, the gradient alone.
    """
def sigmoid_focal_loss_common_case(input: typing.Any, target: typing.Any, alpha: typing.Any, gamma: typing.Any, reduction: typing.Any, return_grad: typing.Any, grad_output: typing.Any, grad_out: typing.Any) -> typing.Any:
    """
    sigmoid_focal_loss's arguments as given: the result of the common call (common_case.hpp); None for any other.
    """
def softmax(x: numpy.ndarray, out: numpy.ndarray, axis: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    out = softmax(x) along axis (axis already normalised, out preallocated).
    """
def softmax_backward(grad_output: numpy.ndarray, output: numpy.ndarray, out: numpy.ndarray, axis: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    out = gradient of softmax from grad_output and the softmax output.
    """
__version__: str = '0.1.0'
def softmax_backward_common_case(grad_output: typing.Any, output: typing.Any, axis: typing.Any, out: typing.Any) -> typing.Any:
    """
    softmax_backward's arguments as given: the result of the common call (common_case.hpp); None for any other.
    """
def softmax_common_case(x: typing.Any, axis: typing.Any, dtype: typing.Any, out: typing.Any) -> typing.Any:
    """
    softmax's arguments as given: the result of the common call (common_case.hpp); None for any other.
    """
def topk_distillation(student: numpy.ndarray, indices: numpy.ndarray, logprobs: numpy.ndarray, target: typing.Any, weight: typing.Any, hard: numpy.ndarray, soft: numpy.ndarray, lse: numpy.ndarray, grad: typing.Any, scale: typing.Any, *, ignore_index: typing.SupportsInt | typing.SupportsIndex, label_smoothing: typing.SupportsFloat | typing.SupportsIndex, temperature: typing.SupportsFloat | typing.SupportsIndex, divergence: typing.SupportsInt | typing.SupportsIndex, beta: typing.SupportsFloat | typing.SupportsIndex, residual: typing.SupportsInt | typing.SupportsIndex, softcap: typing.SupportsFloat | typing.SupportsIndex, hard_grad: typing.SupportsFloat | typing.SupportsIndex, soft_grad: typing.SupportsFloat | typing.SupportsIndex, z_loss_grad: typing.SupportsFloat | typing.SupportsIndex) -> None:
    """
    Distillation from a top-k teacher over (rows, classes) student logits: writes each row's cross-entropy (hard), divergence (soft) and log-sum-exp, and with grad the gradient of the rows' share of the loss (scale * (hard_grad * dCE + soft_grad * T dD)).
    """
