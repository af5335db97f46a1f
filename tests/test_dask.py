"""fastloss.dask against fastloss on the same data in memory: every function and option, over
row, class and mixed chunkings (uneven and one-element chunks too), float16 chunks, gradients,
laziness and the errors. The synchronous scheduler keeps these fast; test_dask_cluster.py runs
the same code on dask.distributed."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import fastloss as fl  # noqa: E402
import fastloss.dask as fld  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    # kl_div's reduction="mean" warns as PyTorch does (checked on its own below)
    "ignore:reduction. 'mean' divides the total loss:UserWarning"
)

N, C = 23, 19
# row chunks, class chunks, mixed (uneven), one-element chunks
CHUNKINGS = {
    "rows": (5, C),
    "classes": (N, 6),
    "mixed": ((10, 1, 12), (4, 11, 4)),
    "single": ((1, 1, 21), (1, 17, 1)),  # one-element chunks on both axes
}
F32 = float(np.finfo(np.float32).eps)


@pytest.fixture(autouse=True)
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


def assert_matches(got, expected, roundings=1):
    """Within one float32 rounding (float64: 1e-12 relative) of the in-memory result: relative
    to each value and to the largest (a row's loss lse - x_y is a difference of terms as large
    as lse, each rounded once; the in-memory kernel rounds them too). `roundings` allows
    more where the two compute in different orders."""
    expected = np.asarray(expected)
    got = np.asarray(got)
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    if expected.dtype == np.float64:
        finite = np.abs(expected[np.isfinite(expected)])
        scale = float(finite.max()) if finite.size else 0.0
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * max(scale, 1e-2))
    elif expected.dtype == np.float16:
        np.testing.assert_allclose(got.astype(np.float32), expected.astype(np.float32),
                                   rtol=1e-3, atol=1e-3)
    else:
        finite = np.abs(expected[np.isfinite(expected)])
        scale = float(finite.max()) if finite.size else 0.0
        np.testing.assert_allclose(got, expected, rtol=roundings * F32,
                                   atol=roundings * F32 * max(scale, 1e-2))


def compute(result):
    return dask.compute(*result) if isinstance(result, tuple) else result.compute()


def data(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((N, C)) * 3).astype(dtype)
    t = rng.integers(0, C, N)
    t[[0, 7, 8]] = -100  # ignored targets, some in a chunk of their own
    q = fl.softmax(rng.standard_normal((N, C))).astype(dtype)
    w = rng.uniform(0.5, 2, C).astype(dtype)
    teacher = (rng.standard_normal((N, C)) * 2).astype(dtype)
    return x, t, q, w, teacher


def chunked(a, name):
    return da.from_array(a, chunks=CHUNKINGS[name])


REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "options",
    [{}, {"weight": True}, {"label_smoothing": 0.1}, {"weight": True, "label_smoothing": 0.25},
     {"ignore_index": 3}],
    ids=["plain", "weight", "smoothing", "weight+smoothing", "ignore3"],
)
def test_cross_entropy_index_targets(chunking, reduction, options):
    x, t, _, w, _ = data()
    kw = {**options, **({"weight": w} if options.get("weight") else {})}
    t[t == -100] = kw.get("ignore_index", -100)
    got = fld.cross_entropy(chunked(x, chunking), t, reduction=reduction, **kw)
    assert_matches(got.compute(), fl.cross_entropy(x, t, reduction=reduction, **kw))


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_probability_targets(chunking, reduction, smoothing):
    x, _, q, w, _ = data()
    got = fld.cross_entropy(chunked(x, chunking), chunked(q, chunking), weight=w,
                            reduction=reduction, label_smoothing=smoothing)
    expected = fl.cross_entropy(x, q, weight=w, reduction=reduction, label_smoothing=smoothing)
    assert_matches(got.compute(), expected)


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss(chunking, reduction):
    x, t, _, w, _ = data()
    lp = fl.log_softmax(x)
    for kw in ({}, {"weight": w}):
        got = fld.nll_loss(chunked(lp, chunking), t, reduction=reduction, **kw)
        assert_matches(got.compute(), fl.nll_loss(lp, t, reduction=reduction, **kw))


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
def test_softmax_family_and_entropy(chunking):
    x, _, q, _, _ = data()
    xd = chunked(x, chunking)
    for axis in (-1, 0):
        assert_matches(fld.softmax(xd, axis).compute(), fl.softmax(x, axis))
        assert_matches(fld.log_softmax(xd, axis).compute(), fl.log_softmax(x, axis))
        assert_matches(fld.logsumexp(xd, axis).compute(), fl.logsumexp(x, axis))
        assert_matches(fld.logsumexp(xd, axis, keepdims=True).compute(),
                       fl.logsumexp(x, axis, keepdims=True))
        assert_matches(fld.entropy(xd, axis).compute(), fl.entropy(x, axis))
        assert_matches(fld.entropy(probs=chunked(q, chunking), axis=axis).compute(),
                       fl.entropy(probs=q, axis=axis))
    assert_matches(fld.softmax(xd, dtype=np.float64).compute(), fl.softmax(x, dtype=np.float64))
    assert_matches(fld.log_softmax(xd, dtype=np.float64).compute(),
                   fl.log_softmax(x, dtype=np.float64))


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("axis", [(0, 1), (1, 0), None, (-1,), ()])
def test_logsumexp_over_several_axes(chunking, axis):
    x = data()[0]
    x[2, 3], x[5] = np.inf, -np.inf
    xd = chunked(x, chunking)
    for keepdims in (False, True):
        assert_matches(fld.logsumexp(xd, axis, keepdims=keepdims).compute(),
                       fl.logsumexp(x, axis, keepdims=keepdims))
    x3 = data(np.float64)[0][: 2 * (N // 2)].reshape(2, N // 2, C)
    x3d = da.from_array(x3, chunks=(1, 3, 4))
    assert_matches(fld.logsumexp(x3d, (0, 2)).compute(), fl.logsumexp(x3, (0, 2)))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", [
    {"z_loss": 1e-2}, {"softcap": 5.0}, {"z_loss": 1e-2, "softcap": 5.0, "weight": True},
    {"z_loss": 1e-2, "ignore_index": 3, "label_smoothing": 0.1},
], ids=["z_loss", "softcap", "both+weight", "z_loss+ignore3+smoothing"])
def test_cross_entropy_options_of_row_chunks(reduction, options):
    x, t, q, w, _ = data()
    options = dict(options)
    if options.pop("weight", False):
        options["weight"] = w
    if "ignore_index" in options:
        t = np.where(t == -100, options["ignore_index"], t)
    xd = chunked(x, "rows")
    go = np.linspace(-1, 1, N).astype(np.float32) if reduction == "none" else 0.5
    got = compute(tuple(fld.cross_entropy(xd, t, reduction=reduction, return_lse=True,
                                          return_grad=True, grad_output=go, **options)))
    want = fl.cross_entropy(x, t, reduction=reduction, return_lse=True, return_grad=True,
                            grad_output=go, **options)
    for g, e in zip(got, want):
        assert_matches(g, e, roundings=4)
    if "ignore_index" not in options:  # probabilities: every position carries the z-loss
        assert_matches(fld.cross_entropy(xd, q, reduction=reduction, **options).compute(),
                       fl.cross_entropy(x, q, reduction=reduction, **options), roundings=4)
    lse = fld.cross_entropy(chunked(x, "classes"), t, return_lse=True).lse.compute()
    assert_matches(lse, fl.cross_entropy(x, t, return_lse=True).lse)
    with pytest.raises(ValueError, match=r"z_loss or softcap needs the class axis 1 .* rechunk"):
        fld.cross_entropy(chunked(x, "classes"), t, **options)


@pytest.mark.parametrize("divergence", ["reverse_kl", "jsd"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_distillation_divergences_of_row_chunks(divergence, reduction):
    x, t, _, _, teacher = data()
    options = dict(divergence=divergence, beta=0.3, reduction=reduction, return_grad=True)
    got = compute(tuple(fld.distillation_loss(chunked(x, "rows"), chunked(teacher, "rows"), t,
                                              **options)))
    want = fl.distillation_loss(x, teacher, t, **options)
    for g, e in zip(got, want):
        assert_matches(g, e, roundings=4)
    with pytest.raises(ValueError, match=f"divergence='{divergence}' needs the class axis"):
        fld.distillation_loss(chunked(x, "classes"), chunked(teacher, "classes"), t,
                              divergence=divergence)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_distillation_z_loss_of_row_chunks(reduction, weighted):
    """The hard term's z-loss keeps its own mean (over the non-ignored positions) across blocks."""
    x, t, q, w, teacher = data()
    go = np.linspace(-1, 1, N).astype(np.float32) if reduction == "none" else 0.5
    options = dict(z_loss=1e-2, alpha=0.3, divergence="jsd", reduction=reduction,
                   weight=w if weighted else None, return_grad=True, grad_output=go)
    for target in (t, q):
        got = compute(tuple(fld.distillation_loss(chunked(x, "rows"), chunked(teacher, "rows"),
                                                  target, **options)))
        want = fl.distillation_loss(x, teacher, target, **options)
        for g, e in zip(got, want):
            assert_matches(g, e, roundings=4)
    with pytest.raises(ValueError, match="z_loss needs the class axis"):
        fld.distillation_loss(chunked(x, "classes"), chunked(teacher, "classes"), t, z_loss=1e-2)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_distillation_topk_teacher_of_row_chunks(reduction):
    """A top-k teacher's (indices, logprobs), chunked as the student's rows (the k entries whole,
    or split and gathered), with every hard-term option."""
    x, t, q, w, teacher = data()
    indices = np.argsort(-teacher, axis=1)[:, :4]
    logprobs = np.take_along_axis(fl.log_softmax(teacher / 2.0, axis=1), indices, axis=1)
    go = np.linspace(-1, 1, N).astype(np.float32) if reduction == "none" else 0.5
    options = dict(z_loss=1e-2, alpha=0.3, divergence="jsd", reduction=reduction, weight=w,
                   topk_residual="tail", return_grad=True, grad_output=go)
    for target, k_chunks in ((t, 4), (q, 2)):
        topk = (da.from_array(indices, chunks=(5, k_chunks)), logprobs)
        got = compute(tuple(fld.distillation_loss(chunked(x, "rows"), None, target,
                                                  teacher_topk=topk, **options)))
        want = fl.distillation_loss(x, None, target, teacher_topk=(indices, logprobs), **options)
        for g, e in zip(got, want):
            assert_matches(g, e, roundings=4)
    with pytest.raises(ValueError, match="teacher_topk needs the class axis"):
        fld.distillation_loss(chunked(x, "classes"), None, t, teacher_topk=(indices, logprobs))
    with pytest.raises(ValueError, match="exactly one of teacher_logits and teacher_topk"):
        fld.distillation_loss(chunked(x, "rows"), teacher, t, teacher_topk=(indices, logprobs))


