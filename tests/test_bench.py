"""Smoke tests of the comparison benchmark (python -m fastloss.bench), on tiny shapes."""

from __future__ import annotations

import csv
import inspect
import re
import subprocess
import sys

import numpy as np
import pytest

import fastloss as fl
from fastloss import bench

# Tiny shapes and a 10 ms budget per measurement: these tests check the harness, not the speed.
FAST = ["--shapes", "8x5", "--quick", "--budget", "0.01", "--quiet"]


_busy_note = bench._report.busy_note


@pytest.fixture(autouse=True)
def _no_busy_sampling(monkeypatch):
    """The header samples the CPU for 0.1 s to warn about a busy machine; skip that here."""
    monkeypatch.setattr(bench._report, "busy_note", lambda interval_s=0.1: "")


def test_busy_note():
    note = _busy_note(0.01)
    assert note == "" or note.startswith("warning: the CPU was")


def _table_rows(stdout: str, label: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(label + " ")]


def test_prints_header_and_table(capsys: pytest.CaptureFixture[str]):
    assert bench.main([*FAST, "--peers", "numpy"]) == 0
    out = capsys.readouterr().out
    assert f"fastloss {fl.__version__}" in out
    assert f"cpu_capability {fl.cpu_capability()}" in out
    assert f"numpy {np.__version__}" in out
    for op in ("softmax", "log_softmax", "logsumexp"):
        (row,) = _table_rows(out, op)
        assert "8x5" in row and "float32" in row
        assert "µs" in row or "us" in row
        assert re.search(r"  numpy \d+\.\dx  ", row)  # fastloss's speedup, e.g. "numpy 3.1x"
        assert row.endswith("ok")
    assert "every peer's output matches fastloss's" in out


# fastloss's public functions that are not losses or softmax-family functions
_NOT_BENCHMARKED = {
    "available_capabilities", "cpu_capability", "get_num_threads", "set_num_threads", "show_config",
}  # fmt: skip


def test_every_public_function_is_registered():
    """Each public loss and softmax-family function has a case named after it, with a +grad mode
    where it can return its gradient (return_grad)."""
    functions = [
        name
        for name in fl.__all__
        if inspect.isfunction(getattr(fl, name)) and name not in _NOT_BENCHMARKED
    ]
    assert "entropy" in functions and "softmax_backward" in functions
    for name in functions:
        assert name in bench.CASES, f"fastloss.{name} has no benchmark case"
        has_grad = "return_grad" in inspect.signature(getattr(fl, name)).parameters
        assert (bench.GRAD in bench.CASES[name].modes()) == has_grad, name


