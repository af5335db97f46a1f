"""Timing one provider, checking its output against fastloss's, and running the selected cases."""

from __future__ import annotations

import gc
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from ._peers import PEERS
from ._registry import Case, Inputs

__all__ = [
    "CaseResult",
    "Comparison",
    "Measurement",
    "TimingPolicy",
    "compare_outputs",
    "run_benchmarks",
    "time_calls",
]

# Status of one provider's measurement in one case.
REFERENCE = "reference"  # fastloss itself
OK = "ok"
MISMATCH = "MISMATCH"
ERROR = "ERROR"
UNCHECKED = "unchecked"  # fastloss failed, so there was nothing to compare with
SKIPPED = "skipped"
PROBLEMS = (MISMATCH, ERROR)


@dataclass(frozen=True)
class TimingPolicy:
    budget_s: float  # time spent on the timed calls of one measurement (after the minimum)
    min_repeats: int  # timed calls made even when one call exceeds the budget
    max_repeats: int  # bound for tiny shapes, where the budget would allow millions of calls
    warmup_fraction: float = 0.1  # of the budget, for untimed warm-up calls (at least one)
    skip_slow_above: int | None = None  # elements; --quick skips the slow peers beyond it


SLOW_PEERS = ("scipy", "numpy")


def time_calls(run: Any, policy: TimingPolicy) -> tuple[Any, list[int]]:
    """(output of a first untimed call, durations in ns of the timed calls)."""
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection in the middle of one call would make it an outlier
    try:
        # Warm-up (fills caches, faults pages in, lets lazy initialisation happen): the first call,
        # whose output is the one checked, then more while the warm-up share of the budget lasts.
        warmup_ns = int(policy.budget_s * policy.warmup_fraction * 1e9)
        start = time.perf_counter_ns()
        output = run()
        while time.perf_counter_ns() - start < warmup_ns:
            run()
        times: list[int] = []
        budget_ns = int(policy.budget_s * 1e9)
        start = time.perf_counter_ns()
        while True:
            t0 = time.perf_counter_ns()
            run()  # the result is dropped at once, so every call allocates its output afresh
            t1 = time.perf_counter_ns()
            times.append(t1 - t0)
            if len(times) >= policy.max_repeats:
                break
            if len(times) >= policy.min_repeats and t1 - start >= budget_ns:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return output, times


# --- correctness --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    ok: bool
    detail: str = ""  # what differs, when not ok


def to_numpy_list(output: Any) -> list[np.ndarray]:
    """The arrays in an output: a NumPy/torch/jax array or scalar, or a tuple of them."""
    if isinstance(output, (tuple, list)):  # includes fastloss's LossAndGrad named tuple
        return [a for item in output for a in to_numpy_list(item)]
    if hasattr(output, "detach") and hasattr(output, "numpy"):  # torch.Tensor
        output = output.detach()
        if str(output.dtype) == "torch.bfloat16":  # NumPy has no bfloat16 of its own
            output = output.float()
        output = output.numpy()
    return [np.asarray(output)]


_CHUNK = 1 << 16  # elements compared at a time: temporaries stay in cache, memory stays flat


def _count_mismatches(
    expected: np.ndarray, actual: np.ndarray, rtol: float, atol: float
) -> tuple[int, float, int]:
    """(number of values not close, largest finite |difference| among them, first bad index).

    Close means |a - e| <= atol + rtol * |e| (np.isclose), or both NaN, or equal infinities.
    """
    e = expected.reshape(-1)
    a = actual.reshape(-1)
    if e.dtype == bool or a.dtype == bool:  # no arithmetic on booleans: compare exactly
        e, a = e.astype(np.int8), a.astype(np.int8)
    elif e.dtype.itemsize == 2 or a.dtype.itemsize == 2:  # half precision: compare in float32
        e, a = e.astype(np.float32), a.astype(np.float32)
    n_bad, max_err, first_bad = 0, 0.0, -1
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is expected here
        for start in range(0, e.size, _CHUNK):
            ec, ac = e[start : start + _CHUNK], a[start : start + _CHUNK]
            diff = np.abs(ac - ec)
            allowed = np.abs(ec) * rtol  # float even for integer outputs
            allowed += atol
            # an infinite expected value allows no difference at all (inf vs -inf is a mismatch)
            np.minimum(allowed, np.finfo(allowed.dtype).max, out=allowed)
            close = diff <= allowed  # False where diff is NaN (NaNs, equal infinities): see below
            if close.all():
                continue
            far = np.flatnonzero(~close)
            same = (ac[far] == ec[far]) | (np.isnan(ac[far]) & np.isnan(ec[far]))
            bad = far[~same]
            if bad.size == 0:
                continue
            if first_bad < 0:
                first_bad = start + int(bad[0])
            n_bad += bad.size
            bad_diff = diff[bad]
            finite = bad_diff[np.isfinite(bad_diff)]
            if finite.size:
                max_err = max(max_err, float(finite.max()))
    return n_bad, max_err, first_bad


def _value(a: np.ndarray, flat_index: int) -> str:
    value = a.reshape(-1)[flat_index]
    return f"{float(value):.9g}" if np.issubdtype(a.dtype, np.floating) else repr(value.item())


