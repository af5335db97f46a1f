"""The NumPy API reads JAX arrays through DLPack without a copy (torch tensors: test_torch_ops;
skipped without JAX)."""

from __future__ import annotations

import numpy as np
import pytest


def test_numpy_api_takes_jax_arrays():
    jnp = pytest.importorskip("jax.numpy")
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((3, 4), dtype=np.float32)
    x, t = jnp.asarray(x_np), jnp.asarray([0, 3, 1])
    import fastloss as fl

    np.testing.assert_array_equal(fl.softmax(x, 1), fl.softmax(x_np, 1))
    got = fl.cross_entropy(x, t, return_grad=True)
    want = fl.cross_entropy(x_np, np.array([0, 3, 1]), return_grad=True)
    assert got.loss == want.loss
    np.testing.assert_array_equal(got.grad, want.grad)
    assert np.from_dlpack(x).ctypes.data == x.unsafe_buffer_pointer()  # the view fastloss reads