def test_every_chunk_a_single_element():
    x, t, q, w, _ = data()
    x, t, q = x[:4, :5], np.array([0, -100, 4, 2]), fl.softmax(q[:4, :5])
    xd = da.from_array(x, chunks=1)
    assert_matches(fld.cross_entropy(xd, t, weight=w[:5], label_smoothing=0.1).compute(),
                   fl.cross_entropy(x, t, weight=w[:5], label_smoothing=0.1))
    assert_matches(fld.cross_entropy(xd, da.from_array(q, chunks=1)).compute(),
                   fl.cross_entropy(x, q))
    assert_matches(fld.log_softmax(xd).compute(), fl.log_softmax(x))
    assert_matches(fld.nll_loss(xd, t).compute(), fl.nll_loss(x, t))


def test_softmax_of_extreme_rows_with_class_chunks():
    x = np.array([[0, -np.inf, 0, 1e30], [-np.inf] * 4, [1e8, 1e8 + 1, 1e8, -1e8],
                  [np.nan, 0, 0, 0]], np.float32)
    xd = da.from_array(x, chunks=(2, 1))
    with np.errstate(invalid="ignore"):
        expected = fl.logsumexp(x)
    np.testing.assert_array_equal(np.isnan(fld.logsumexp(xd).compute()), np.isnan(expected))
    assert_matches(fld.logsumexp(xd).compute()[[0, 2]], expected[[0, 2]])
    np.testing.assert_allclose(fld.softmax(xd).compute()[2], fl.softmax(x)[2], rtol=F32)


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_distillation_loss(chunking, reduction):
    x, t, q, w, teacher = data()
    kw = dict(temperature=1.7, alpha=0.3, weight=w, label_smoothing=0.1)
    got = fld.distillation_loss(chunked(x, chunking), chunked(teacher, chunking), t,
                                reduction=reduction, **kw)
    assert_matches(got.compute(), fl.distillation_loss(x, teacher, t, reduction=reduction, **kw))
    got = fld.distillation_loss(chunked(x, chunking), teacher, q, reduction=reduction)
    assert_matches(got.compute(), fl.distillation_loss(x, teacher, q, reduction=reduction))


