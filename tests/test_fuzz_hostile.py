"""Fuzzing where operands live (issue "No input may crash, hang or silently corrupt").

The per-family fuzz tests (tests/test_fuzz_<family>.py) draw values, shapes and layouts; this
file draws where the operands are:
  * inside the output buffer (``out=`` / ``grad_out=``): every operand of every function, at the
    buffer's start, shifted, reversed or strided (a view of a view). The result must equal the
    same call on separate buffers: an overlapping operand is copied first (tests/hostile_calls.py
    lists the calls);
  * in a masked array, which is refused with a TypeError (its mask would be silently ignored);
  * in a zero-size array whose other dimension is 2**40 (a zero-stride view): the call returns
    at once, in a subprocess with a timeout, since a hang is the failure mode.
The concurrent writer and fork-after-use dimensions are in tests/test_hostile_inputs.py, also in
subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hostile_calls as hc
from fuzz_property import EXAMPLES, EXPLORE

DERANDOMIZE = not EXPLORE


def _assert_same_results(got: tuple, want: tuple, what: str) -> None:
    assert len(got) == len(want), what
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, what
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-300, equal_nan=True, err_msg=what)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE)
@given(
    name=st.sampled_from(hc.WITH_OUTPUT),
    data=st.data(),
    n=st.integers(1, 6),
    c=st.integers(1, 7),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_operand_inside_the_output_buffer(name, data, n, c, seed):
    case = hc.CASE_BY_NAME[name]
    operands = case.make(np.random.default_rng(seed), n, c)
    want = hc.flat(case.run({k: v.copy() for k, v in operands.items()}, None))
    which = data.draw(st.sampled_from(sorted(operands)), label="operand")
    kind = data.draw(st.sampled_from(["same", "shifted", "reversed", "strided"]), label="kind")
    like = operands[case.output_like]
    shift = data.draw(st.integers(1, max(1, like.size - 1)), label="shift")
    out, view = hc.overlapping(operands[which], like.shape, kind, shift)
    hostile = dict(operands, **{which: view})
    got = hc.flat(case.run(hostile, out))
    _assert_same_results(got, want, f"{name}: {which} {kind} (shift {shift}) in the output buffer")


@settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE)
@given(name=st.sampled_from([c.name for c in hc.CASES]), data=st.data(), seed=st.integers(0, 2**16))
def test_masked_arrays_are_refused(name, data, seed):
    case = hc.CASE_BY_NAME[name]
    operands = case.make(np.random.default_rng(seed), 4, 5)
    names = sorted(operands) + (["out"] if case.output_like else [])
    which = data.draw(st.sampled_from(names), label="masked")
    out = None
    if which == "out":
        out = np.ma.masked_array(np.empty_like(operands[case.output_like]))
    else:
        a = operands[which]
        operands[which] = np.ma.masked_array(a, mask=np.zeros(a.shape, bool))
    with pytest.raises(TypeError, match="masked array"):
        case.run(operands, out)


ZERO_SIZE_SCRIPT = """
import time
import numpy as np
import hostile_calls as hc

HUGE = 2**40
def zero_size(a):
    # the operand's first axis made empty and its others huge, as a zero-stride view
    if a.ndim == 2:
        return np.broadcast_to(a.ravel()[:1].reshape(1, 1), (0, HUGE)) if a.size else a
    return np.broadcast_to(a[:1], (HUGE,)) if a.shape[0] != 4 else a[:0]

for case in hc.CASES:
    operands = {k: zero_size(v) for k, v in case.make(np.random.default_rng(0), 4, 5).items()}
    start = time.perf_counter()
    result = hc.flat(case.run(operands, None))
    seconds = time.perf_counter() - start
    assert seconds < 0.5, (case.name, seconds)
    assert all(r.size <= 1 for r in result), (case.name, [r.shape for r in result])
    print(case.name, f"{seconds * 1e6:.0f} us")
"""


def test_zero_size_inputs_with_a_huge_other_dimension_return_at_once():
    tests = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(ZERO_SIZE_SCRIPT)],
        capture_output=True, text=True, timeout=120, check=False,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(r.stdout.splitlines()) == len(hc.CASES), r.stdout
