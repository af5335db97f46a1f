"""torch stays optional: `import fastloss` never imports it, and `import fastloss.torch` without
it says how to install it (both in fresh interpreters, whether or not torch is installed)."""

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