def test_distillation_loss_class_chunks_edge_cases():
    x, t, _, w, teacher = data()
    x[2, 3] = teacher[4, 5] = -np.inf  # student -inf under teacher mass: KL +inf
    teacher[2, 3] = x[6, 6] = teacher[6, 6] = -np.inf  # both -inf: kl_div's NaN
    xd, td = chunked(x, "mixed"), chunked(teacher, "mixed")
    everything = np.full(N, -100)
    cases = [(a, r) for a in (0.0, 1.0) for r in ("mean", "none")]
    cases += [(0.6, r) for r in REDUCTIONS]
    for (alpha, reduction), target in itertools.product(cases, (t, everything)):
        kw = dict(alpha=alpha, weight=w, reduction=reduction)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            got = fld.distillation_loss(xd, td, target, **kw).compute()
            expected = fl.distillation_loss(x, teacher, target, **kw)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
        finite = np.isfinite(expected)
        assert_matches(np.asarray(got)[finite], np.asarray(expected)[finite])


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("reduction", [*REDUCTIONS, "batchmean"])
def test_elementwise_losses(chunking, reduction):
    x, _, q, w, teacher = data()
    lp, target = fl.log_softmax(x), fl.softmax(teacher)
    for log_target in (False, True):
        tg = np.log(target) if log_target else target
        got = fld.kl_div(chunked(lp, chunking), chunked(tg, chunking), reduction=reduction,
                         log_target=log_target)
        assert_matches(got.compute(),
                       fl.kl_div(lp, tg, reduction=reduction, log_target=log_target))
    if reduction == "batchmean":
        return
    p = fl.softmax(x)
    got = fld.binary_cross_entropy(chunked(p, chunking), q, weight=w, reduction=reduction)
    assert_matches(got.compute(), fl.binary_cross_entropy(p, q, weight=w, reduction=reduction))
    got = fld.binary_cross_entropy_with_logits(chunked(x, chunking), q, weight=w, pos_weight=w,
                                               reduction=reduction)
    assert_matches(got.compute(), fl.binary_cross_entropy_with_logits(
        x, q, weight=w, pos_weight=w, reduction=reduction))


