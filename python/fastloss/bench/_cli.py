"""Command line: python -m fastloss.bench [options]."""

from __future__ import annotations

import argparse
import fnmatch
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._peers import load_providers
from ._registry import CASES, PROVIDERS, Case
from ._report import CSV_COLUMNS, format_header, format_table, write_csv, write_plot
from ._runner import TimingPolicy, run_benchmarks

__all__ = ["main"]

DEFAULT_SHAPES = "32x10,4096x1000,4096x32000"  # small, medium, large (LM vocabulary)
PEER_NAMES = PROVIDERS[1:]

# Normal runs: 1 s of timed calls per measurement, at least 5. --quick: a tenth of that and 3
# repeats, and NumPy/SciPy skipped above 50M elements (each of their calls on 4096x32000 takes
# about a second on a 2-core machine); torch is kept on every shape as the main comparison.
NORMAL = TimingPolicy(budget_s=1.0, min_repeats=5, max_repeats=100_000)
QUICK = TimingPolicy(budget_s=0.1, min_repeats=3, max_repeats=2_000, skip_slow_above=50_000_000)

DESCRIPTION = """\
Compare fastloss with PyTorch, JAX, SciPy and NumPy on the registered operations.

Prints a header (fastloss version, cpu_capability, threads, CPU, library versions) and a table with
one row per op/shape/dtype: the median time of each provider, how many times faster fastloss is
than each peer, and a correctness check. Every peer's output is compared with fastloss's
(np.isclose semantics, NaN-aware, tolerance per dtype); a mismatch or a failing provider is marked
in the table and listed below it, and makes the exit status 1.

Peers that cannot be imported are skipped. Inputs are converted for each peer (torch.from_numpy,
jax.device_put) and jax functions are jit-compiled before timing; each measurement makes one
untimed call (whose output is checked), warms up, then times calls one by one with
time.perf_counter_ns until the time budget is used and at least the minimum number of calls made.
"""

EPILOG = """\
examples:
  python -m fastloss.bench --quick
  python -m fastloss.bench --ops '*' --shapes 32x10 --peers torch    # every op, default or not
  python -m fastloss.bench --ops log_softmax,logsumexp --shapes 4096x32000 --dtype float64
  python -m fastloss.bench --peers torch --threads 1 --csv results.csv --plot results.png
  python -m fastloss.bench --linear 4096x1024x32000,64x4096x128256 --threads 2
"""


def _parse_shapes(text: str) -> list[tuple[int, ...]]:
    shapes = []
    for item in text.split(","):
        try:
            shape = tuple(int(n) for n in item.strip().lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"bad shape {item!r}: expected e.g. 4096x1000"
            ) from None
        if not shape or min(shape) < 1:
            raise argparse.ArgumentTypeError(f"bad shape {item!r}: sizes must be >= 1")
        shapes.append(shape)
    return shapes


_DTYPES = ("float32", "float64", "float16", "bfloat16")


def _parse_dtypes(text: str) -> list[np.dtype]:
    dtypes = []
    for item in (part.strip() for part in text.split(",")):
        if item not in _DTYPES:
            raise argparse.ArgumentTypeError(f"bad dtype {item!r}: use {', '.join(_DTYPES)}")
        if item == "bfloat16":
            try:
                import ml_dtypes
            except ImportError:
                message = "bfloat16 needs ml_dtypes (pip install ml_dtypes)"
                raise argparse.ArgumentTypeError(message) from None
            dtypes.append(np.dtype(ml_dtypes.bfloat16))
        else:
            dtypes.append(np.dtype(item))
    return dtypes


def _parse_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _labels(default: bool) -> list[str]:
    """The labels of the cases in (or, with False, out of) the default run."""
    return [c.label(m) for c in CASES.values() if c.default == default for m in c.modes()]


