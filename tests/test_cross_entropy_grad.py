"""Gradients of cross_entropy and nll_loss (return_grad=True), against PyTorch autograd and
against central finite differences of our own forward pass."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import fastloss as fl
import reference as ref
from aligned_arrays import line_offset_array
from edge_rows import EDGE_ROWS, rows_too_long_to_fetch_into_l2

SHAPES = [((7,), None), ((9, 5), None), ((4, 37, 3), None), ((2, 6, 3, 5), None), ((3, 4, 50), -1)]


def _case(rng, shape, axis):
    x = rng.standard_normal(shape) * 2
    ax = (1 if len(shape) >= 2 else 0) if axis is None else axis % len(shape)
    C = shape[ax]
    positions = shape[:ax] + shape[ax + 1 :]
    t = rng.integers(0, C, positions)
    if t.size > 1:
        t.flat[:: max(1, t.size // 3)] = -100
    return x, t, C, ax, positions


def _probabilities(rng, shape, ax):
    q = np.abs(rng.standard_normal(shape))
    return q / q.sum(axis=ax, keepdims=True)


def _finite_difference(f, x, h=1e-6):
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f(x)
        flat[i] = old - h
        down = f(x)
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return g


@pytest.mark.parametrize("shape,axis", SHAPES)
def test_matches_finite_differences(isa, shape, axis, rng):
    x, t, C, ax, positions = _case(rng, shape, axis)
    w = rng.uniform(0.5, 2.0, C)
    q = _probabilities(rng, shape, ax)
    for target, weight, eps in [(t, None, 0.0), (t, w, 0.2), (q, w, 0.1), (q, None, 0.0)]:
        for reduction in ("mean", "sum", "none"):
            go = rng.standard_normal(positions) if reduction == "none" else None
            kw = dict(weight=weight, label_smoothing=eps, reduction=reduction, axis=axis)

            def scalar_loss(xx):
                value = fl.cross_entropy(xx, target, **kw)
                return float(np.sum(value * go)) if go is not None else float(value)

            r = fl.cross_entropy(x, target, return_grad=True, grad_output=go, **kw)
            np.testing.assert_allclose(r.grad, _finite_difference(scalar_loss, x.copy()), rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(r.loss, fl.cross_entropy(x, target, **kw), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", SHAPES)
def test_matches_torch_autograd(isa, dtype, shape, axis, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, t, C, ax, positions = _case(rng, shape, axis)
    x = x.astype(dtype)
    w = rng.uniform(0.5, 2.0, C).astype(dtype)
    q = _probabilities(rng, shape, ax).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    tx_moved = lambda a: torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, ax, 1) if a.ndim > 1 else a))  # noqa: E731
    for target, use_w, eps, reduction in itertools.product(
        ["index", "prob"], [False, True], [0.0, 0.2], ["mean", "sum", "none"]
    ):
        tgt = t if target == "index" else q
        go = rng.standard_normal(positions).astype(dtype) if reduction == "none" else None
        r = fl.cross_entropy(
            x, tgt, weight=w if use_w else None, label_smoothing=eps, reduction=reduction,
            axis=axis, return_grad=True, grad_output=go,
        )
        tx = tx_moved(x).requires_grad_(True)
        tt = torch.from_numpy(t) if target == "index" else tx_moved(q)
        loss = F.cross_entropy(tx, tt, weight=torch.from_numpy(w) if use_w else None, label_smoothing=eps,
                               reduction=reduction)
        (loss * torch.from_numpy(go) if go is not None else loss).sum().backward()
        want = tx.grad.numpy()
        if x.ndim > 1:
            want = np.moveaxis(want, 1, ax)
        np.testing.assert_allclose(r.grad, want, **tol)
        np.testing.assert_allclose(r.loss, loss.detach().numpy(), **tol)
        # nll_loss of log-probabilities
        lp = fl.log_softmax(x, ax)
        rn = fl.nll_loss(lp, t, weight=w if use_w else None, reduction=reduction, axis=axis,
                         return_grad=True, grad_output=go)
        tlp = tx_moved(lp).requires_grad_(True)
        ln = F.nll_loss(tlp, torch.from_numpy(t), weight=torch.from_numpy(w) if use_w else None,
                        reduction=reduction)
        (ln * torch.from_numpy(go) if go is not None else ln).sum().backward()
        want = tlp.grad.numpy()
        np.testing.assert_allclose(rn.grad, np.moveaxis(want, 1, ax) if x.ndim > 1 else want, **tol)


def test_all_ignored_mean_gives_nan_loss_and_zero_grad(isa):
    x = np.random.default_rng(0).standard_normal((4, 6))
    t = np.full(4, -100)
    for f in (fl.cross_entropy, fl.nll_loss):
        r = f(x, t, return_grad=True)
        assert np.isnan(r.loss)
        np.testing.assert_array_equal(r.grad, np.zeros_like(x))


def test_ignored_rows_get_zero_gradient_even_with_nan(isa):
    x = np.random.default_rng(0).standard_normal((20, 6))
    x[3] = np.nan
    t = np.arange(20) % 6
    t[3] = -100
    for layout_x, layout_axis in [(x, 1), (x.T.copy(), 0)]:
        r = fl.cross_entropy(layout_x, t, axis=layout_axis, return_grad=True, label_smoothing=0.1)
        g = r.grad if layout_axis == 1 else r.grad.T
        np.testing.assert_array_equal(g[3], 0.0)
        assert np.isfinite(g).all() and np.isfinite(r.loss)


def test_grad_out_aliasing_the_input(isa, rng):
    for shape, axis in SHAPES:
        x, t, C, ax, positions = _case(rng, shape, axis)
        want = fl.cross_entropy(x, t, axis=axis, return_grad=True, label_smoothing=0.1)
        y = x.copy()
        r = fl.cross_entropy(y, t, axis=axis, return_grad=True, label_smoothing=0.1, grad_out=y)
        assert r.grad is y
        np.testing.assert_allclose(y, want.grad, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(r.loss, want.loss, rtol=1e-14)
        q = _probabilities(rng, shape, ax)
        want = fl.cross_entropy(x, q, axis=axis, return_grad=True)
        y = x.copy()
        fl.cross_entropy(y, q, axis=axis, return_grad=True, grad_out=y)
        np.testing.assert_allclose(y, want.grad, rtol=1e-14, atol=1e-15)
        lp = fl.log_softmax(x, ax)
        want = fl.nll_loss(lp, t, axis=axis, return_grad=True)
        fl.nll_loss(lp, t, axis=axis, return_grad=True, grad_out=lp)
        np.testing.assert_allclose(lp, want.grad)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_nll_gradient_in_columns_across_position_blocks(isa, rng, reduction):
    """nll_loss's gradient in the columns layout is zeroed one class at a time over a block of
    positions (256 per block): 2 x 5 x 300 crosses a block edge, with ignored targets, weights and
    per-position grad_output, and with the gradient written over the input itself."""
    x = rng.standard_normal((2, 5, 300))
    t = rng.integers(0, 5, (2, 300))
    t[0, ::7] = -100
    t[1, 250:260] = -100
    w = rng.uniform(0.5, 2.0, 5)
    go = rng.standard_normal((2, 300)) if reduction == "none" else None
    kept = t != -100
    y = np.where(kept, t, 0)
    n, pos = np.meshgrid(np.arange(2), np.arange(300), indexing="ij")
    losses = np.where(kept, -w[y] * x[n, y, pos], 0.0)
    scale = go if go is not None else np.full((2, 300), 1.0 / w[y][kept].sum())
    want_grad = np.zeros_like(x)
    want_grad[n[kept], y[kept], pos[kept]] = -w[y][kept] * scale[kept]
    want_loss = losses if reduction == "none" else losses.sum() / w[y][kept].sum()
    r = fl.nll_loss(x, t, weight=w, reduction=reduction, return_grad=True, grad_output=go)
    np.testing.assert_allclose(r.grad, want_grad, rtol=1e-12, atol=0)
    np.testing.assert_allclose(r.loss, want_loss, rtol=1e-14)
    y_alias = x.copy()
    r = fl.nll_loss(y_alias, t, weight=w, reduction=reduction, return_grad=True, grad_output=go,
                    grad_out=y_alias)
    assert r.grad is y_alias
    np.testing.assert_allclose(y_alias, want_grad, rtol=1e-12, atol=0)
    np.testing.assert_allclose(r.loss, want_loss, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_nll_gradient_zeroed_with_streamed_stores(isa, dtype, streamed_outputs, rng):
    """nll_loss's gradient rows, zeroed with non-temporal stores when streamed (rows of a kilobyte
    or more): odd row lengths (every alignment of a half row), ignored rows, in place, the bits of
    ordinary stores."""
    C = 521
    x = rng.standard_normal((9, C)).astype(dtype)
    t = rng.integers(0, C, 9)
    t[::4] = -100
    streamed_outputs(False)
    want = fl.nll_loss(x, t, return_grad=True)
    streamed_outputs(True)
    got = fl.nll_loss(x, t, return_grad=True)
    np.testing.assert_array_equal(got.grad, want.grad)
    assert got.loss == want.loss
    assert np.count_nonzero(got.grad) == np.count_nonzero(t != -100)
    y = x.copy()
    fl.nll_loss(y, t, return_grad=True, grad_out=y)
    np.testing.assert_array_equal(y, want.grad)
    for offset in (1, 2, 3):  # gradient rows starting at every alignment
        buf = np.full(9 * C + 3, np.nan, dtype)
        out = buf[offset:offset + 9 * C].reshape(9, C)
        fl.nll_loss(x, t, return_grad=True, grad_out=out)
        np.testing.assert_array_equal(out, want.grad)
        assert np.isnan(buf[:offset]).all() and np.isnan(buf[offset + 9 * C:]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_nll_gradient_in_columns_zeroed_with_streamed_stores(isa, dtype, streamed_outputs, rng):
    """nll_loss's gradient in the columns layout, zeroed with non-temporal stores when streamed
    (each class's run of 601 positions is a kilobyte or more): whole runs, several classes at a
    time where they follow one another (37 classes: a full group and a partial one), one at a
    time where they do not (a gradient inside a wider buffer), every alignment; two outer
    positions, ignored targets, weights, per-position grad_output and the gradient written over
    the input, all with the bits of ordinary stores."""
    x = rng.standard_normal((2, 37, 601)).astype(dtype)
    t = rng.integers(0, 37, (2, 601))
    t[0, ::7] = -100
    t[1, 590:] = -100
    w = rng.uniform(0.5, 2.0, 37).astype(dtype)
    for options in ({}, {"weight": w, "reduction": "none", "grad_output": rng.standard_normal((2, 601)).astype(dtype)}):
        streamed_outputs(False)
        want = fl.nll_loss(x, t, axis=1, return_grad=True, **options)
        streamed_outputs(True)
        got = fl.nll_loss(x, t, axis=1, return_grad=True, **options)
        np.testing.assert_array_equal(got.grad, want.grad)
        np.testing.assert_array_equal(got.loss, want.loss)
        assert np.count_nonzero(got.grad) == np.count_nonzero(t != -100)
        y = x.copy()
        fl.nll_loss(y, t, axis=1, return_grad=True, grad_out=y, **options)
        np.testing.assert_array_equal(y, want.grad)
        for offset in (0, 1, 3):  # runs that do not follow one another, at every alignment
            buf = np.full((2, 37, 640 + offset), np.nan, dtype)
            out = buf[:, :, offset:offset + 601]
            fl.nll_loss(x, t, axis=1, return_grad=True, grad_out=out, **options)
            np.testing.assert_array_equal(out, want.grad)
            assert np.isnan(buf[:, :, :offset]).all() and np.isnan(buf[:, :, offset + 601:]).all()


def test_streamed_gradient_has_the_bits_of_ordinary_stores(isa, streamed_outputs, rng):
    """A gradient written with non-temporal stores (index targets, rows) stages its exponentials
    in a scratch row: odd row lengths (every alignment), ignored rows, smoothing and weights, the
    gradient in place, and half precision (whose exponentials are computed again) give the
    bits of ordinary stores."""
    x = rng.standard_normal((23, 1001)) * 3
    t = rng.integers(0, 1001, 23)
    t[::5] = -100
    options = ({}, {"label_smoothing": 0.2, "weight": rng.random(1001) + 0.5})
    for dtype in (np.float32, np.float64, np.float16):
        xd = x.astype(dtype)
        for kwargs in options:
            streamed_outputs(False)
            want = fl.cross_entropy(xd, t, return_grad=True, **kwargs)
            streamed_outputs(True)
            got = fl.cross_entropy(xd, t, return_grad=True, **kwargs)
            np.testing.assert_array_equal(got.grad, want.grad)
            assert got.loss == want.loss
            y = xd.copy()
            fl.cross_entropy(y, t, return_grad=True, grad_out=y, **kwargs)
            np.testing.assert_array_equal(y, want.grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("positions,offset", [(85, 16), (160, 0), (160, 16), (5000, 16)])
def test_columns_gradient_in_position_blocks(isa, dtype, positions, offset, streamed_outputs, rng):
    """The columns layout takes positions four vectors at a time, then one at a time, and the last
    vector partly (85 positions cover all three for every width), in runs of blocks and in work
    items up to 16 KiB wide (5000 positions make several of both); without smoothing in one online sweep, its gradient streamed when
    large. Against the rows layout of the same numbers, with
    ordinary and with non-temporal stores, and in place."""
    x = line_offset_array((301, positions), dtype, offset)
    x[...] = rng.standard_normal((301, positions)) * 3
    t = rng.integers(0, 301, positions)
    t[::6] = -100
    x[:, 40] = -np.inf  # an ignored position may hold anything
    t[40] = -100
    tol = dict(rtol=1e-12, atol=1e-15) if dtype == np.float64 else dict(rtol=2e-3, atol=2e-6)
    for kwargs in ({}, {"weight": rng.random(301) + 0.5}, {"label_smoothing": 0.1}):
        want = fl.cross_entropy(np.ascontiguousarray(x.T), t, return_grad=True, **kwargs)
        grads = []
        for stream in (False, True):
            streamed_outputs(stream)
            out = line_offset_array(x.shape, dtype, offset)
            got = fl.cross_entropy(x, t, axis=0, return_grad=True, grad_out=out, **kwargs)
            np.testing.assert_allclose(got.grad.T.astype(np.float64),
                                       want.grad.astype(np.float64), **tol)
            np.testing.assert_allclose(got.loss, want.loss, **tol)
            grads.append(got.grad)
            y = x.copy()
            fl.cross_entropy(y, t, axis=0, return_grad=True, grad_out=y, **kwargs)
            np.testing.assert_array_equal(y, got.grad)
        np.testing.assert_array_equal(grads[1], grads[0])  # streamed: the bits of ordinary stores


def test_strided_layouts_and_buffers(isa, rng):
    base = rng.standard_normal((5, 40, 7))
    t = rng.integers(0, 40, (5, 7))
    want = fl.cross_entropy(base, t, return_grad=True)
    xt = np.ascontiguousarray(base.transpose(0, 2, 1)).transpose(0, 2, 1)  # class axis strided: staged
    r = fl.cross_entropy(xt, t, return_grad=True)
    np.testing.assert_allclose(r.grad, want.grad, rtol=1e-13, atol=1e-15)
    buf = np.empty((5, 7, 40)).transpose(0, 2, 1)
    r = fl.cross_entropy(base, t, return_grad=True, grad_out=buf)
    assert r.grad is buf
    np.testing.assert_allclose(buf, want.grad, rtol=1e-13, atol=1e-15)
    # overlapping but not identical: the input is copied first
    big = rng.standard_normal(5 * 40 * 7 + 1)
    x_view, g_view = big[1:].reshape(5, 40, 7), big[:-1].reshape(5, 40, 7)
    want = fl.cross_entropy(x_view.copy(), t, return_grad=True)
    fl.cross_entropy(x_view, t, return_grad=True, grad_out=g_view)
    np.testing.assert_allclose(g_view, want.grad, rtol=1e-13, atol=1e-15)


def test_bit_identical_across_threads(isa, rng):
    x = rng.standard_normal((1024, 300)).astype(np.float32)
    t = rng.integers(0, 300, 1024)
    before = fl.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            fl.set_num_threads(n)
            results.append(fl.cross_entropy(x, t, return_grad=True, label_smoothing=0.1))
        np.testing.assert_array_equal(results[0].grad, results[1].grad)
        assert results[0].loss == results[1].loss
    finally:
        fl.set_num_threads(before)


def test_gradient_argument_errors():
    x = np.zeros((4, 5))
    t = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="only used with return_grad=True"):
        fl.cross_entropy(x, t, grad_out=np.empty_like(x))
    with pytest.raises(ValueError, match=r"grad_out must have the input's shape \(4, 5\)"):
        fl.cross_entropy(x, t, return_grad=True, grad_out=np.empty((5, 4)))
    with pytest.raises(ValueError, match="grad_out must have the input's shape"):
        fl.cross_entropy(x, t, return_grad=True, grad_out=np.empty((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"grad_output must have the loss's shape \(4,\)"):
        fl.cross_entropy(x, t, reduction="none", return_grad=True, grad_output=np.ones(3))
    with pytest.raises(ValueError, match="grad_output must be a number"):
        fl.cross_entropy(x, t, return_grad=True, grad_output=np.ones(4))
    r = fl.cross_entropy(x, t, return_grad=True, grad_output=2.0)
    np.testing.assert_allclose(r.grad, 2 * fl.cross_entropy(x, t, return_grad=True).grad)
    assert isinstance(r, fl.LossAndGrad)


def test_common_2d_call_with_gradient_buffers(isa, rng):
    """(N, C) calls take a C++ fast path; it must treat gradient buffers as the general path does."""
    x = rng.standard_normal((40, 7))
    t = rng.integers(0, 7, 40)
    want = fl.cross_entropy(x, t, return_grad=True, reduction="sum")
    r = fl.cross_entropy(x, t, return_grad=True, reduction="sum")
    np.testing.assert_array_equal(r.grad, want.grad)
    y = x.copy()
    r = fl.cross_entropy(y, t, return_grad=True, reduction="sum", grad_out=y)  # in place
    assert r.grad is y
    np.testing.assert_allclose(y, want.grad, rtol=1e-14, atol=1e-16)
    big = rng.standard_normal(40 * 7 + 3)
    x_view, g_view = big[3:].reshape(40, 7), big[:-3].reshape(40, 7)  # overlapping, not identical
    want = fl.cross_entropy(x_view.copy(), t, return_grad=True)
    r = fl.cross_entropy(x_view, t, return_grad=True, grad_out=g_view)
    assert r.grad is g_view
    np.testing.assert_allclose(g_view, want.grad, rtol=1e-14, atol=1e-16)
    lp = fl.log_softmax(x)
    want = fl.nll_loss(lp, t, return_grad=True)
    r = fl.nll_loss(lp, t, return_grad=True, grad_out=lp)
    np.testing.assert_allclose(lp, want.grad)


# On AVX-512, float32 and float64 rows longer than 8192 classes without label smoothing write
# their gradient while the next row's statistics are taken, from exponentials those statistics
# staged ([Note: the gradient rows written while the next row's statistics are taken] in
# cross_entropy_grad.cpp; the other ISAs take three sweeps, held to the same checks). 40 rows of
# 9001 classes (a tail after the whole blocks) make chunks of three rows. Each row's loss, lse and
# gradient must be the bits it gives alone, and the float64 values, with edge rows (as the first,
# middle and last row of a chunk) and ignored rows among them, written with ordinary and
# non-temporal stores into a gradient that starts on a line or 16 bytes past one, or into the input
# itself. As in test_softmax, three rows move the online max where staging is tested hardest.


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stream", [False, True], ids=["stores", "streamed"])
@pytest.mark.parametrize("offset", [0, 16])
@pytest.mark.parametrize(
    "options", [{}, {"z_loss": 1e-3, "weight": True}], ids=["plain", "z_loss_weight"]
)
def test_long_gradient_rows_written_while_the_next_rows_statistics_are_taken(
    isa, dtype, stream, offset, options, threads, streamed_outputs, rng
):
    streamed_outputs(stream)
    rows, classes = 40, 9001
    x = line_offset_array((rows, classes), dtype, offset)
    x[...] = rng.standard_normal((rows, classes)) * 3
    for k, row in enumerate(EDGE_ROWS.values()):
        r = 3 * k + k % 3
        x[r] = np.resize(np.array(row, np.float64), classes).astype(dtype)
        x[r + 1, -len(row):] = np.array(row, np.float64).astype(dtype)  # late, once the max settled
    x[32] = np.linspace(-50, 50, classes)  # the max moves in every block
    x[34] = rng.standard_normal(classes) - 200  # lanes of -inf, then values whose exp(-M) overflows
    x[34, :2000] = -np.inf
    x[34, ::7] = -np.inf
    x[36, 64 * 70 + 3] = 40  # once, late, at an odd element
    t = rng.integers(0, classes, rows)
    t[34] = 2001
    t[[1, 20, 38, 39]] = -100  # ignored, an edge row and a chunk's last row among them
    x[20, 5] = np.nan  # never leaks from an ignored row
    kwargs = dict(options)
    if kwargs.pop("weight", False):
        kwargs["weight"] = (rng.random(classes) + 0.5).astype(dtype)
    call = dict(reduction="none", return_grad=True, return_lse=True, **kwargs)
    grad = line_offset_array(x.shape, dtype, offset)
    got = fl.cross_entropy(x, t, grad_out=grad, **call)
    for r in range(rows):
        alone = fl.cross_entropy(x[r : r + 1], t[r : r + 1], **call)
        np.testing.assert_array_equal(alone.grad[0], grad[r], err_msg=f"row {r}")
        np.testing.assert_array_equal(alone.loss[0], got.loss[r], err_msg=f"loss of row {r}")
        np.testing.assert_array_equal(alone.lse[0], got.lse[r], err_msg=f"lse of row {r}")
    np.testing.assert_array_equal(grad[t == -100], 0.0)
    in_place = x.copy()
    fl.cross_entropy(in_place, t, grad_out=in_place, **call)
    np.testing.assert_array_equal(in_place, grad)
    x64 = x.astype(np.float64)
    if "weight" in call:
        call["weight"] = call["weight"].astype(np.float64)
    want = fl.cross_entropy(x64, t, **call)
    tol = dict(rtol=2e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(grad, want.grad, **tol)
        # z lse^2 of the huge rows overflows
        representable = ~(np.abs(want.loss) > np.finfo(dtype).max)
        np.testing.assert_allclose(got.loss[representable], want.loss[representable], **tol)
        np.testing.assert_allclose(got.lse, want.lse, **tol)


# Rows over 65536 float32 or 32768 float64 classes are written while the next row is fetched into
# L1 rather than L2 ([Note: the next row fetched into L2 while a row is written] in
# overlapped_rows-inl.hpp): that instantiation held to the same checks, against an independent
# float64 softmax, with rows whose max moves in every block, once late, or never after the first,
# and an ignored row.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stream", [False, True], ids=["stores", "streamed"])
def test_gradient_rows_too_long_to_fetch_into_l2(isa, dtype, stream, streamed_outputs, rng):
    streamed_outputs(stream)
    x = rows_too_long_to_fetch_into_l2(dtype, rng)
    rows, classes = x.shape
    t = rng.integers(0, classes, rows)
    t[2] = -100
    call = dict(reduction="none", return_grad=True)
    grad = line_offset_array(x.shape, dtype, 16)
    got = fl.cross_entropy(x, t, grad_out=grad, **call)
    for r in range(rows):
        alone = fl.cross_entropy(x[r : r + 1], t[r : r + 1], **call)
        np.testing.assert_array_equal(alone.grad[0], grad[r], err_msg=f"row {r}")
        np.testing.assert_array_equal(alone.loss[0], got.loss[r], err_msg=f"loss of row {r}")
    live = t != -100
    want = ref.softmax(x)
    want[live, t[live]] -= 1.0
    want[~live] = 0.0
    tol = dict(rtol=2e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad, want, **tol)
    np.testing.assert_allclose(got.loss, ref.cross_entropy(x, t, reduction="none"), **tol)