def test_kl_div_mean_warns_as_the_numpy_function():
    x, _, q, _, _ = data()
    with pytest.warns(UserWarning, match="batchmean"):
        fld.kl_div(da.from_array(fl.log_softmax(x)), q)


def test_class_axis_one_with_spatial_positions_and_axis_minus_one():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 7, 3, 5)).astype(np.float32)  # (N, C, d1, d2)
    t = rng.integers(0, 7, (4, 3, 5))
    t[1] = -100
    xd = da.from_array(x, chunks=(2, 3, 2, 5))
    for reduction in REDUCTIONS:
        assert_matches(fld.cross_entropy(xd, t, reduction=reduction).compute(),
                       fl.cross_entropy(x, t, reduction=reduction))
    lm = rng.standard_normal((2, 6, 11)).astype(np.float32)  # (B, T, V), axis=-1
    lt = rng.integers(0, 11, (2, 6))
    lmd = da.from_array(lm, chunks=(1, 4, 5))
    assert_matches(fld.cross_entropy(lmd, lt, axis=-1).compute(),
                   fl.cross_entropy(lm, lt, axis=-1))
    got = fld.cross_entropy(da.from_array(lm, chunks=(1, 4, 11)), lt, axis=-1, return_grad=True)
    expected = fl.cross_entropy(lm, lt, axis=-1, return_grad=True)
    for g, e in zip(compute(tuple(got)), expected):
        assert_matches(g, e)