def compare_outputs(expected: Any, actual: Any, rtol: float, atol: float) -> Comparison:
    """Whether `actual` matches `expected` (fastloss's output) value for value, NaN-aware."""
    exp_arrays, act_arrays = to_numpy_list(expected), to_numpy_list(actual)
    if len(exp_arrays) != len(act_arrays):
        return Comparison(False, f"{len(act_arrays)} outputs, fastloss gives {len(exp_arrays)}")
    for i, (e, a) in enumerate(zip(exp_arrays, act_arrays)):
        which = f"output {i}: " if len(exp_arrays) > 1 else ""
        if e.shape != a.shape:
            return Comparison(False, f"{which}shape {a.shape}, fastloss gives {e.shape}")
        n_bad, max_err, first = _count_mismatches(e, a, rtol, atol)
        if n_bad:
            where = tuple(int(k) for k in np.unravel_index(first, e.shape)) if e.ndim else ()
            return Comparison(
                False,
                f"{which}{n_bad} of {e.size} values differ (max |diff| {max_err:.3g}, "
                f"first at {where}: {_value(a, first)} vs fastloss {_value(e, first)}; "
                f"rtol={rtol:g}, atol={atol:g})",
            )
    return Comparison(True)


# --- running ------------------------------------------------------------------------------------


@dataclass
class Measurement:
    provider: str
    status: str
    times_ns: list[int] = field(default_factory=list)
    detail: str = ""

    def quantile_s(self, q: float) -> float | None:
        if not self.times_ns:
            return None
        return float(np.percentile(self.times_ns, q)) * 1e-9

    @property
    def median_s(self) -> float | None:
        return self.quantile_s(50)


@dataclass
class CaseResult:
    label: str  # op, or op+grad
    shape: tuple[int, ...]
    dtype: str
    threads: int
    measurements: dict[str, Measurement]

    @property
    def shape_str(self) -> str:
        return "x".join(str(n) for n in self.shape)

    def speedup(self, provider: str) -> float | None:
        """How many times faster fastloss is than `provider` (median over median)."""
        ref = self.measurements.get("fastloss")
        other = self.measurements.get(provider)
        if ref is None or other is None or not ref.times_ns or not other.times_ns:
            return None
        return other.median_s / ref.median_s  # type: ignore[operator]

    def problems(self) -> list[Measurement]:
        return [m for m in self.measurements.values() if m.status in PROBLEMS]


def _measure(
    case: Case,
    mode: str,
    provider: str,
    module: Any,
    inputs: Inputs,
    policy: TimingPolicy,
    reference: Any,
    tolerance: tuple[float, float],
) -> tuple[Measurement, Any]:
    """Time one provider on one case; (measurement, its output)."""
    try:
        run = PEERS[provider].prepare(module, case.functions(mode)[provider], inputs, mode)
        output, times = time_calls(run, policy)
    except Exception as err:  # noqa: BLE001  (show a failing provider, do not abort the run)
        msg = str(err).splitlines()[0] if str(err) else ""
        return Measurement(provider, ERROR, detail=f"{type(err).__name__}: {msg}"), None
    if provider == "fastloss":
        return Measurement(provider, REFERENCE, times), output
    if reference is None:
        return Measurement(provider, UNCHECKED, times, "fastloss gave no output"), output
    comparison = compare_outputs(reference, output, *tolerance)
    status = OK if comparison.ok else MISMATCH
    return Measurement(provider, status, times, comparison.detail), output


def run_benchmarks(
    benchmarks: list[tuple[Case, str]],
    shapes: list[tuple[int, ...]],
    dtypes: list[np.dtype],
    modules: dict[str, Any],
    policy: TimingPolicy,
    threads: int,
    seed: int = 0,
    progress: TextIO | None = sys.stderr,
) -> list[CaseResult]:
    """Every (case, mode) on every shape and dtype, with each provider in `modules` that has it."""
    results: list[CaseResult] = []
    total = len(benchmarks) * len(shapes) * len(dtypes)
    done = 0
    for shape in shapes:
        for dtype in dtypes:
            # cases with the same setup (softmax, log_softmax, ...) share one set of inputs
            inputs_by_setup: dict[Any, Inputs] = {}
            for case, mode in benchmarks:
                done += 1
                label, shape_str = case.label(mode), "x".join(map(str, shape))
                if progress is not None:
                    print(
                        f"[{done:{len(str(total))}}/{total}] {label} {shape_str} {dtype.name}:",
                        end="",
                        file=progress,
                        flush=True,
                    )
                case_start = time.perf_counter()
                if case.setup not in inputs_by_setup:
                    rng = np.random.default_rng(seed)  # same inputs whichever cases are selected
                    inputs_by_setup[case.setup] = case.setup(shape, dtype, rng)
                inputs = inputs_by_setup[case.setup]
                fns = case.functions(mode)
                tolerance = case.tolerance_for(dtype)
                measurements: dict[str, Measurement] = {}
                reference: Any = None
                n_elements = int(np.prod(shape))
                for provider, module in modules.items():
                    if provider not in fns:
                        continue
                    if (
                        policy.skip_slow_above is not None
                        and provider in SLOW_PEERS
                        and n_elements > policy.skip_slow_above
                    ):
                        measurements[provider] = Measurement(
                            provider, SKIPPED, detail="slow peer skipped by --quick"
                        )
                        continue
                    if progress is not None:
                        print(f" {provider}", end="", file=progress, flush=True)
                    measurement, output = _measure(
                        case, mode, provider, module, inputs, policy, reference, tolerance
                    )
                    measurements[provider] = measurement
                    if provider == "fastloss":
                        reference = output
                    del output  # large outputs: free each peer's before running the next
                if progress is not None:
                    print(f" ({time.perf_counter() - case_start:.1f} s)", file=progress, flush=True)
                results.append(CaseResult(label, shape, dtype.name, threads, measurements))
    return results
