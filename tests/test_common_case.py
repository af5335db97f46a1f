"""The common call of each function, recognised and run in C++ (cpp/bindings/common_case.hpp),
gives the general path's results bit for bit: the same values, dtypes and result types."""

from __future__ import annotations

import numpy as np
import pytest

import fastloss as fl
from fastloss import _core
from fastloss._validation import AxisError


class Reduction(str):
    """A str subclass: the common case takes only exact option types, so this one goes the
    general path with the same value."""


def _same(common, general):
    assert type(common) is type(general)
    if isinstance(common, tuple):
        assert len(common) == len(general)
        for c, g in zip(common, general):
            _same(c, g)
        return
    c, g = np.asarray(common), np.asarray(general)
    assert c.dtype == g.dtype and c.shape == g.shape
    assert c.tobytes() == g.tobytes()


def _inputs(dtype, shape, rng):
    x = rng.standard_normal(shape).astype(dtype) * 4
    if x.size:
        x.flat[0] = -np.inf
        x.flat[-1] = np.nan if x.size > 3 else x.flat[-1]
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(32, 10), (7,), (3, 0), (0, 4), (2, 3, 5)])
def test_softmax_family_common_case_is_the_general_path(dtype, shape, rng):
    x = _inputs(dtype, shape, rng)
    for axis in range(-len(shape), len(shape)):
        general_axis = np.int64(axis)  # not an exact int: the general path
        _same(fl.softmax(x, axis), fl.softmax(x, general_axis))
        _same(fl.log_softmax(x, axis), fl.log_softmax(x, general_axis))
        if x.shape[axis]:
            _same(fl.logsumexp(x, axis), fl.logsumexp(x, general_axis))
        _same(fl.entropy(x, axis), fl.entropy(x, general_axis))
        g = rng.standard_normal(shape).astype(dtype)
        y = fl.softmax(x, axis)
        _same(fl.softmax_backward(g, y, axis), fl.softmax_backward(g, y, general_axis))
        y = fl.log_softmax(x, axis)
        _same(fl.log_softmax_backward(g, y, axis), fl.log_softmax_backward(g, y, general_axis))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(32, 10), (7,), (3, 0), (2, 3, 5)])
