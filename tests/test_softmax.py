"""softmax, log_softmax and logsumexp against the float64 reference and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import fastloss as fl
import reference as ref
from aligned_arrays import line_offset_array
from edge_rows import EDGE_ROWS, rows_too_long_to_fetch_into_l2
from fastloss._validation import AxisError  # NumPy's, wherever this NumPy keeps it

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}
FUNCS = {
    "softmax": (fl.softmax, ref.softmax),
    "log_softmax": (fl.log_softmax, ref.log_softmax),
}

SHAPES_AXES = [
    ((7,), 0),
    ((1, 1), 1),
    ((3, 423), 1),  # vector tail
    ((4, 32000), -1),  # llama-size vocabulary
    ((37, 5), 0),  # class axis first: columns layout
    ((2, 3, 4, 5), 1),  # (N, C, H, W)
    ((2, 3, 40, 5), 2),
    ((5, 3, 300), 0),
]


def _assert_close(got, want, dtype):
    """Compare with the float64 reference rounded to `dtype` (so overflow to inf agrees)."""
    with np.errstate(over="ignore"):
        want = np.asarray(want).astype(dtype).astype(np.float64)
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, equal_nan=True, **TOL[dtype])


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", SHAPES_AXES)
def test_matches_reference_on_every_isa(isa, name, dtype, shape, axis, rng):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    ours, theirs = FUNCS[name]
    y = ours(x, axis)
    assert y.dtype == dtype and y.shape == x.shape
    _assert_close(y, theirs(x, axis), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", SHAPES_AXES)
def test_logsumexp_matches_reference_on_every_isa(isa, dtype, shape, axis, rng):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    got = fl.logsumexp(x, axis)
    _assert_close(got, ref.logsumexp(x, axis), dtype)
    kept = fl.logsumexp(x, axis, keepdims=True)
    assert kept.shape == ref.logsumexp(x, axis, keepdims=True).shape




@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("row", EDGE_ROWS.values(), ids=EDGE_ROWS.keys())
def test_edge_rows(isa, dtype, row):
    x = np.array(row, dtype=dtype)
    # Also as the middle row of a batch and as a column (both layouts of the kernels).
    batch = np.stack([np.zeros_like(x), x, np.ones_like(x)])
    for name, (ours, theirs) in FUNCS.items():
        _assert_close(ours(x), theirs(x), dtype)
        _assert_close(ours(batch, 1), theirs(batch, 1), dtype)
        _assert_close(ours(batch.T.copy(), 0), theirs(batch.T, 0), dtype)
    _assert_close(fl.logsumexp(x), ref.logsumexp(x), dtype)
    _assert_close(fl.logsumexp(batch, 1), ref.logsumexp(batch, 1), dtype)
    _assert_close(fl.logsumexp(batch.T.copy(), 0), ref.logsumexp(batch.T, 0), dtype)


# Rows up to 8192 classes take a max sweep and an exp sweep; longer rows take one online sweep
# (row_statistics-inl.hpp). Both must agree with the reference on every edge row, and the edge
# value must also be met late in a long row, after the online max has settled.
@pytest.mark.parametrize("classes", [8192, 8193, 20000])
@pytest.mark.parametrize("row", EDGE_ROWS.values(), ids=EDGE_ROWS.keys())
def test_edge_rows_long(isa, row, classes, rng):
    tiled = np.resize(np.array(row, dtype=np.float32), classes)
    late = (rng.standard_normal(classes) * 3).astype(np.float32)
    late[-len(row):] = row
    x = np.stack([tiled, late, np.zeros(classes, np.float32)])
    for name, (ours, theirs) in FUNCS.items():
        _assert_close(ours(x, 1), theirs(x, 1), np.float32)
    _assert_close(fl.logsumexp(x, 1), ref.logsumexp(x, 1), np.float32)
    target = np.array([0, classes - 1, 1])
    want = ref.cross_entropy(x, target, reduction="none")
    _assert_close(fl.cross_entropy(x, target, reduction="none"), want, np.float32)


# On AVX-512, rows longer than 8192 classes are written while the next row's statistics are taken,
# for every row of a chunk but its first ([Note: the next row's statistics while a row is written]
# in softmax.cpp; the other ISAs take two sweeps, held to the same checks): 40 rows of 9001
# classes (a tail after the whole blocks) make chunks of three rows. Each row must give the bits it
# gives alone, and the reference's values, edge rows included (as the first, middle and last row
# of a chunk), written with ordinary and non-temporal stores into an output that starts on a line
# or 16 bytes past one (whose streamed vectors straddle the staged lanes: [Note: staged
# exponentials] in row_statistics-inl.hpp). Four rows move the online max where staging is
# tested hardest: in every block (rising), never after the first (falling), from -inf lanes to
# values whose exp(-M) overflows, and once, late, at an odd element.
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("stream", [False, True], ids=["stores", "streamed"])
@pytest.mark.parametrize("offset", [0, 16])
def test_long_rows_written_while_the_next_rows_statistics_are_taken(isa, dtype, stream, offset, threads,
                                                                    streamed_outputs, rng):
    streamed_outputs(stream)
    rows, classes = 40, 9001
    x = line_offset_array((rows, classes), dtype, offset)
    x[...] = rng.standard_normal((rows, classes)) * 3
    with np.errstate(over="ignore"):  # float16 holds the huge rows as +-inf
        for k, row in enumerate(EDGE_ROWS.values()):
            r = 3 * k + k % 3
            x[r] = np.resize(np.array(row, np.float64), classes).astype(dtype)
            x[r + 1, -len(row):] = np.array(row, np.float64).astype(dtype)  # late, once the max settled
        x[32] = np.linspace(-50, 50, classes)
        x[34] = rng.standard_normal(classes) - 200
        x[34, :2000] = -np.inf
        x[34, ::7] = -np.inf
        x[36, 64 * 70 + 3] = 40
        x[38] = np.linspace(50, -50, classes)
    for name, (ours, theirs) in FUNCS.items():
        out = line_offset_array(x.shape, dtype, offset)
        ours(x, 1, out=out)
        for r in range(rows):
            np.testing.assert_array_equal(ours(x[r : r + 1], 1)[0], out[r], err_msg=f"{name} row {r}")
        if dtype != np.float16:
            _assert_close(out, theirs(x, 1), dtype)


# Rows whose two working rows do not fit in half of L2 (over 65536 float32 or 32768 float64
# classes) are written while the next row is fetched into L1 rather than L2 ([Note: the next row
# fetched into L2 while a row is written] in overlapped_rows-inl.hpp): the same checks as above on
# that instantiation of the overlapped writers, with rows whose max moves in every block (rising),
# once late at an odd element, and not after the first block (falling).
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stream", [False, True], ids=["stores", "streamed"])
def test_rows_too_long_to_fetch_into_l2(isa, dtype, stream, streamed_outputs, rng):
    streamed_outputs(stream)
    x = rows_too_long_to_fetch_into_l2(dtype, rng)
    rows, classes = x.shape
    for name, (ours, theirs) in FUNCS.items():
        out = line_offset_array(x.shape, dtype, 16)
        ours(x, 1, out=out)
        for r in range(rows):
            np.testing.assert_array_equal(ours(x[r : r + 1], 1)[0], out[r], err_msg=f"{name} row {r}")
        _assert_close(out, theirs(x, 1), dtype)


# The columns layout takes its positions four vectors at a time, then one at a time, and the last
# vector partly: 85 positions cover all three for every vector width. Its blocks are swept in runs
# up to 16 KiB of a class row wide (at most 64 blocks), chunk of classes by chunk, and its work
# items are up to 16 KiB wide: 5000 positions make several runs and items in every dtype and width. Each edge row is one position's column, met at the start of the class
# axis and again late in it, after the online max has settled; outputs are written both with
# ordinary and with non-temporal stores.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stream", [False, True], ids=["stores", "streamed"])
@pytest.mark.parametrize("positions,offset", [(85, 16), (160, 0), (160, 16), (160, 8), (5000, 16)])
def test_edge_columns_in_position_blocks(isa, dtype, stream, positions, offset, streamed_outputs,
                                         rng):
    """85 positions: every block kind, no whole lines. 160 (a multiple of a line in every dtype)
    starting on a line, or 16 or 8 bytes past one: the peeled head, then whole, streamed lines."""
    streamed_outputs(stream)
    classes = 300
    x = line_offset_array((classes, positions), dtype, offset)
    x[...] = rng.standard_normal((classes, positions)) * 3
    for k, row in enumerate(EDGE_ROWS.values()):
        if dtype == np.float32 and any(abs(v) > 3.4e38 for v in row if np.isfinite(v)):
            continue
        column = 7 * k + 3
        x[:, column] = np.resize(np.array(row, dtype), classes)
        x[-len(row):, column + 1] = row
    for ours, theirs in FUNCS.values():
        _assert_close(ours(x, 0), theirs(x, 0), dtype)
        out = line_offset_array(x.shape, dtype, offset)
        ours(x, 0, out=out)
        _assert_close(out, theirs(x, 0), dtype)
    _assert_close(fl.logsumexp(x, 0), ref.logsumexp(x, 0), dtype)


# With AVX-512 (16 float lanes): 77 classes: blocks stay in cache (kColumnNarrowBytes), so float
# computation sweeps them one at a time and float64's writers in runs; 500 classes: the reductions
# one block at a time, the writers in runs (kColumnNarrowWriterBytes) but float16's; 1100
# classes: runs but float16's reductions. AVX2's blocks are half as wide.
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("classes", [77, 500, 1100])
def test_columns_do_not_depend_on_the_block_or_run(isa, dtype, classes, threads, rng):
    """A lane's arithmetic is the same in every block, run and thread: slicing off the first
    positions moves every other one to another block and run, and must give the same bits."""
    x = (rng.standard_normal((classes, 5000)) * 3).astype(dtype)
    x[:, 5] = np.linspace(-20, 20, classes)  # a max that moves at every class
    x[:3, 9] = -np.inf
    t = rng.integers(0, classes, 5000)
    whole = {name: ours(x, 0) for name, (ours, _) in FUNCS.items()}
    whole["logsumexp"] = fl.logsumexp(x, 0)
    whole["entropy"] = fl.entropy(x, axis=0)
    whole["cross_entropy"] = fl.cross_entropy(x, t, axis=0, reduction="none", return_grad=True,
                                              grad_output=np.ones(5000))
    for start in (1, 37, 1300):
        part = x[:, start:]
        for name, (ours, _) in FUNCS.items():
            np.testing.assert_array_equal(ours(part, 0), whole[name][:, start:])
        np.testing.assert_array_equal(fl.logsumexp(part, 0), whole["logsumexp"][start:])
        np.testing.assert_array_equal(fl.entropy(part, axis=0), whole["entropy"][start:])
        ce = fl.cross_entropy(part, t[start:], axis=0, reduction="none", return_grad=True,
                              grad_output=np.ones(5000 - start))
        np.testing.assert_array_equal(ce.loss, whole["cross_entropy"].loss[start:])
        np.testing.assert_array_equal(ce.grad, whole["cross_entropy"].grad[:, start:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("classes", [1000, 10000])
def test_nan_hides_a_huge_value_from_the_running_max(isa, dtype, classes):
    # max returns its second operand for NaN, so [huge, NaN, 0, 0] at the start of a block leaves
    # the huge value out of the max: its exponent is huge and positive. The result must still be
    # NaN, without undefined behaviour in the scalar exp (UBSan checks that in CI).
    huge = 1e30 if dtype == np.float32 else 1e300
    x = np.zeros((2, classes), dtype)
    x[0, 8:12] = [huge, np.nan, 0, 0]
    x[1, 4000 % classes : 4000 % classes + 4] = [huge, np.nan, 0, 0]
    assert np.isnan(fl.logsumexp(x, 1)).all()
    assert np.isnan(fl.log_softmax(x, 1)).all()
    assert np.isnan(fl.softmax(x, 1)).all()
    assert np.isnan(fl.cross_entropy(x, np.array([0, 1]), reduction="none")).all()
    assert np.isnan(fl.entropy(x)).all()


def test_documented_edge_values():
    assert np.all(np.isnan(fl.softmax(np.full(4, -np.inf))))
    assert np.all(np.isnan(fl.log_softmax(np.array([0.0, np.inf]))))
    assert fl.logsumexp(np.full(4, -np.inf)) == -np.inf
    assert fl.logsumexp(np.array([0.0, np.inf])) == np.inf
    assert np.isnan(fl.logsumexp(np.array([np.nan, np.inf])))
    np.testing.assert_allclose(fl.softmax(np.array([0.0, -np.inf, 1.0])), [0.268941, 0, 0.731059], rtol=1e-5)


def _layouts(rng, dtype):
    base = (rng.standard_normal((6, 40, 9)) * 3).astype(dtype)
    yield "c_contiguous", base
    yield "fortran", np.asfortranarray(base)
    yield "transposed", base.transpose(2, 0, 1)
    yield "sliced", base[:, ::3, ::2]
    yield "negative_stride", base[::-1, ::-2]
    yield "zero_stride", np.broadcast_to(base[:, :1, :], base.shape)
    yield "zero_stride_rows", np.broadcast_to(base[:1], base.shape)
    ro = base.copy()
    ro.flags.writeable = False
    yield "read_only", ro
    yield "big_endian", base.astype(base.dtype.newbyteorder(">"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_every_layout_and_axis(isa, dtype, axis, rng):
    for label, x in _layouts(rng, dtype):
        before = np.array(x, copy=True)
        for name, (ours, theirs) in FUNCS.items():
            y = ours(x, axis)
            assert y.shape == x.shape and y.dtype == np.dtype(dtype), label
            _assert_close(y, theirs(x, axis), dtype)
        _assert_close(fl.logsumexp(x, axis), ref.logsumexp(x, axis), dtype)
        np.testing.assert_array_equal(x, before)  # inputs are never modified


def test_non_contiguous_output_buffer(isa, rng):
    x = rng.standard_normal((5, 33))
    out = np.empty((33, 5)).T  # class axis strided in the output only
    assert fl.log_softmax(x, 1, out=out) is out
    _assert_close(out, ref.log_softmax(x, 1), np.float64)


def test_out_in_place_and_errors(rng):
    x = rng.standard_normal((8, 50)).astype(np.float32)
    want = ref.softmax(x, 1)
    y = x.copy()
    assert fl.softmax(y, 1, out=y) is y
    _assert_close(y, want, np.float32)

    out = np.empty_like(x)
    assert fl.log_softmax(x, out=out) is out
    _assert_close(out, ref.log_softmax(x), np.float32)

    # out overlapping x by a shift: x is copied first, so the answer is still right.
    buf = rng.standard_normal(8 * 50 + 1)
    x_view, out_view = buf[1:].reshape(8, 50), buf[:-1].reshape(8, 50)
    want = ref.log_softmax(x_view.copy(), 1)
    fl.log_softmax(x_view, 1, out=out_view)
    _assert_close(out_view, want, np.float64)

    with pytest.raises(ValueError, match=r"out has shape \(8, 49\), expected \(8, 50\)"):
        fl.softmax(x, out=np.empty((8, 49), np.float32))
    with pytest.raises(ValueError, match="out has dtype float64, expected float32"):
        fl.softmax(x, out=np.empty((8, 50)))
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        fl.softmax(x, out=ro)
    with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
        fl.softmax(x, out=[0.0] * 400)


def test_dtype_argument_upcasts_first(rng):
    x = (rng.standard_normal((4, 30)) * 30).astype(np.float32)
    y = fl.log_softmax(x, dtype=np.float64)
    assert y.dtype == np.float64
    _assert_close(y, ref.log_softmax(x.astype(np.float64)), np.float64)
    with pytest.raises(TypeError, match="dtype must be"):
        fl.softmax(x, dtype=np.int32)


def test_float16_is_computed_in_float32_and_rounded_once(rng):
    x = (rng.standard_normal((4, 30)) * 4).astype(np.float16)
    for name, (ours, _) in FUNCS.items():
        y = ours(x)
        assert y.dtype == np.float16
        want = ours(x.astype(np.float32)).astype(np.float16)
        np.testing.assert_array_equal(y, want)
    assert fl.logsumexp(x).dtype == np.float16


def test_empty_and_zero_dim():
    for f in (fl.softmax, fl.log_softmax):
        assert f(np.empty((0, 5))).shape == (0, 5)
        assert f(np.empty((5, 0))).shape == (5, 0)
        assert f(np.float64(3.0)) == (1.0 if f is fl.softmax else 0.0)
    assert fl.logsumexp(np.empty((0, 5))).shape == (0,)
    np.testing.assert_array_equal(fl.logsumexp(np.empty((3, 0))), [-np.inf] * 3)
    assert fl.logsumexp(np.float32(2.0)) == np.float32(2.0)


def test_logsumexp_over_several_axes_of_an_empty_array():
    # Found by the fuzzer (tests/test_fuzz_softmax.py): merging the reduced axes used
    # reshape(..., -1), which NumPy cannot infer when a kept axis has length 0 (ValueError).
    # torch.logsumexp gives these shapes.
    assert fl.logsumexp(np.empty((0, 0, 0), np.float32), (0, 1)).shape == (0,)
    assert fl.logsumexp(np.empty((2, 0, 3)), (1, 2), keepdims=True).shape == (2, 1, 1)
    np.testing.assert_array_equal(fl.logsumexp(np.empty((2, 0, 3)), (1, 2)), [-np.inf, -np.inf])
    assert fl.logsumexp(np.empty((0, 4, 3)), (0, 2)).shape == (4,)


def test_logsumexp_axes_and_scalar_result(rng):
    x = rng.standard_normal((3, 4, 5))
    r = fl.logsumexp(x[0, 0])
    assert isinstance(r, np.float64)
    for axis in [(0, 2), (1, 2), None, (-1,), 0]:
        _assert_close(fl.logsumexp(x, axis), ref.logsumexp(x, axis), np.float64)
        assert fl.logsumexp(x, axis, keepdims=True).shape == ref.logsumexp(x, axis, keepdims=True).shape


def test_accepts_lists_and_dlpack_producers():
    _assert_close(fl.softmax([1.0, 2.0, 3.0]), ref.softmax([1.0, 2.0, 3.0]), np.float64)


@pytest.mark.parametrize(
    "bad", [np.arange(5), np.ones(3, bool), np.ones(3, np.complex64), np.array(["a"]), np.array([None])]
)
def test_non_float_input_is_type_error(bad):
    for f in (fl.softmax, fl.log_softmax, fl.logsumexp):
        with pytest.raises(TypeError, match="x must be a floating-point array"):
            f(bad)


def test_bad_axis():
    x = np.zeros((2, 3))
    for f in (fl.softmax, fl.log_softmax, fl.logsumexp):
        with pytest.raises(AxisError, match="axis 2 is out of bounds for array of dimension 2"):
            f(x, 2)
        with pytest.raises(AxisError):
            f(x, -3)
    with pytest.raises(TypeError, match="axis must be an integer"):
        fl.softmax(x, 1.0)


# --- PyTorch parity ---------------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_torch(isa, dtype, rng):
    torch = _torch()
    cases = [((64, 1000), 1), ((3, 7, 11, 2), 1), ((5, 20), 0), ((2, 9, 130), -1)]
    for shape, axis in cases:
        x = (rng.standard_normal(shape) * 8).astype(dtype)
        x.flat[::17] = -np.inf
        tx = torch.from_numpy(x)
        tol = dict(rtol=1.3e-6, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-7, atol=1e-7)
        for ours, theirs in [
            (fl.softmax, torch.softmax),
            (fl.log_softmax, torch.log_softmax),
            (fl.logsumexp, torch.logsumexp),
        ]:
            np.testing.assert_allclose(ours(x, axis), theirs(tx, axis).numpy(), equal_nan=True, **tol)


def test_matches_torch_on_edge_rows(isa):
    torch = _torch()
    rows = [r for r in EDGE_ROWS.values() if len(r) == 4] + [[-np.inf] * 4, [np.nan, 0.0, 1.0, 2.0]]
    for dtype in (np.float32, np.float64):
        x = np.array(rows, dtype=dtype)
        tx = torch.from_numpy(x)
        for ours, theirs in [
            (fl.softmax, torch.softmax),
            (fl.log_softmax, torch.log_softmax),
            (fl.logsumexp, torch.logsumexp),
        ]:
            np.testing.assert_allclose(ours(x, 1), theirs(tx, 1).numpy(), rtol=1.3e-6, atol=1e-5, equal_nan=True)


def test_streaming_stores(isa, streamed_outputs, rng):
    """Streamed outputs (non-temporal stores): rows of odd length start at every alignment, so the
    peel/stream/tail split is exercised; the bits are those of ordinary stores, in place too."""
    for dtype, rtol in ((np.float32, 2e-5), (np.float64, 1e-12), (np.float16, 1e-3)):
        x = rng.standard_normal((37, 1001)).astype(dtype)
        for function, reference in ((fl.softmax, ref.softmax), (fl.log_softmax, ref.log_softmax)):
            streamed_outputs(False)
            ordinary = function(x, 1)
            streamed_outputs(True)
            got = function(x, 1)
            want = reference(x.astype(np.float64), 1)
            np.testing.assert_allclose(got.astype(np.float64), want, rtol=rtol, atol=1e-7)
            np.testing.assert_array_equal(got, ordinary)
            y = x.copy()
            np.testing.assert_array_equal(function(y, 1, out=y), ordinary)  # in place