def test_float64_within_1e12():
    x, t, q, w, _ = data(np.float64)
    for chunking in CHUNKINGS:
        xd = chunked(x, chunking)
        assert_matches(fld.cross_entropy(xd, t, weight=w, label_smoothing=0.1).compute(),
                       fl.cross_entropy(x, t, weight=w, label_smoothing=0.1))
        assert_matches(fld.cross_entropy(xd, q).compute(), fl.cross_entropy(x, q))
        assert_matches(fld.logsumexp(xd).compute(), fl.logsumexp(x))


def test_mixed_dtypes_promote_as_in_memory():
    x, t, q, w, _ = data()
    w64, q64 = w.astype(np.float64), q.astype(np.float64)
    for chunking in CHUNKINGS:
        xd = chunked(x, chunking)
        assert_matches(fld.cross_entropy(xd, t, weight=w64, label_smoothing=0.1).compute(),
                       fl.cross_entropy(x, t, weight=w64, label_smoothing=0.1))
        assert_matches(fld.cross_entropy(xd, chunked(q64, chunking)).compute(),
                       fl.cross_entropy(x, q64))


def test_float16_chunks():
    x, t, *_ = data(np.float16)
    for chunking in CHUNKINGS:
        xd = chunked(x, chunking)
        for reduction in REDUCTIONS:
            assert_matches(fld.cross_entropy(xd, t, reduction=reduction).compute(),
                           fl.cross_entropy(x, t, reduction=reduction))
        assert_matches(fld.softmax(xd).compute(), fl.softmax(x))
        assert_matches(fld.entropy(xd).compute(), fl.entropy(x))
    got = fld.cross_entropy(chunked(x, "rows"), t, return_grad=True)
    for g, e in zip(compute(tuple(got)), fl.cross_entropy(x, t, return_grad=True)):
        assert_matches(g, e)


def test_bfloat16_chunks():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = data()[0].astype(ml_dtypes.bfloat16)
    t = data()[1]
    for chunking in ("rows", "mixed"):
        got = fld.cross_entropy(chunked(x, chunking), t).compute()
        expected = fl.cross_entropy(x, t)
        assert got.dtype == expected.dtype
        np.testing.assert_allclose(np.float32(got), np.float32(expected), rtol=1e-2)


def test_every_target_of_a_chunk_ignored_and_of_all():
    x, t, _, w, teacher = data()
    t[:5] = -100  # the whole first row chunk
    for chunking in CHUNKINGS:
        xd = chunked(x, chunking)
        assert_matches(fld.cross_entropy(xd, t, weight=w).compute(),
                       fl.cross_entropy(x, t, weight=w))
    everything = np.full(N, -100)
    with np.errstate(invalid="ignore"):
        for chunking in CHUNKINGS:
            assert np.isnan(fld.cross_entropy(chunked(x, chunking), everything).compute())
        got = fld.cross_entropy(chunked(x, "rows"), everything, return_grad=True)
        loss, grad = compute(tuple(got))
        assert np.isnan(loss) and not grad.any()
        got = fld.distillation_loss(chunked(x, "rows"), teacher, everything, return_grad=True)
        expected = fl.distillation_loss(x, teacher, everything, return_grad=True)
    loss, grad = compute(tuple(got))
    assert np.isnan(loss) and np.isnan(expected.loss)
    assert_matches(grad, expected.grad)


