"""fastloss.dask on a real dask.distributed cluster: the graphs pickle, run on workers and give
the in-memory results. An in-process cluster for the common case, and one cluster of worker
processes (each importing fastloss itself). Every cluster is closed, with timeouts, whatever
happens in the test."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastloss as fl  # noqa: E402
import fastloss.dask as fld  # noqa: E402

TIMEOUT = 30  # seconds, for starting, computing and closing


@contextlib.contextmanager
def client_of(cluster):
    client = distributed.Client(cluster, timeout=TIMEOUT)
    try:
        yield client
    finally:
        client.close(timeout=TIMEOUT)
        cluster.close(timeout=TIMEOUT)


def _data():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((64, 50)).astype(np.float32)
    t = rng.integers(0, 50, 64)
    t[:9] = -100
    return x, t


def test_in_process_cluster():
    x, t = _data()
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    )
    with client_of(cluster) as client:
        loss = fld.cross_entropy(da.from_array(x, chunks=(16, 20)), t, label_smoothing=0.1)
        assert np.isclose(client.compute(loss).result(timeout=TIMEOUT),
                          fl.cross_entropy(x, t, label_smoothing=0.1), rtol=2e-7)
        got = fld.cross_entropy(da.from_array(x, chunks=(16, 50)), t, return_grad=True)
        loss, grad = client.compute([got.loss, got.grad], sync=True)
        expected = fl.cross_entropy(x, t, return_grad=True)
        np.testing.assert_allclose(grad, expected.grad, rtol=3e-7, atol=1e-9)
        assert np.isclose(loss, expected.loss, rtol=2e-7)


# Worker processes inherit LD_PRELOAD; under scripts/sanitize.sh that is the ASan runtime, and
# each worker (an uninstrumented Python that forks and spawns) starts too slowly to be worth it:
# the in-process test above runs the same kernels under the sanitizers.
SANITIZED = "libasan" in os.environ.get("LD_PRELOAD", "")


@pytest.mark.skipif(SANITIZED, reason="process workers under the ASan runtime (LD_PRELOAD)")
def test_process_workers_with_a_memory_limit():
    x, t = _data()
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB",
        dashboard_address=None,
    )
    with client_of(cluster) as client:
        loss, lse = fld.linear_cross_entropy(
            da.from_array(x[:, :8], chunks=(16, 8)), da.from_array(x[:40, :8], chunks=(15, 8)),
            np.where(t < 40, t, -100), return_lse=True,
        )
        got = client.compute([loss, lse], sync=True)
        expected = fl.linear_cross_entropy(x[:, :8], x[:40, :8], np.where(t < 40, t, -100))
        assert np.isclose(got[0], expected, rtol=2e-7)
        assert got[1].shape == (64,)
        assert np.isclose(
            client.compute(fld.logsumexp(da.from_array(x, chunks=(32, 10))).sum(), sync=True),
            fl.logsumexp(x).astype(np.float64).sum(), rtol=1e-6,
        )