@pytest.mark.parametrize("reduction", ["batchmean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_common_case_is_the_general_path(dtype, shape, reduction, log_target, rng):
    x = np.log(rng.uniform(0.01, 1, shape)).astype(dtype)
    t = rng.uniform(0, 1, shape).astype(dtype)
    if log_target:
        t = np.log(t)
    kw = dict(log_target=log_target)
    _same(
        fl.kl_div(x, t, reduction=reduction, **kw),
        fl.kl_div(x, t, reduction=Reduction(reduction), **kw),
    )
    if reduction != "none":
        _same(
            fl.kl_div(x, t, reduction=reduction, return_grad=True, **kw),
            fl.kl_div(x, t, reduction=Reduction(reduction), return_grad=True, **kw),
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(32, 10), (7,), (3, 0), (2, 3, 5)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("logits", [False, True])
def test_binary_cross_entropy_common_case_is_the_general_path(dtype, shape, reduction, logits, rng):
    y = rng.uniform(0, 1, shape).astype(dtype)
    if logits:
        x = _inputs(dtype, shape, rng)
        loss = fl.binary_cross_entropy_with_logits
    else:
        x = rng.uniform(0, 1, shape).astype(dtype)
        loss = fl.binary_cross_entropy
    _same(loss(x, y, reduction=reduction), loss(x, y, reduction=Reduction(reduction)))
    if reduction != "none":
        _same(
            loss(x, y, reduction=reduction, return_grad=True),
            loss(x, y, reduction=Reduction(reduction), return_grad=True),
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(32, 10), (7,), (3, 0), (2, 3, 5)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("options", [{}, {"alpha": -1.0, "gamma": 0.0}, {"gamma": 1.5}])
def test_sigmoid_focal_loss_common_case_is_the_general_path(dtype, shape, reduction, options, rng):
    x, t = _inputs(dtype, shape, rng), rng.uniform(0, 1, shape).astype(dtype)
    loss = fl.sigmoid_focal_loss
    general = Reduction(reduction)
    _same(loss(x, t, reduction=reduction, **options), loss(x, t, reduction=general, **options))
    if reduction != "none":
        _same(
            loss(x, t, reduction=reduction, return_grad=True, **options),
            loss(x, t, reduction=general, return_grad=True, **options),
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(32, 10), (7,), (0, 4), (3, 1)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"temperature": 1.0, "alpha": 0.0},
        {"label_smoothing": 0.25},
        {"divergence": "reverse_kl"},
        {"divergence": "jsd", "beta": 0.3},
    ],
)
def test_distillation_common_case_is_the_general_path(dtype, shape, reduction, options, rng):
    s, t = _inputs(dtype, shape, rng), rng.standard_normal(shape).astype(dtype)
    y = rng.integers(0, shape[-1], shape[:-1])
    if y.size:
        y.flat[0] = -100  # ignored
    loss = fl.distillation_loss
    general = Reduction(reduction)
    _same(
        loss(s, t, y, reduction=reduction, **options), loss(s, t, y, reduction=general, **options)
    )
    if reduction != "none":
        _same(
            loss(s, t, y, reduction=reduction, return_grad=True, **options),
            loss(s, t, y, reduction=general, return_grad=True, **options),
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(32, 10), (0, 4), (3, 1), (5, 0)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("target_dtype", [np.int64, np.float64])
def test_cosine_embedding_common_case_is_the_general_path(
    dtype, shape, reduction, target_dtype, rng
):
    a, b = _inputs(dtype, shape, rng), rng.standard_normal(shape).astype(dtype)
    y = np.where(np.arange(shape[0]) % 3 == 0, -1, 1).astype(target_dtype)
    loss = fl.cosine_embedding_loss
    general = Reduction(reduction)
    _same(
        loss(a, b, y, reduction=reduction, margin=0.1), loss(a, b, y, reduction=general, margin=0.1)
    )
    if reduction != "none":
        _same(
            loss(a, b, y, reduction=reduction, return_grad=True),
            loss(a, b, y, reduction=general, return_grad=True),
        )


def test_common_case_errors_are_the_general_paths():
    x = np.full((2, 3), 0.5, np.float32)
    with pytest.raises(ValueError, match="between 0 and 1"):
        fl.binary_cross_entropy(x + 1, x)
    with pytest.raises(ValueError, match="only used with return_grad=True"):
        fl.kl_div(x, x, reduction="sum", grad_out=np.empty_like(x))
    with pytest.warns(UserWarning, match="batchmean"):  # kl_div's mean warns: never the common case
        fl.kl_div(x, x)
    with pytest.raises(AxisError):
        fl.softmax(x, 2)
    with pytest.raises(IndexError, match="Target 3 is out of bounds"):
        fl.distillation_loss(x, x, np.array([0, 3]))
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0"):
        fl.sigmoid_focal_loss(x, x, gamma=-1.0)
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        fl.sigmoid_focal_loss(x, x, alpha=float("nan"))


def test_the_common_calls_are_recognised():
    # (so that the comparisons above compare two paths)
    x = np.full((2, 3), 0.5, np.float32)
    assert _core.softmax_common_case(x, -1, None, None) is not None
    assert _core.log_softmax_common_case(x, 0, None, None) is not None
    assert _core.logsumexp_common_case(x, 1, False) is not None
    assert _core.entropy_common_case(x, -1, None) is not None
    assert _core.kl_div_common_case(x, x, "batchmean", False, True, None, None) is not None
    assert _core.binary_cross_entropy_common_case(x, x, None, "mean", False, None, None) is not None
    args = (x, x, None, None, "sum", True, None, None)
    assert _core.binary_cross_entropy_with_logits_common_case(*args) is not None
    y = np.array([0, 2])
    args = (x, x, y, 2.0, 0.5, "kl", 0.5, "mean", None, -100, 0.0, None, False, None, None)
    assert _core.distillation_loss_common_case(*args) is not None
    args = (x, x, y, 2.0, 0.5, "jsd", 0.25, "mean", None, -100, 0.0, None, False, None, None)
    assert _core.distillation_loss_common_case(*args) is not None
    args = (x, x, np.array([1, -1]), 0.0, "mean", True, None, None)
    assert _core.cosine_embedding_loss_common_case(*args) is not None
    focal = _core.sigmoid_focal_loss_common_case
    assert focal(x, x, 0.25, 2.0, "none", False, None, None) is not None
    assert focal(x, x, 0.25, -1.0, "sum", True, None, None) is None  # gamma < 0: Python raises
    assert focal(x, x, 0.25, 2, "sum", True, None, None) is None  # an int gamma: the general path
    assert _core.softmax_backward_common_case(x, x, -1, None) is not None
    assert _core.log_softmax_backward_common_case(x, x, 0, None) is not None
    assert _core.softmax_common_case(x, np.int64(-1), None, None) is None
    assert _core.kl_div_common_case(x, x, Reduction("sum"), False, False, None, None) is None
    assert _core.kl_div_common_case(x, x, "mean", False, False, None, None) is None  # it warns


def test_the_common_calls_return_a_complete_loss_and_grad():
    # The common case builds fl.LossAndGrad in C++ (bindings/loss_result.hpp): it must be the
    # NamedTuple itself, holding one reference to each field and none leaked.
    import gc
    import pickle
    import sys

    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    y = np.array([0, 2])
    calls = {
        "cross_entropy": lambda: fl.cross_entropy(x, y, return_grad=True),
        "nll_loss": lambda: fl.nll_loss(x, y, return_grad=True),
        "kl_div": lambda: fl.kl_div(x, x, reduction="sum", return_grad=True),
        "bce": lambda: fl.binary_cross_entropy(x * 0 + 0.5, x * 0 + 0.25, return_grad=True),
        "bce_with_logits": lambda: fl.binary_cross_entropy_with_logits(x, x, return_grad=True),
        "distillation": lambda: fl.distillation_loss(x, x[::-1].copy(), y, return_grad=True),
        "cosine": lambda: fl.cosine_embedding_loss(x, x + 1, np.array([1, -1]), return_grad=True),
        "focal": lambda: fl.sigmoid_focal_loss(x, x * 0 + 0.5, reduction="mean", return_grad=True),
    }
    for name, call in calls.items():
        r = call()
        assert type(r) is fl.LossAndGrad, name
        assert r._fields == ("loss", "grad") and r.loss is r[0] and r.grad is r[1]
        assert r.grad.shape == x.shape and r.grad.base is None
        assert gc.is_tracked(r)
        assert sys.getrefcount(r.grad) == 3  # r, the temporary attribute, getrefcount's argument
        loss, grad = pickle.loads(pickle.dumps(r))
        assert np.array_equal(loss, r.loss, equal_nan=True)
        assert np.array_equal(grad, r.grad, equal_nan=True)
        assert repr(r).startswith("LossAndGrad(loss=")
        grad_ref = r.grad
        del r
        assert sys.getrefcount(grad_ref) == 2, name  # the tuple released its reference
