"""Property tests (hypothesis): identities that must hold for any input."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastloss as fl
import reference as ref

finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=64)
any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)


def _arrays(elements, dtype=np.float64, min_side=1):
    return hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=4, min_side=min_side, max_side=9), elements=elements)


@settings(max_examples=150, deadline=None)
@given(x=_arrays(finite), data=st.data())
def test_softmax_identities(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    p = fl.softmax(x, axis)
    lp = fl.log_softmax(x, axis)
    np.testing.assert_allclose(p.sum(axis=axis), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.exp(lp), p, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(lp, ref.log_softmax(x, axis), rtol=1e-12, atol=1e-12)
    # shift invariance and lse = log_softmax's offset
    np.testing.assert_allclose(fl.log_softmax(x + 7.25, axis), lp, rtol=1e-12, atol=1e-11)
    lse = fl.logsumexp(x, axis, keepdims=True)
    np.testing.assert_allclose(x - lse, lp, rtol=1e-12, atol=1e-11)


@settings(max_examples=150, deadline=None)
@given(x=_arrays(any_float, min_side=0), data=st.data())
def test_nonfinite_inputs_match_reference(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    before = x.copy()
    for ours, theirs in [(fl.softmax, ref.softmax), (fl.log_softmax, ref.log_softmax), (fl.logsumexp, ref.logsumexp)]:
        got = ours(x, axis)
        want = theirs(x, axis)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(x, before)