GRADIENT_CASES = {
    "cross_entropy": lambda x, t, q, w, te: (fl.cross_entropy, (x, t),
                                             dict(weight=w, label_smoothing=0.1)),
    "cross_entropy_probs": lambda x, t, q, w, te: (fl.cross_entropy, (x, q), {}),
    "nll_loss": lambda x, t, q, w, te: (fl.nll_loss, (x, t), dict(weight=w)),
    "distillation": lambda x, t, q, w, te: (fl.distillation_loss, (x, te, t),
                                            dict(alpha=0.4, weight=w)),
    "kl_div": lambda x, t, q, w, te: (fl.kl_div, (fl.log_softmax(x), q), dict(log_target=False)),
    "bce": lambda x, t, q, w, te: (fl.binary_cross_entropy, (fl.softmax(x), q), dict(weight=w)),
    "bce_logits": lambda x, t, q, w, te: (fl.binary_cross_entropy_with_logits, (x, q),
                                          dict(pos_weight=w)),
}


@pytest.mark.parametrize("case", list(GRADIENT_CASES))
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("grad_output", [None, 0.5])
def test_gradients_of_row_chunks(case, reduction, grad_output):
    x, t, q, w, te = data()
    function, args, kw = GRADIENT_CASES[case](x, t, q, w, te)
    go = grad_output
    if reduction == "none" and grad_output is not None:
        go = np.random.default_rng(1).uniform(0, 1, function(*args, reduction="none", **kw).shape)
    first = da.from_array(args[0], chunks=((10, 1, 12), C))
    got = getattr(fld, function.__name__)(first, *args[1:], reduction=reduction,
                                          return_grad=True, grad_output=go, **kw)
    assert got.grad.chunks == first.chunks
    expected = function(*args, reduction=reduction, return_grad=True, grad_output=go, **kw)
    loss, grad = compute(tuple(got))
    assert_matches(loss, expected.loss)
    assert_matches(grad, expected.grad)


