from __future__ import annotations

import numpy as np
import pytest

import fastloss as fl
from fastloss._config import _use_capability

# The fuzz tests' property lives in a helper module: rewrite its asserts as in a test module.
pytest.register_assert_rewrite("fuzz_property")


@pytest.fixture(params=fl.available_capabilities())
def isa(request: pytest.FixtureRequest):
    """Runs the test once per instruction-set variant this CPU supports."""
    with _use_capability(request.param):
        yield request.param


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request: pytest.FixtureRequest):
    previous = fl.get_num_threads()
    fl.set_num_threads(request.param)
    try:
        yield request.param
    finally:
        fl.set_num_threads(previous)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def streamed_outputs():
    """Within the test, every rows- or columns-layout output large enough to be streamed by
    default, and any smaller one too, is written with non-temporal stores; call it with False for
    ordinary stores. The default threshold (a quarter of the last-level cache, at most 32 MiB) is
    restored after."""

    def stream(on: bool = True) -> None:
        fl._core._set_streaming_store_min_bytes(0 if on else 2**62)

    try:
        yield stream
    finally:
        fl._core._set_streaming_store_min_bytes(-1)