def test_default_run_leaves_out_the_cases_run_by_name(capsys: pytest.CaptureFixture[str]):
    assert bench.main([*FAST, "--peers", "numpy"]) == 0
    out = capsys.readouterr().out
    labels = {False: [], True: []}
    for case in bench.CASES.values():
        labels[case.default] += [case.label(mode) for mode in case.modes()]
    assert "nll_loss+grad" in labels[True] and "entropy" in labels[False]
    for label in labels[True]:
        assert len(_table_rows(out, label)) == 1, label
    for label in labels[False]:
        assert not _table_rows(out, label), label
    # --list shows them all and marks those
    assert bench.main(["--list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    for default, marked in ((True, False), (False, True)):
        for label in labels[default]:
            (line,) = [line for line in listing if line.split()[0] == label]
            assert line.endswith("[--ops only]") == marked, line


def test_every_case_matches_torch_and_numpy(capsys: pytest.CaptureFixture[str]):
    """All registered cases, the ones outside the default run included (--ops '*')."""
    pytest.importorskip("torch")
    assert bench.main([*FAST, "--ops", "*", "--peers", "torch,numpy"]) == 0
    out = capsys.readouterr().out
    for case in bench.CASES.values():
        for mode in case.modes():
            (row,) = _table_rows(out, case.label(mode))
            assert "torch " in row and row.endswith("ok"), row


def test_scipy_peer(capsys: pytest.CaptureFixture[str]):
    pytest.importorskip("scipy")
    assert bench.main([*FAST, "--peers", "scipy"]) == 0
    out = capsys.readouterr().out
    for op in ("softmax", "log_softmax", "logsumexp"):
        (row,) = _table_rows(out, op)
        assert " scipy " in row and row.endswith("ok")


def test_csv_has_the_documented_columns(tmp_path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "results.csv"
    args = [*FAST, "--ops", "softmax,log_softmax,logsumexp", "--peers", "numpy"]
    args += ["--dtype", "float32,float64", "--csv", str(path)]
    assert bench.main(args) == 0
    assert f"wrote {path}" in capsys.readouterr().out
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == bench.CSV_COLUMNS
        rows = list(reader)
    assert bench.CSV_COLUMNS[:9] == (
        "op", "shape", "dtype", "threads", "provider", "median_s", "p20_s", "p80_s", "speedup",
    )  # fmt: skip
    # 3 ops x 2 dtypes x (fastloss, numpy)
    assert len(rows) == 12
    assert {r["dtype"] for r in rows} == {"float32", "float64"}
    for r in rows:
        assert r["shape"] == "8x5"
        assert int(r["threads"]) == fl.get_num_threads()
        assert 0 < float(r["p20_s"]) <= float(r["median_s"]) <= float(r["p80_s"])
        if r["provider"] == "fastloss":
            assert float(r["speedup"]) == 1.0 and r["check"] == "reference"
        else:
            assert float(r["speedup"]) > 0 and r["check"] == "ok"


def _softmax_case(op: str, numpy_fn) -> bench.Case:
    return bench.Case(
        op=op,
        setup=bench.logits,
        forward={
            "fastloss": lambda fl, x: fl.softmax(x, axis=-1),
            "numpy": lambda np_, x: numpy_fn(x),
        },
    )


def test_a_wrong_peer_is_flagged(monkeypatch, capsys: pytest.CaptureFixture[str]):
    wrong = _softmax_case("wrong_softmax", lambda x: bench.numpy_softmax(x) * 1.01)
    monkeypatch.setitem(bench.CASES, wrong.op, wrong)
    assert bench.main([*FAST, "--ops", "wrong_softmax", "--peers", "numpy"]) == 1
    out = capsys.readouterr().out
    (row,) = _table_rows(out, "wrong_softmax")
    assert " !" in row and row.endswith("MISMATCH numpy")
    assert "1 PROBLEM(S)" in out
    assert "MISMATCH numpy on wrong_softmax 8x5 float32: 40 of 40 values differ" in out


def test_a_failing_peer_is_flagged(monkeypatch, capsys: pytest.CaptureFixture[str]):
    def fails(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("deliberate failure")

    failing = _softmax_case("failing_softmax", fails)
    monkeypatch.setitem(bench.CASES, failing.op, failing)
    assert bench.main([*FAST, "--ops", "failing_*", "--peers", "numpy"]) == 1
    out = capsys.readouterr().out
    (row,) = _table_rows(out, "failing_softmax")
    assert "error" in row and row.endswith("ERROR numpy")
    assert "RuntimeError: deliberate failure" in out


def test_compare_outputs():
    a = np.array([[1.0, np.nan, np.inf], [-np.inf, 0.0, 1e-30]], dtype=np.float32)
    assert bench.compare_outputs(a, a.copy(), 1e-4, 1e-6).ok
    assert bench.compare_outputs(a, a + np.float32(1e-7), 1e-4, 1e-6).ok  # within tolerance
    nan_moved = a.copy()
    nan_moved[0, 1] = 0.0
    result = bench.compare_outputs(a, nan_moved, 1e-4, 1e-6)
    assert not result.ok and "1 of 6 values differ" in result.detail and "(0, 1)" in result.detail
    inf_flipped = a.copy()
    inf_flipped[0, 2] = -np.inf
    assert not bench.compare_outputs(a, inf_flipped, 1e-4, 1e-6).ok
    off = a.copy()
    off[1, 1] = 1e-3
    result = bench.compare_outputs(a, off, 1e-4, 1e-6)
    assert not result.ok and "max |diff| 0.001" in result.detail
    assert "shape (6,)" in bench.compare_outputs(a, a.reshape(-1), 1e-4, 1e-6).detail
    # multi-output results (loss, grad), as in the forward+backward mode
    assert bench.compare_outputs((np.float32(1), a), (1.0, a), 1e-4, 1e-6).ok
    assert "output 1" in bench.compare_outputs((1.0, a), (1.0, off), 1e-4, 1e-6).detail
    assert "1 outputs" in bench.compare_outputs((1.0, a), a, 1e-4, 1e-6).detail
    # integer outputs are compared too (exactly, in practice)
    ints = np.arange(6)
    assert bench.compare_outputs(ints, ints.copy(), 1e-4, 1e-6).ok
    assert "1 vs fastloss 0" in bench.compare_outputs(ints, ints + (ints == 0), 1e-4, 1e-6).detail
    # larger than one comparison chunk
    big = np.linspace(-5, 5, 200_001)
    assert bench.compare_outputs(big, big * (1 + 1e-12), 1e-9, 1e-12).ok
    bad = big.copy()
    bad[-1] = 0.0
    assert "first at (200000,)" in bench.compare_outputs(big, bad, 1e-9, 1e-12).detail


def _square_sum_case() -> bench.Case:
    """A made-up op with a forward+backward mode: loss = sum(x**2), grad = 2x."""
    return bench.Case(
        op="square_sum",
        setup=bench.logits,
        forward={
            "fastloss": lambda fl, x: (x * x).sum(),
            "torch": lambda torch, x: (x * x).sum(),
            "jax": lambda jax, x: (x * x).sum(),
            "numpy": lambda np_, x: (x * x).sum(),
        },
        grad={
            "fastloss": lambda fl, x: ((x * x).sum(), 2 * x),
            "torch": lambda torch, x: (x * x).sum(),
            "jax": lambda jax, x: (x * x).sum(),
            "numpy": lambda np_, x: ((x * x).sum(), 2 * x),
        },
    )


def test_torch_peer_and_grad_mode(monkeypatch, capsys: pytest.CaptureFixture[str]):
    torch = pytest.importorskip("torch")
    case = _square_sum_case()
    monkeypatch.setitem(bench.CASES, case.op, case)
    fl_threads, torch_threads = fl.get_num_threads(), torch.get_num_threads()
    args = [*FAST, "--peers", "torch", "--ops", "softmax,square_sum*", "--threads", "1"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert "torch " in out.split("versions:")[1].splitlines()[0]
    for label in ("softmax", "square_sum", "square_sum+grad"):
        (row,) = _table_rows(out, label)
        assert "torch " in row and row.endswith("ok")
    assert "| threads 1" in out
    # --threads is undone afterwards
    assert (fl.get_num_threads(), torch.get_num_threads()) == (fl_threads, torch_threads)


def test_jax_peer_and_grad_mode(monkeypatch, capsys: pytest.CaptureFixture[str]):
    pytest.importorskip("jax")
    case = _square_sum_case()
    monkeypatch.setitem(bench.CASES, case.op, case)
    args = [*FAST, "--peers", "jax", "--ops", "logsumexp,square_sum+grad", "--dtype", "float64"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    for label in ("logsumexp", "square_sum+grad"):
        (row,) = _table_rows(out, label)
        assert "float64" in row and "jax " in row and row.endswith("ok")


def test_plot(tmp_path, capsys: pytest.CaptureFixture[str]):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    assert bench.main([*FAST, "--peers", "numpy", "--ops", "softmax", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install(
    monkeypatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    assert bench.main([*FAST, "--plot", "x.png"]) == 2
    assert "pip install matplotlib" in capsys.readouterr().err


def test_help_and_bad_arguments(capsys: pytest.CaptureFixture[str]):
    assert bench.main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--quick", "--shapes", "--dtype", "--ops", "--threads", "--csv", "--plot"):
        assert option in out
    assert bench.main(["--shapes", "0x5"]) == 2
    assert bench.main(["--dtype", "float8"]) == 2
    assert bench.main(["--ops", "no_such_op"]) == 2
    assert bench.main(["--peers", "tensorflow"]) == 2
    assert "unknown peers" in capsys.readouterr().err


def test_case_needs_a_fastloss_provider():
    with pytest.raises(ValueError, match="no 'fastloss' provider"):
        bench.Case(op="x", setup=bench.logits, forward={"numpy": lambda np_, x: x})
    with pytest.raises(ValueError, match="unknown providers"):
        bench.Case(op="x", setup=bench.logits, forward={"fastloss": abs, "tensorflow": abs})
    with pytest.raises(ValueError, match="already registered"):
        bench.register(bench.CASES["softmax"])


def test_runs_as_a_module():
    cmd = [sys.executable, "-m", "fastloss.bench", *FAST, "--peers", "numpy", "--ops", "softmax"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert _table_rows(proc.stdout, "softmax")
