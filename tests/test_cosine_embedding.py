"""cosine_embedding_loss against the float64 reference and PyTorch."""

from __future__ import annotations

import itertools

import fastloss as fl
import numpy as np
import pytest
import reference as ref

TOL = {np.float32: {"rtol": 2e-5, "atol": 2e-6}, np.float64: {"rtol": 1e-12, "atol": 1e-13}}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(9, 5), (33, 70), (3, 1), (4, 0)])
def test_every_option(isa, dtype, shape, rng):
    a = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape).astype(dtype)
    y = rng.choice([1, -1, 0], shape[0])
    for margin, reduction in itertools.product([0.0, 0.3, -0.5], ["mean", "sum", "none"]):
        got = fl.cosine_embedding_loss(a, b, y, margin=margin, reduction=reduction)
        np.testing.assert_allclose(
            got, ref.cosine_embedding_loss(a, b, y, margin, reduction), **TOL[dtype]
        )
        assert np.asarray(got).dtype == dtype


def test_matches_torch(isa, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    a = rng.standard_normal((20, 17))
    b = rng.standard_normal((20, 17))
    a[0] = 0.0  # a zero vector: cos = 0
    b[1] = 1e-7 * rng.standard_normal(17)  # where EPSILON matters
    y = rng.choice([1, -1, 0], 20)
    y[:2] = 1
    for margin, reduction in itertools.product([0.0, 0.2], ["mean", "sum", "none"]):
        want = F.cosine_embedding_loss(
            torch.from_numpy(a),
            torch.from_numpy(b),
            torch.from_numpy(y),
            margin=margin,
            reduction=reduction,
        ).numpy()
        np.testing.assert_allclose(
            fl.cosine_embedding_loss(a, b, y, margin=margin, reduction=reduction),
            want,
            rtol=1e-12,
            atol=1e-14,
        )
    # 1-D inputs with a 0-d target
    want = F.cosine_embedding_loss(torch.from_numpy(a[2]), torch.from_numpy(b[2]), torch.tensor(-1))
    np.testing.assert_allclose(fl.cosine_embedding_loss(a[2], b[2], -1), want.item(), rtol=1e-12)
    # broadcasting, as torch
    want = F.cosine_embedding_loss(
        torch.from_numpy(a), torch.from_numpy(b[:1]), torch.from_numpy(y)
    )
    np.testing.assert_allclose(fl.cosine_embedding_loss(a, b[:1], y), want.item(), rtol=1e-12)


def test_edge_cases(isa):
    z = np.zeros((2, 4))
    assert fl.cosine_embedding_loss(z, z, np.array([1, -1]), reduction="none").tolist() == [
        1.0,
        0.0,
    ]
    assert fl.cosine_embedding_loss(z, z, np.array([0, 5])) == 0.0  # other targets give 0
    empty = np.zeros((0, 3))
    assert np.isnan(fl.cosine_embedding_loss(empty, empty, np.zeros(0)))
    assert fl.cosine_embedding_loss(empty, empty, np.zeros(0), reduction="sum") == 0.0
    assert fl.cosine_embedding_loss(empty, empty, np.zeros(0), reduction="none").shape == (0,)
    nan = np.array([[np.nan, 1.0]])
    assert np.isnan(fl.cosine_embedding_loss(nan, nan, np.array([-1])))  # clamp keeps NaN
    assert fl.cosine_embedding_loss(nan, nan, np.array([0])) == 0.0


def test_layouts_threads_and_inputs_untouched(isa, rng):
    a = rng.standard_normal((600, 130)).astype(np.float32)
    b = rng.standard_normal((600, 130)).astype(np.float32)
    y = rng.choice([1, -1], 600)
    before = a.copy()
    want = fl.cosine_embedding_loss(a, b, y, reduction="none")
    np.testing.assert_array_equal(
        fl.cosine_embedding_loss(np.asfortranarray(a), b[:, :], y, reduction="none"), want
    )
    np.testing.assert_array_equal(a, before)
    previous = fl.get_num_threads()
    try:
        results = []
        for n in [1, 2]:
            fl.set_num_threads(n)
            results.append(fl.cosine_embedding_loss(a, b, y))
    finally:
        fl.set_num_threads(previous)
    assert results[0].tobytes() == results[1].tobytes()


def test_half_precision_and_class(rng):
    a = rng.standard_normal((5, 8))
    b = rng.standard_normal((5, 8))
    y = np.array([1, -1, 1, -1, 0])
    got = fl.cosine_embedding_loss(a.astype(np.float16), b.astype(np.float16), y)
    assert got.dtype == np.float16
    assert float(got) == pytest.approx(ref.cosine_embedding_loss(a, b, y), rel=5e-3, abs=1e-3)
    loss = fl.CosineEmbeddingLoss(margin=0.1, reduction="sum")
    assert loss(a, b, y) == fl.cosine_embedding_loss(a, b, y, margin=0.1, reduction="sum")
    assert "margin=0.1" in repr(loss)


def test_errors():
    a = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"both be \(N, D\) or both \(D,\)"):
        fl.cosine_embedding_loss(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"x1 of shape \(3, 4\) and x2 of shape \(3, 5\)"):
        fl.cosine_embedding_loss(a, np.zeros((3, 5)), np.ones(3))
    # Found by the fuzzer: a length-1 feature axis broadcast silently gave 1 - cos of the
    # broadcast vectors, where torch gives a "cosine" above 1 (each input's own norm).
    for x1, x2 in [(np.ones(2), np.ones(1)), (np.ones((3, 1)), a), (np.ones((3, 1)), np.zeros((1, 0)))]:
        with pytest.raises(ValueError, match="same number of features"):
            fl.cosine_embedding_loss(x1, x2, np.ones(x1.shape[:-1]) if x1.ndim == 2 else 1.0)
        with pytest.raises(ValueError, match="same number of features"):
            fl.cosine_embedding_loss(x1, x2, np.ones(3) if x1.ndim == 2 else 1.0, return_grad=True)
    with pytest.raises(ValueError, match=r"target has shape \(2,\), expected \(3,\)"):
        fl.cosine_embedding_loss(a, a, np.ones(2))
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        fl.cosine_embedding_loss(a, a, np.ones(3), reduction="batchmean")
    with pytest.raises(TypeError, match="target must be a numeric array"):
        fl.cosine_embedding_loss(a, a, np.array(["a", "b", "c"]))
    with pytest.raises(TypeError, match="x1 must be a floating-point array"):
        fl.cosine_embedding_loss(np.zeros((3, 4), int), a, np.ones(3))


def test_misaligned_target():
    """Found by the fuzzer: a misaligned float64 target raised TypeError ("must be an aligned
    native float64 array") instead of being copied, as every other misaligned input is."""
    a = np.arange(12.0).reshape(3, 4)
    b = a[::-1].copy()
    want = fl.cosine_embedding_loss(a, b, np.array([1.0, -1.0, 1.0]), reduction="none")
    raw = np.zeros(3 * 8 + 1, np.uint8)
    y = raw[1:].view(np.float64)
    y[:] = [1.0, -1.0, 1.0]
    assert not y.flags.aligned
    np.testing.assert_array_equal(fl.cosine_embedding_loss(a, b, y, reduction="none"), want)
    r = fl.cosine_embedding_loss(a, b, y, reduction="none", return_grad=True)
    np.testing.assert_array_equal(r.loss, want)
    one = raw[1:9].view(np.float64).reshape(())  # a 0-d target for (D,) inputs
    assert fl.cosine_embedding_loss(a[0], b[0], one) == fl.cosine_embedding_loss(a[0], b[0], 1.0)