@pytest.mark.parametrize("chunking", ["classes", "mixed", "single"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("targets", ["index", "probabilities"])
def test_cross_entropy_gradient_of_class_chunks(chunking, reduction, targets):
    x, t, q, w, _ = data()
    target = t if targets == "index" else chunked(q, chunking)
    expected_target = t if targets == "index" else q
    go = 0.5 if reduction != "none" else np.random.default_rng(2).uniform(0, 1, N)
    kw = dict(weight=w, label_smoothing=0.1, reduction=reduction, grad_output=go)
    got = fld.cross_entropy(chunked(x, chunking), target, return_grad=True, **kw)
    assert got.grad.chunks == chunked(x, chunking).chunks
    expected = fl.cross_entropy(x, expected_target, return_grad=True, **kw)
    loss, grad = compute(tuple(got))
    assert_matches(loss, expected.loss)
    # softmax from the merged statistics' lse (float64) against the kernel's float32 one
    assert_matches(grad, expected.grad, roundings=4)


def test_gradient_of_an_input_that_broadcasting_stretched():
    x, _, q, _, _ = data()
    lp = fl.log_softmax(x)[:1]  # (1, C) against (N, C) targets
    got = fld.kl_div(da.from_array(lp), da.from_array(q, chunks=(5, C)), reduction="batchmean",
                     return_grad=True)
    expected = fl.kl_div(lp, q, reduction="batchmean", return_grad=True)
    loss, grad = compute(tuple(got))
    assert_matches(loss, expected.loss)
    assert_matches(grad, expected.grad)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("targets", ["index", "probabilities"])
def test_linear_cross_entropy_vocabulary_parallel(reduction, targets):
    rng = np.random.default_rng(5)
    n, d, v = 21, 8, 37
    h = rng.standard_normal((n, d)).astype(np.float32)
    weight = (rng.standard_normal((v, d)) * 0.5).astype(np.float32)
    bias = rng.standard_normal(v).astype(np.float32)
    cw = rng.uniform(0.5, 2, v).astype(np.float32)
    if targets == "index":
        t = rng.integers(0, v, n)
        t[:4] = -100
        td = t
    else:
        t = fl.softmax(rng.standard_normal((n, v))).astype(np.float32)
        td = da.from_array(t, chunks=((7, 14), (10, 10, 17)))
    kw = dict(linear_bias=bias, weight=cw, label_smoothing=0.1, reduction=reduction)
    hd = da.from_array(h, chunks=((7, 14), d))
    wd = da.from_array(weight, chunks=((10, 10, 17), d))
    loss, lse = fld.linear_cross_entropy(hd, wd, td, return_lse=True, **kw)
    assert_matches(loss.compute(), fl.linear_cross_entropy(h, weight, t, **kw))
    np.testing.assert_allclose(lse.compute(), fl.logsumexp(h.astype(np.float64) @ weight.T.astype(
        np.float64) + bias), rtol=1e-6)
    got = fld.linear_cross_entropy(hd, wd, td, return_grad=True, **kw)
    assert got.grad_input.chunks == hd.chunks and got.grad_weight.chunks == wd.chunks
    expected = fl.linear_cross_entropy(h, weight, t, return_grad=True, **kw)
    results = dask.compute(got.loss, got.grad_input, got.grad_weight, got.grad_bias)
    assert_matches(results[0], expected.loss)
    for g, e in zip(results[1:], expected[1:]):  # BLAS sums in another order: a few roundings
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("softcap", [None, 2.0])
def test_linear_cross_entropy_z_loss_softcap_and_lse(reduction, softcap):
    rng = np.random.default_rng(6)
    n, d, v = 21, 8, 37
    h = rng.standard_normal((n, d)).astype(np.float32)
    weight = (rng.standard_normal((v, d)) * 0.5).astype(np.float32)
    cw = rng.uniform(0.5, 2, v).astype(np.float32)
    t = rng.integers(0, v, n)
    t[:4] = -100
    go = np.linspace(-1, 1, n).astype(np.float32) if reduction == "none" else 0.5
    kw = dict(weight=cw, label_smoothing=0.1, reduction=reduction, z_loss=0.02, softcap=softcap,
              return_lse=True, return_grad=True, grad_output=go)
    got = fld.linear_cross_entropy(da.from_array(h, chunks=((7, 14), d)),
                                   da.from_array(weight, chunks=((10, 10, 17), d)), t, **kw)
    assert type(got) is fl.LinearLossLseAndGrad
    expected = fl.linear_cross_entropy(h, weight, t, **kw)
    results = dask.compute(*got[:4])
    assert_matches(results[0], expected.loss, roundings=4)
    assert_matches(results[1], expected.lse)
    for g, e in zip(results[2:], expected[2:4]):  # BLAS sums in another order
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def test_inputs_are_never_modified():
    x, t, q, w, teacher = data()
    copies = [a.copy() for a in (x, t, q, w, teacher)]
    xd = da.from_array(x, chunks=(5, 6))
    fld.cross_entropy(xd, t, weight=w, label_smoothing=0.1).compute()
    fld.cross_entropy(xd, q).compute()
    fld.softmax(xd).compute()
    compute(tuple(fld.cross_entropy(da.from_array(x, chunks=(5, C)), t, return_grad=True)))
    compute(tuple(fld.distillation_loss(da.from_array(x, chunks=(5, C)), teacher, t,
                                        return_grad=True)))
    for a, c in zip((x, t, q, w, teacher), copies):
        np.testing.assert_array_equal(a, c)


# ---------------------------------------------------------------------------------------------
# laziness


def _refuse(block):
    raise AssertionError("a block was computed")


def test_nothing_is_computed_at_call_time():
    x, t, q, w, teacher = data()
    poisoned = da.from_array(x, chunks=(5, 6)).map_blocks(_refuse, dtype=x.dtype)
    rows = da.from_array(x, chunks=(5, C)).map_blocks(_refuse, dtype=x.dtype)
    targets = da.from_array(t, chunks=5).map_blocks(_refuse, dtype=t.dtype)
    calls = [
        lambda: fld.cross_entropy(poisoned, targets, weight=w),
        lambda: fld.cross_entropy(rows, targets, return_grad=True),
        lambda: fld.nll_loss(poisoned, targets),
        lambda: fld.distillation_loss(rows, teacher, targets, return_grad=True),
        lambda: fld.kl_div(poisoned, q, reduction="batchmean", return_grad=True),
        lambda: fld.binary_cross_entropy_with_logits(poisoned, q, return_grad=True),
        lambda: fld.softmax(poisoned),
        lambda: fld.logsumexp(poisoned),
        lambda: fld.entropy(poisoned),
        lambda: fld.linear_cross_entropy(poisoned[:, :4], poisoned[:, :4], targets),
    ]
    for call in calls:
        result = call()
        with pytest.raises(AssertionError, match="a block was computed"):
            compute(tuple(result) if isinstance(result, tuple) else result)


# ---------------------------------------------------------------------------------------------
# errors


def test_unknown_chunk_sizes():
    x, t, *_ = data()
    xd = da.from_array(x, chunks=(5, C))
    unknown = xd[da.from_array(t) >= -200]  # boolean indexing: NaN row chunks
    with pytest.raises(ValueError, match=r"input has unknown \(NaN\) chunk sizes along axis 0"):
        fld.cross_entropy(unknown, t)
    with pytest.raises(ValueError, match="target has unknown"):
        fld.cross_entropy(xd, da.from_array(t)[da.from_array(t) >= -200])


def test_chunks_that_do_not_align():
    x, t, q, *_ = data()
    xd = da.from_array(x, chunks=(5, C))
    with pytest.raises(ValueError, match=r"target's chunks along axis 0 .* input's chunks"):
        fld.cross_entropy(xd, da.from_array(t, chunks=7))
    with pytest.raises(ValueError, match=r"target's chunks along axis 1"):
        fld.cross_entropy(da.from_array(x, chunks=(5, 6)), da.from_array(q, chunks=(5, 7)))
    with pytest.raises(ValueError, match="rechunk"):
        fld.kl_div(xd, da.from_array(q, chunks=(6, C)), reduction="sum")


def test_wrong_operands():
    x, t, q, w, _ = data()
    xd = da.from_array(x, chunks=(5, C))
    with pytest.raises(TypeError, match="weight must be a NumPy array"):
        fld.cross_entropy(xd, t, weight=da.from_array(w))
    with pytest.raises(TypeError, match="input must be a dask array or a NumPy array"):
        fld.cross_entropy(dask.delayed(x), t)
    with pytest.raises(TypeError, match="class indices must be integers"):
        fld.cross_entropy(xd, t.astype(np.float32))
    with pytest.raises(ValueError, match="target has shape"):
        fld.cross_entropy(xd, t[:5])
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        fld.cross_entropy(xd, t, reduction="avg")
    with pytest.raises(ValueError, match="weight must have shape"):
        fld.cross_entropy(xd, t, weight=w[:3])
    with pytest.raises(ValueError, match="cannot be broadcast"):
        fld.kl_div(xd, q[:, :3], reduction="sum")
    with pytest.raises(ValueError, match=r"class axis 1 .* in one chunk.*rechunk"):
        fld.nll_loss(da.from_array(x, chunks=(5, 6)), t, return_grad=True)
    with pytest.raises(ValueError, match="repeated axis"):
        fld.logsumexp(xd, axis=(1, -1))
    with pytest.raises(TypeError, match="one integer axis"):
        fld.softmax(xd, axis=(0, 1))
    with pytest.raises(ValueError, match="grad_output must be a number"):
        fld.cross_entropy(xd, t, return_grad=True, grad_output=np.ones(N))


def test_numpy_operands_are_wrapped_to_meet_the_blocks():
    x, t, *_, teacher = data()
    got = fld.distillation_loss(x, teacher, t, reduction="sum")  # all NumPy
    assert isinstance(got, da.Array)
    assert_matches(got.compute(), fl.distillation_loss(x, teacher, t, reduction="sum"))


def test_out_of_range_target_raises_at_compute():
    x, t, *_ = data()
    t[3] = C
    for chunking in CHUNKINGS:
        loss = fld.cross_entropy(chunked(x, chunking), t)
        with pytest.raises(IndexError, match=f"Target {C} is out of bounds"):
            loss.compute()


def test_no_warning_from_dask_in_the_common_call():
    x, t, *_ = data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fld.cross_entropy(da.from_array(x, chunks=(5, 6)), t).compute()
