"""Runtime choice of the instruction-set variant, and the configuration report."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastloss as fl
from fastloss import _core
from fastloss._config import _use_capability


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120
    )


def test_capabilities_listed():
    available = fl.available_capabilities()
    assert available[0] == "scalar"
    assert fl.cpu_capability() == available[-1] or "FASTLOSS_CPU_CAPABILITY" in os.environ
    assert set(available) <= set(_core.compiled_capabilities())


@pytest.mark.parametrize("name", fl.available_capabilities())
def test_environment_variable_forces_a_variant(name):
    r = _run("import fastloss; print(fastloss.cpu_capability())", FASTLOSS_CPU_CAPABILITY=name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == name


def test_unknown_variant_fails_import_clearly():
    r = _run("import fastloss", FASTLOSS_CPU_CAPABILITY="sse9")
    assert r.returncode != 0
    assert "FASTLOSS_CPU_CAPABILITY='sse9' is not a known capability" in r.stderr
    assert "scalar" in r.stderr


def test_use_capability_restores(rng):
    before = fl.cpu_capability()
    x = rng.standard_normal((3, 50))
    results = {}
    for name in fl.available_capabilities():
        with _use_capability(name):
            assert fl.cpu_capability() == name
            results[name] = fl.log_softmax(x)
    assert fl.cpu_capability() == before
    for y in results.values():
        np.testing.assert_allclose(y, results["scalar"], rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="not a known capability"):
        _core._set_capability("mmx")


def test_show_config(capsys):
    fl.show_config()
    out = capsys.readouterr().out
    assert f"fastloss {fl.__version__}" in out
    assert f"active variant:      {fl.cpu_capability()}" in out
    assert "OpenMP runtime" in out and "threads" in out


def test_public_api_is_typed():
    import pathlib

    pkg = pathlib.Path(fl.__file__).parent
    assert (pkg / "py.typed").exists()
    assert (pkg / "_core.pyi").exists()
    assert set(fl.__all__) == set(dir(fl))