def build_parser() -> argparse.ArgumentParser:
    labels, by_name = _labels(True), _labels(False)
    by_name_text = f"; only when named or matched: {', '.join(by_name)}" if by_name else ""
    parser = argparse.ArgumentParser(
        prog="python -m fastloss.bench",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--ops",
        type=_parse_list,
        default=None,
        help=f"comma-separated ops or fnmatch patterns (default: {', '.join(labels)}"
        f"{by_name_text}); '*' selects every op; 'op+grad' is an op's forward+backward mode",
    )
    parser.add_argument(
        "--shapes",
        type=_parse_shapes,
        default=_parse_shapes(DEFAULT_SHAPES),
        help=f"comma-separated NxC shapes, class axis last (default: {DEFAULT_SHAPES})",
    )
    parser.add_argument(
        "--dtype",
        type=_parse_dtypes,
        default=[np.dtype(np.float32)],
        help="float32 (default), float64, float16, bfloat16 (ml_dtypes), comma-separated",
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="threads for fastloss and torch (fl.set_num_threads, torch.set_num_threads; "
        "default: fl.get_num_threads()); restored afterwards",
    )
    parser.add_argument(
        "--peers",
        type=_parse_list,
        default=list(PEER_NAMES),
        help=f"comma-separated peers to compare with, those importable (default: "
        f"{','.join(PEER_NAMES)})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"short run (~{QUICK.budget_s:g} s per measurement, >= {QUICK.min_repeats} calls; "
        "numpy and scipy skipped on shapes above 50M elements): the default run in under a minute",
    )
    parser.add_argument(
        "--budget",
        type=_positive_float,
        default=None,
        help=f"seconds of timed calls per measurement (default {NORMAL.budget_s:g}, "
        f"--quick {QUICK.budget_s:g})",
    )
    parser.add_argument(
        "--min-repeats",
        type=_positive_int,
        default=None,
        help=f"at least this many timed calls per measurement (default {NORMAL.min_repeats}, "
        f"--quick {QUICK.min_repeats})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    parser.add_argument(
        "--csv",
        metavar="FILE",
        help="also write one row per op/shape/dtype/provider with the columns: "
        + ", ".join(CSV_COLUMNS)
        + " (speedup = provider time / fastloss time)",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also save a bar chart (log-scale time per provider per case); needs matplotlib",
    )
    parser.add_argument(
        "--linear",
        type=_parse_shapes,
        default=None,
        metavar="NxDxV,...",
        help="instead of the registered ops, time linear_cross_entropy on these (N, d, V) shapes "
        "beside the bare GEMMs, one read of the weight and torch's F.linear_cross_entropy "
        "(--dtype, --threads and --min-repeats apply; e.g. 4096x1024x32000)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--list", action="store_true", help="list the registered ops and the peers, and exit"
    )
    return parser


def _select(patterns: list[str] | None) -> list[tuple[Case, str]]:
    """The (case, mode) pairs whose label matches one of `patterns` (when None, the cases in the
    default run)."""
    pairs = [(case, mode) for case in CASES.values() for mode in case.modes()]
    if patterns is None:
        return [(case, mode) for case, mode in pairs if case.default]
    return [
        (case, mode)
        for case, mode in pairs
        if any(fnmatch.fnmatchcase(case.label(mode), p) for p in patterns)
    ]


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    if args.list:
        width = max(len(c.label(m)) for c in CASES.values() for m in c.modes())
        for case in CASES.values():
            for mode in case.modes():
                line = f"{case.label(mode):{width}}  {', '.join(case.functions(mode))}"
                print(line + ("" if case.default else "  [--ops only]"))
            if case.description:
                print(f"{'':{width}}  ({case.description})")
        print("[--ops only]: not in the default run; --ops '*' runs every op")
        return 0
    unknown_peers = sorted(set(args.peers) - set(PEER_NAMES))
    if unknown_peers:
        parser.error(f"unknown peers {unknown_peers}; choose from {','.join(PEER_NAMES)}")
    benchmarks = _select(args.ops)
    if not benchmarks:
        known = ", ".join(c.label(m) for c in CASES.values() for m in c.modes())
        parser.error(f"--ops {','.join(args.ops)} matches none of: {known}")
    if args.plot:
        try:  # check now, not after a long run
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "error: --plot needs matplotlib, which is not installed; "
                "pip install matplotlib (or drop --plot)",
                file=sys.stderr,
            )
            return 2

    if args.linear is not None:
        return _run_linear(args)
    base = QUICK if args.quick else NORMAL
    policy = TimingPolicy(
        budget_s=args.budget if args.budget is not None else base.budget_s,
        min_repeats=args.min_repeats if args.min_repeats is not None else base.min_repeats,
        max_repeats=base.max_repeats,
        skip_slow_above=base.skip_slow_above,
    )
    # fastloss first: it is the reference every peer is checked against
    modules, missing = load_providers(["fastloss"] + [p for p in PEER_NAMES if p in args.peers])
    fl = modules["fastloss"]
    threads = args.threads if args.threads is not None else fl.get_num_threads()
    torch: Any = modules.get("torch")
    fl_threads_before = fl.get_num_threads()
    torch_threads_before = torch.get_num_threads() if torch is not None else 0
    fl.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        print(format_header(modules, missing, threads, policy), flush=True)
        results = run_benchmarks(
            benchmarks,
            args.shapes,
            args.dtype,
            modules,
            policy,
            threads,
            seed=args.seed,
            progress=None if args.quiet else sys.stderr,
        )
    finally:  # leave the process as we found it (tests call main() in-process)
        fl.set_num_threads(fl_threads_before)
        if torch is not None:
            torch.set_num_threads(torch_threads_before)

    providers = list(modules)
    print()
    print(format_table(results, providers))
    if args.csv:
        write_csv(results, args.csv)
        print(f"wrote {args.csv}")
    if args.plot:
        title = f"fastloss {fl.__version__}, {fl.cpu_capability()}, {threads} threads"
        write_plot(results, providers, args.plot, title)
        print(f"wrote {args.plot}")
    return 1 if any(r.problems() for r in results) else 0


def _run_linear(args: argparse.Namespace) -> int:
    import fastloss as fl

    from ._linear import run_linear

    bad = [shape for shape in args.linear if len(shape) != 3]
    if bad:
        print(f"--linear takes NxDxV shapes, got {bad}", file=sys.stderr)
        return 2
    before = fl.get_num_threads()
    if args.threads is not None:
        fl.set_num_threads(args.threads)
        try:
            import torch

            torch.set_num_threads(args.threads)
        except ImportError:
            pass
    try:
        run_linear(args.linear, [d.name for d in args.dtype], args.min_repeats or 2)
    finally:
        fl.set_num_threads(before)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark with command-line arguments `argv` (default sys.argv[1:]).

    Returns the exit status: 0 all good, 1 a peer's output differs from fastloss's or a provider
    failed, 2 bad arguments (argparse's exits, --help included, become return values).
    """
    try:
        return _run(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
