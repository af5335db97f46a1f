"""torch and dask stay optional: `import fastloss` imports neither, and `import fastloss.torch`
or `import fastloss.dask` without its framework says how to install it (in fresh interpreters,
whether or not torch and dask are installed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_import_fastloss_imports_no_framework():
    out = _run("""
        import sys
        import fastloss
        loaded = sorted(m for m in ("torch", "jax", "dask") if m in sys.modules)
        print(loaded)
    """)
    assert out == "[]"


def test_fastloss_torch_without_torch_says_how_to_install():
    out = _run("""
        import sys
        sys.modules["torch"] = None  # makes `import torch` fail
        import fastloss
        try:
            import fastloss.torch
        except ImportError as err:
            print(err)
    """)
    assert "pip install torch" in out


def test_fastloss_dask_without_dask_names_the_extra():
    out = _run("""
        import sys
        sys.modules["dask"] = None  # makes `import dask` fail
        sys.modules["dask.array"] = None
        import fastloss
        try:
            import fastloss.dask
        except ImportError as err:
            print(err)
    """)
    assert 'pip install "fastloss[dask]"' in out
