"""The header, the results table, the CSV file and the bar chart."""

from __future__ import annotations

import csv
import os
import platform
import sys
import time
from typing import Any

from ._peers import PEERS
from ._runner import ERROR, MISMATCH, SKIPPED, CaseResult, TimingPolicy

__all__ = ["CSV_COLUMNS", "format_header", "format_table", "write_csv", "write_plot"]

CSV_COLUMNS = (
    "op", "shape", "dtype", "threads", "provider", "median_s", "p20_s", "p80_s", "speedup", "check",
)  # fmt: skip


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo on Linux."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def format_header(
    modules: dict[str, Any],
    missing: dict[str, str],
    threads: int,
    policy: TimingPolicy,
) -> str:
    fl = modules["fastloss"]
    versions = [f"python {platform.python_version()}"]
    for name, module in modules.items():
        if name == "fastloss":
            continue
        version = PEERS[name].version(module)
        if name == "torch":
            version += f" ({module.get_num_threads()} threads)"
        elif name == "jax":
            version += " (XLA's own thread pool, not set by --threads)"
        versions.append(f"{name} {version}")
    lines = [
        f"fastloss {fl.__version__} vs peers | cpu_capability {fl.cpu_capability()}"
        + f" | threads {threads}",
        f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs), {platform.system()}"
        + f" {platform.machine()}",
        "versions: " + ", ".join(versions),
    ]
    for name, why in missing.items():
        lines.append(f"{name}: not available ({why})")
    note = busy_note()
    if note:
        lines.append(note)
    lines.append(
        f"timing: median of the calls made in {policy.budget_s:g} s (at least"
        f" {policy.min_repeats}) after warm-up; speedup = peer time / fastloss time"
        " (> 1: fastloss is faster)"
    )
    return "\n".join(lines)


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs since boot, from /proc/stat (Linux only)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields)  # idle + iowait


def busy_note(interval_s: float = 0.1) -> str:
    """A warning when other processes are using the CPU (the load average would also count the
    minutes before, our own earlier runs included, so sample the CPU for a moment instead)."""
    before = _cpu_times()
    if before is None:
        return ""
    time.sleep(interval_s)
    after = _cpu_times()
    if after is None or after[1] <= before[1]:
        return ""
    busy = 1.0 - (after[0] - before[0]) / (after[1] - before[1])
    if busy < 0.2:
        return ""
    # a competing process distorts timings, threaded ones most (a parallel region waits for
    # its slowest thread)
    return (
        f"warning: the CPU was {busy:.0%} busy with other processes at start: timings may be noisy"
    )


def _micro() -> str:
    # "µs" where stdout can encode it, else "us"
    try:
        "µ".encode(sys.stdout.encoding or "ascii")
        return "µs"
    except (UnicodeEncodeError, LookupError):
        return "us"


def format_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, _micro()), (1e-9, "ns")):
        if seconds >= scale or unit == "ns":
            value = seconds / scale
            break
    digits = 0 if value >= 100 else 1 if value >= 10 else 2  # three significant digits
    return f"{value:.{digits}f} {unit}"


def _time_cell(result: CaseResult, provider: str) -> str:
    m = result.measurements.get(provider)
    if m is None:
        return ""  # this provider has no implementation of the op
    if m.status == ERROR:
        return "error"
    if m.status == SKIPPED:
        return "skipped"
    cell = format_time(m.median_s)
    return cell + " !" if m.status == MISMATCH else cell


def _check_cell(result: CaseResult) -> str:
    problems = result.problems()
    if not problems:
        return "ok"
    return ", ".join(f"{m.status} {m.provider}" for m in problems)


def format_table(results: list[CaseResult], providers: list[str]) -> str:
    """One row per op/shape/dtype: median per provider, speedups of fastloss, the check."""
    header = ["op", "shape", "dtype", *providers, "fastloss speedup vs", "check"]
    rows = [header]
    for r in results:
        speedups = []
        for p in providers[1:]:
            s = r.speedup(p)
            if s is not None:
                speedups.append(f"{p} {s:.2f}x" if s < 1 else f"{p} {s:.1f}x")
        rows.append(
            [r.label, r.shape_str, r.dtype]
            + [_time_cell(r, p) for p in providers]
            + ["  ".join(speedups), _check_cell(r)]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    n_text = 3  # op, shape, dtype left-aligned; times right-aligned
    lines = []
    for k, row in enumerate(rows):
        cells = [
            cell.ljust(w) if i < n_text or i >= len(header) - 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    problems = [(r, m) for r in results for m in r.problems()]
    lines.append("")
    if problems:
        lines.append(f"{len(problems)} PROBLEM(S) ('!' marks a time whose output is wrong):")
        for r, m in problems:
            lines.append(
                f"  {m.status} {m.provider} on {r.label} {r.shape_str} {r.dtype}: {m.detail}"
            )
    else:
        lines.append("check: every peer's output matches fastloss's")
    skipped = sorted(
        {m.provider for r in results for m in r.measurements.values() if m.status == SKIPPED}
    )
    if skipped:
        lines.append(f"skipped by --quick on large shapes: {', '.join(skipped)}")
    return "\n".join(lines)


def write_csv(results: list[CaseResult], path: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in results:
            for provider, m in r.measurements.items():
                numbers = [
                    m.quantile_s(50),
                    m.quantile_s(20),
                    m.quantile_s(80),
                    r.speedup(provider),
                ]
                writer.writerow(
                    [r.label, r.shape_str, r.dtype, r.threads, provider]
                    + ["" if v is None else f"{v:.6g}" for v in numbers]
                    + [m.status]
                )


def write_plot(results: list[CaseResult], providers: list[str], path: str, title: str) -> None:
    """Grouped bars: one group per case, one bar per provider, log-scale median time."""
    # Figure without pyplot: no global state, no GUI backend, fine inside other programs
    from matplotlib.figure import Figure

    n_cases = len(results)
    width = 0.8 / max(len(providers), 1)
    fig = Figure(figsize=(max(6.0, 1.2 * n_cases + 2.0), 4.5), layout="constrained")
    ax = fig.add_subplot()
    for j, provider in enumerate(providers):
        xs, ys = [], []
        for i, r in enumerate(results):
            m = r.measurements.get(provider)
            if m is not None and m.median_s is not None:
                xs.append(i + (j - (len(providers) - 1) / 2) * width)
                ys.append(m.median_s)
        ax.bar(xs, ys, width=width, label=provider)
    ax.set_yscale("log")
    ax.set_ylabel("median time per call (s)")
    ax.set_xticks(range(n_cases))
    ax.set_xticklabels([f"{r.label}\n{r.shape_str}\n{r.dtype}" for r in results], fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
