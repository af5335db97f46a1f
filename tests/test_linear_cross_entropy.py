"""linear_cross_entropy: values and the three gradients against torch's
F.linear_cross_entropy and autograd (in float64, on the same values), a float64 NumPy reference,
finite differences, tile boundaries, errors and the memory bound."""

from __future__ import annotations

import tracemalloc
from typing import Any, Optional

import ml_dtypes
import numpy as np
import pytest

import fastloss as fl
import fastloss._linear_cross_entropy as lce
import reference as ref

BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), BF16]
# Against a float64 reference: float64 to a few ulps of its sums; float32 computes the logits in
# float32 (a GEMM of d terms); half dtypes round the results once to 11 or 8 bits.
TOL = {
    "float64": dict(rtol=1e-10, atol=1e-12),
    "float32": dict(rtol=2e-5, atol=2e-6),
    "float16": dict(rtol=2e-3, atol=1e-4),
    "bfloat16": dict(rtol=1.6e-2, atol=1e-3),
}


def make_case(
    rng: np.random.Generator,
    dtype: np.dtype,
    positions: tuple[int, ...],
    features: int,
    classes: int,
    probabilities: bool = False,
    ignore: Optional[int] = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = rng.standard_normal((*positions, features)).astype(dtype)
    w = (rng.standard_normal((classes, features)) / np.sqrt(max(features, 1)) * 3).astype(dtype)
    b = rng.standard_normal(classes).astype(dtype)
    if probabilities:
        t = rng.random((*positions, classes)).astype(dtype)
    else:
        t = rng.integers(0, classes, positions)
        if ignore is not None and t.size:
            t.ravel()[::3] = ignore
    return x, w, b, t


def torch_reference(x, w, b, t, go, *, with_bias: bool, **options: Any):
    """torch's loss and autograd gradients in float64, on the values of our operands."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional

    def f64(a):
        return torch.tensor(np.asarray(a, np.float64), requires_grad=True)

    tx, tw = f64(x), f64(w)
    tb = f64(b) if with_bias else None
    tt = (
        torch.tensor(t.astype(np.float64))
        if t.dtype.kind in "fV"
        else torch.tensor(t.astype(np.int64))
    )
    if options.get("weight") is not None:
        options = {**options, "weight": torch.tensor(np.asarray(options["weight"], np.float64))}
    # torch takes 1-D or 2-D inputs: (B, T, d) goes in as (B*T, d), as a language model does.
    flat = tx.reshape(-1, tx.shape[-1]) if tx.ndim > 2 else tx
    flat_t = tt.reshape(-1, *tt.shape[tx.ndim - 1 :]) if tx.ndim > 2 else tt
    loss = F.linear_cross_entropy(flat, tw, flat_t, linear_bias=tb, **options)
    if tx.ndim > 2 and loss.ndim:
        loss = loss.reshape(tx.shape[:-1])
    grad_output = torch.tensor(np.asarray(go, np.float64))
    (loss * grad_output).sum().backward()
    return (
        loss.detach().numpy(),
        tx.grad.numpy(),
        tw.grad.numpy(),
        None if tb is None else tb.grad.numpy(),
    )


def assert_close(actual, expected, dtype: np.dtype) -> None:
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, **TOL[dtype.name])


CASES = [
    # (positions, features, classes, options, probabilities, bias, chunk_size)
    ((13,), 7, 37, {}, False, True, 5),
    ((13,), 7, 37, {"reduction": "sum", "label_smoothing": 0.2}, False, False, None),
    ((2, 5), 6, 23, {"reduction": "none", "ignore_index": 4}, False, True, 3),
    ((), 5, 11, {"label_smoothing": 0.1}, False, True, None),
    ((9,), 4, 19, {"weight": "random", "ignore_index": 2, "label_smoothing": 0.3}, False, True, 4),
    ((3, 2, 2), 5, 17, {"weight": "random", "reduction": "none"}, False, False, 5),
    ((8,), 6, 21, {}, True, True, 3),
    ((2, 3), 5, 13, {"label_smoothing": 0.25, "weight": "random"}, True, True, 4),
    ((7,), 5, 29, {"reduction": "sum", "weight": "random"}, True, False, None),
    ((6,), 3, 1, {"label_smoothing": 0.5}, False, True, 4),  # one class
    # vocabulary tiles: the gradient computes each tile's logits again (widened for half dtypes)
    ((9,), 4, 19, {"label_smoothing": 0.2, "weight": "random"}, False, True, (4, 6)),
    ((2, 4), 4, 19, {"reduction": "none"}, True, True, (3, 5)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_values_and_gradients_match_torch(dtype, case, rng):
    positions, features, classes, options, probabilities, with_bias, chunk = CASES[case]
    options = dict(options)
    ignore = options.get("ignore_index")
    x, w, b, t = make_case(rng, dtype, positions, features, classes, probabilities, ignore)
    if options.get("weight") == "random":
        options["weight"] = (rng.random(classes) + 0.5).astype(dtype)
    reduction = options.get("reduction", "mean")
    go = rng.random(positions) + 0.5 if reduction == "none" else 1.7
    result = fl.linear_cross_entropy(
        x,
        w,
        t,
        linear_bias=b if with_bias else None,
        chunk_size=chunk,
        return_grad=True,
        grad_output=go,
        **options,
    )
    loss = fl.linear_cross_entropy(
        x, w, t, linear_bias=b if with_bias else None, chunk_size=chunk, **options
    )
    expected = torch_reference(x, w, b, t, go, with_bias=with_bias, **options)
    assert_close(result.loss, expected[0], dtype)
    assert_close(loss, expected[0], dtype)
    assert np.asarray(loss).dtype == dtype
    assert_close(result.grad_input, expected[1], dtype)
    assert_close(result.grad_weight, expected[2], dtype)
    assert result.grad_input.dtype == dtype and result.grad_weight.dtype == dtype
    assert result.grad_input.shape == x.shape and result.grad_weight.shape == w.shape
    if with_bias:
        assert result.grad_bias.dtype == dtype
        assert_close(result.grad_bias, expected[3], dtype)
    else:
        assert result.grad_bias is None


def numpy_reference(x, w, b, t, **options):
    logits = np.asarray(x, np.float64) @ np.asarray(w, np.float64).T
    if b is not None:
        logits = logits + np.asarray(b, np.float64)
    target = t if t.dtype.kind in "iu" else np.asarray(t, np.float64)
    return ref.cross_entropy(logits, target, axis=-1, **options)


@pytest.mark.parametrize("tile", [(3, 4), (5, 7), (1, 1), (2, 64)])
def test_vocabulary_tiles_merge_exactly(tile, isa, rng):
    """The forward in vocabulary tiles (V not a multiple of the tile) equals the float64
    reference, on every instruction set."""
    x, w, b, t = make_case(rng, np.dtype(np.float64), (10,), 6, 30, ignore=-100)
    for options in ({}, {"label_smoothing": 0.4, "weight": rng.random(30)}):
        got = fl.linear_cross_entropy(x, w, t, linear_bias=b, chunk_size=tile, **options)
        np.testing.assert_allclose(got, numpy_reference(x, w, b, t, **options), rtol=1e-12)
    q = rng.random((10, 30))
    got = fl.linear_cross_entropy(x, w, q, chunk_size=tile, reduction="none", label_smoothing=0.1)
    expected = numpy_reference(x, w, None, q, reduction="none", label_smoothing=0.1)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_every_instruction_set_gives_the_gradients(isa, rng):
    """Strips spanning the vocabulary, and vocabulary tiles (whose logits the gradient computes
    again), on every instruction set."""
    x, w, b, t = make_case(rng, np.dtype(np.float32), (40,), 9, 70)
    q = rng.random((40, 70)).astype(np.float32)
    for target in (t, q):
        expected = torch_reference(x, w, b, target, 1.0, with_bias=True, label_smoothing=0.1)
        for chunk in (16, (16, 32), (7, 9)):
            got = fl.linear_cross_entropy(
                x,
                w,
                target,
                linear_bias=b,
                label_smoothing=0.1,
                return_grad=True,
                chunk_size=chunk,
            )
            for a, e in zip(got, expected):
                assert_close(a, e, np.dtype(np.float32))


def test_float64_finite_differences(rng):
    x, w, b, t = make_case(rng, np.dtype(np.float64), (4,), 3, 6)
    options = dict(label_smoothing=0.2, weight=rng.random(6) + 0.5)
    got = fl.linear_cross_entropy(x, w, t, linear_bias=b, return_grad=True, chunk_size=3, **options)
    for array, grad in ((x, got.grad_input), (w, got.grad_weight), (b, got.grad_bias)):
        numeric = np.empty_like(array)
        for i in np.ndindex(array.shape):
            saved = array[i]
            values = []
            for delta in (1e-6, -1e-6):
                array[i] = saved + delta
                values.append(float(fl.linear_cross_entropy(x, w, t, linear_bias=b, **options)))
            array[i] = saved
            numeric[i] = (values[0] - values[1]) / 2e-6
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_transposed_weight_view_is_used_as_it_is(rng):
    x, w, b, t = make_case(rng, np.dtype(np.float32), (12,), 8, 20)
    w_t = np.ascontiguousarray(w.T)  # (d, V), as a column-major layer stores it
    got = fl.linear_cross_entropy(x, w_t.T, t, linear_bias=b, return_grad=True)
    expected = fl.linear_cross_entropy(x, w, t, linear_bias=b, return_grad=True)
    for a, e in zip(got, expected):
        np.testing.assert_allclose(a, e, rtol=1e-6)


def test_inputs_are_not_modified(rng):
    x, w, b, t = make_case(rng, np.dtype(np.float32), (6,), 4, 9)
    q = rng.random((6, 9)).astype(np.float32)
    copies = [a.copy() for a in (x, w, b, t, q)]
    fl.linear_cross_entropy(x, w, t, linear_bias=b, return_grad=True, label_smoothing=0.1)
    fl.linear_cross_entropy(x, w, q, linear_bias=b, return_grad=True, chunk_size=(2, 4))
    for a, c in zip((x, w, b, t, q), copies):
        np.testing.assert_array_equal(a, c)


def test_output_buffers_receive_the_gradients(rng):
    for dtype in (np.dtype(np.float32), BF16):
        x, w, b, t = make_case(rng, dtype, (5,), 4, 9)
        expected = fl.linear_cross_entropy(x, w, t, linear_bias=b, return_grad=True)
        gi, gw, gb = np.empty_like(x), np.empty_like(w), np.empty_like(b)
        got = fl.linear_cross_entropy(
            x,
            w,
            t,
            linear_bias=b,
            return_grad=True,
            grad_input_out=gi,
            grad_weight_out=gw,
            grad_bias_out=gb,
        )
        assert got.grad_input is gi and got.grad_weight is gw and got.grad_bias is gb
        for a, e in zip(got, expected):
            np.testing.assert_array_equal(np.asarray(a, np.float64), np.asarray(e, np.float64))
    # The input itself may receive its gradient.
    x, w, b, t = make_case(rng, np.dtype(np.float64), (7,), 4, 9)
    expected = fl.linear_cross_entropy(x, w, t, return_grad=True, chunk_size=2)
    got = fl.linear_cross_entropy(x, w, t, return_grad=True, chunk_size=2, grad_input_out=x)
    assert got.grad_input is x
    np.testing.assert_allclose(x, expected.grad_input, rtol=1e-12)


def test_layouts_and_default_grad_output(rng):
    """Strided and Fortran-ordered operands and buffers give the contiguous results; reduction
    'none' without grad_output differentiates the sum of the losses."""
    x, w, _, t = make_case(rng, np.dtype(np.float64), (2, 3), 5, 7)
    x_f = np.asfortranarray(x)
    w_strided = np.repeat(w, 2, axis=0)[::2]
    gi = np.empty((3, 2, 5)).transpose(1, 0, 2)
    got = fl.linear_cross_entropy(
        x_f, w_strided, t, reduction="none", return_grad=True, grad_input_out=gi
    )
    expected = fl.linear_cross_entropy(x, w, t, reduction="sum", return_grad=True)
    assert got.grad_input is gi
    np.testing.assert_allclose(got.loss.sum(), expected.loss, rtol=1e-12)
    for a, e in zip(got[1:3], expected[1:3]):
        np.testing.assert_allclose(a, e, rtol=1e-12)


def test_edges(rng):
    x, w, b, t = make_case(rng, np.dtype(np.float32), (0,), 4, 9)
    assert np.isnan(fl.linear_cross_entropy(x, w, t))
    assert fl.linear_cross_entropy(x, w, t, reduction="sum") == 0
    assert fl.linear_cross_entropy(x, w, t, reduction="none").shape == (0,)
    empty = fl.linear_cross_entropy(x, w, t, linear_bias=b, return_grad=True)
    assert not empty.grad_weight.any() and not empty.grad_bias.any()
    stale = np.full(w.shape, 7.0, w.dtype)  # a buffer that no strip writes is still zeroed
    fl.linear_cross_entropy(x, w, t, return_grad=True, grad_weight_out=stale)
    assert not stale.any()
    # Every target ignored: a NaN mean and zero gradients, as torch.
    x, w, b, t = make_case(rng, np.dtype(np.float32), (5,), 4, 9)
    t[:] = -100
    result = fl.linear_cross_entropy(x, w, t, linear_bias=b, return_grad=True)
    assert np.isnan(result.loss)
    assert not result.grad_input.any() and not result.grad_weight.any()
    assert not result.grad_bias.any()
    assert fl.linear_cross_entropy(x, w, t, ignore_index=None, reduction="sum") == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits(dtype, rng):
    """A large common offset of the logits (a bias of 1e4) cancels exactly, and logits far beyond
    exp's range stay finite."""
    x, w, b, t = make_case(rng, np.dtype(dtype), (6,), 4, 50)
    shifted = (b + dtype(1e4)).astype(dtype)
    for options in ({}, {"label_smoothing": 0.3}):
        got = fl.linear_cross_entropy(x, w, t, linear_bias=shifted, chunk_size=(4, 16), **options)
        np.testing.assert_allclose(got, numpy_reference(x, w, shifted, t, **options), rtol=1e-4)
    big = (w * dtype(1e3)).astype(dtype)
    got = fl.linear_cross_entropy(x, big, t, return_grad=True)
    assert np.isfinite(got.loss) and np.isfinite(got.grad_input).all()
    np.testing.assert_allclose(got.loss, numpy_reference(x, big, None, t), rtol=1e-5)


@pytest.mark.parametrize("chunk_size", [None, (3, 19), (3, 17), (3, 4)])
def test_a_nan_logit_makes_its_row_nan_in_any_tile(chunk_size, isa, rng):
    """A NaN class in a narrow vocabulary tile (all NaN, where a running max does not report it)
    still reaches the merged row, as the logits' NaN reaches cross_entropy."""
    x = rng.standard_normal((3, 8))
    w = rng.standard_normal((20, 8))
    w[19] = np.nan  # the last class: alone in the last tile of (3, 19)
    got = fl.linear_cross_entropy(x, w, np.array([0, 1, -100]), reduction="none",
                                  chunk_size=chunk_size, return_lse=True)
    np.testing.assert_array_equal(np.isnan(got.loss), [True, True, False])  # ignored: 0
    assert np.isnan(got.lse).all()


def test_errors_name_the_argument(rng):
    x, w, b, t = make_case(rng, np.dtype(np.float32), (4,), 5, 6)
    with pytest.raises(ValueError, match=r"linear_weight must have shape \(V, 5\).*\(6, 4\)"):
        fl.linear_cross_entropy(x, w[:, :4], t)
    with pytest.raises(ValueError, match=r"linear_bias must have shape \(6,\).*\(5,\)"):
        fl.linear_cross_entropy(x, w, t, linear_bias=b[:5])
    with pytest.raises(ValueError, match=r"target has shape \(3,\), expected \(4,\)"):
        fl.linear_cross_entropy(x, w, t[:3])
    with pytest.raises(IndexError, match="Target 6 is out of bounds"):
        fl.linear_cross_entropy(x, w, np.array([0, 6, 1, 2]))
    with pytest.raises(IndexError, match="Target -1 is out of bounds"):
        fl.linear_cross_entropy(x, w, np.array([0, -1, 1, 2]))
    with pytest.raises(TypeError, match="linear_weight must be a floating-point array"):
        fl.linear_cross_entropy(x, w.astype(np.int32), t)
    with pytest.raises(TypeError, match="linear_weight must have the input's dtype float32"):
        fl.linear_cross_entropy(x, w.astype(np.float64), t)
    with pytest.raises(TypeError, match="class indices must be integers"):
        fl.linear_cross_entropy(x, w, t.astype(np.float32))
    with pytest.raises(ValueError, match="probabilities must have the logits' shape"):
        fl.linear_cross_entropy(x, w, np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match="label_smoothing must be between"):
        fl.linear_cross_entropy(x, w, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="chunk_size"):
        fl.linear_cross_entropy(x, w, t, chunk_size=0)
    with pytest.raises(ValueError, match="grad_weight_out must have linear_weight's shape"):
        fl.linear_cross_entropy(x, w, t, return_grad=True, grad_weight_out=np.empty((6, 4)))
    with pytest.raises(ValueError, match="only used with return_grad=True"):
        fl.linear_cross_entropy(x, w, t, grad_output=2.0)


def test_forward_tiles_cut_rows_and_classes_under_the_budget(monkeypatch, isa, rng):
    """Without the gradient the default tiles are square-ish (both the rows and the vocabulary
    are cut, evenly), their statistics merge to the float64 reference, and the loss and lse
    equal those of the gradient's strips, which span the vocabulary."""
    monkeypatch.setattr(lce, "DEFAULT_BUDGET_BYTES", 64 << 10)
    strip, tile, _ = lce.tile_shape(
        300, 7, 500, 8, widened=False, probability_copy=False, gradient=False
    )
    assert (strip, tile) == (75, 100)
    x, w, b, t = make_case(rng, np.dtype(np.float64), (300,), 7, 500, ignore=-100)
    q = rng.random((300, 500))
    cases = [(t, {}), (t, {"label_smoothing": 0.3, "weight": rng.random(500)}), (q, {})]
    for target, options in cases:
        got = fl.linear_cross_entropy(x, w, target, linear_bias=b, return_lse=True, **options)
        expected = numpy_reference(x, w, b, target, **options)
        np.testing.assert_allclose(got.loss, expected, rtol=1e-12)
        with_grad = fl.linear_cross_entropy(
            x, w, target, linear_bias=b, return_lse=True, return_grad=True, **options
        )
        np.testing.assert_allclose(got.loss, with_grad.loss, rtol=1e-13)
        np.testing.assert_allclose(got.lse, with_grad.lse, rtol=1e-13)


def test_gradient_takes_vocabulary_tiles_when_strips_would_be_thin(monkeypatch, rng):
    """When the budget holds fewer than 256 rows of logits spanning the vocabulary (and there are
    more rows), the gradient takes strips of up to 1024 rows in vocabulary tiles (computing each
    tile's logits again): the same loss and gradients as strips spanning the vocabulary."""
    monkeypatch.setattr(lce, "DEFAULT_BUDGET_BYTES", 1 << 20)
    strip, tile, _ = lce.tile_shape(600, 5, 1000, 8, widened=False, probability_copy=False)
    assert strip == 600 and tile < 1000, (strip, tile)  # spanning strips would hold 112 rows
    assert lce.tile_shape(100, 5, 1000, 8, False, False)[:2] == (100, 1000)  # all the rows
    x, w, b, t = make_case(rng, np.dtype(np.float64), (600,), 5, 1000, ignore=-100)
    options = {"linear_bias": b, "label_smoothing": 0.1, "return_grad": True}
    got = fl.linear_cross_entropy(x, w, t, **options)
    spanning = fl.linear_cross_entropy(x, w, t, chunk_size=(100, 1000), **options)
    np.testing.assert_allclose(got.loss, spanning.loss, rtol=1e-13)
    for a, e in zip(got[1:], spanning[1:]):
        np.testing.assert_allclose(a, e, rtol=1e-11, atol=1e-15)


def test_memory_stays_within_the_budget(monkeypatch, rng):
    """Beyond its inputs and the gradients asked for, a call allocates at most the tile budget
    (here 1 MB, against 8 MB of logits), whatever N and V."""
    monkeypatch.setattr(lce, "DEFAULT_BUDGET_BYTES", 1 << 20)
    x, w, b, t = make_case(rng, np.dtype(np.float32), (1024,), 16, 2048)
    logits_bytes = 1024 * 2048 * 4
    for return_grad in (False, True):
        tracemalloc.start()
        fl.linear_cross_entropy(
            x, w, t, linear_bias=b, return_grad=return_grad, label_smoothing=0.1
        )
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        gradients = (x.nbytes + w.nbytes + b.nbytes) if return_grad else 0
        extra = peak - gradients
        assert extra <= (1 << 20) + 200_000, (return_grad, extra)
        assert extra < logits_bytes / 4


def test_module(rng):
    x, w, b, t = make_case(rng, np.dtype(np.float32), (4,), 5, 6)
    module = fl.LinearCrossEntropyLoss(reduction="sum", label_smoothing=0.1)
    assert module(x, w, t, linear_bias=b) == fl.linear_cross_entropy(
        x, w, t, linear_bias=b, reduction="sum", label_smoothing=0.1
    )
    assert "LinearCrossEntropyLoss(" in repr(module)


def test_bench_linear_rows(capsys):
    from fastloss.bench import _cli

    assert _cli.main(["--linear", "8x4x16", "--min-repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "fastloss forward+gradients" in out and "gemm (float32, reused out)" in out
    assert _cli.main(["--linear", "8x16"]) == 2
