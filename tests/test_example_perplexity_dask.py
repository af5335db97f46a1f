"""The out-of-core perplexity example runs end to end on tiny sizes, and the cross-entropy it
prints is fastloss's on the logits it stored (skipped without dask, distributed or zarr)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("dask.array")
pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

import fastloss as fl  # noqa: E402

EXAMPLE = pathlib.Path(__file__).parents[1] / "examples" / "perplexity_dask.py"


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="process workers under the ASan runtime (LD_PRELOAD)")
def test_perplexity_example(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--rows", "384", "--vocab", "1000", "--chunk-rows",
         "128", "--memory-limit", "300MiB", "--store", str(tmp_path), "--keep"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    value = float(re.search(r"cross-entropy ([0-9.]+) nats", result.stdout).group(1))
    assert "of the read throughput" in result.stdout
    assert re.search(r"peak memory .* of 300MiB", result.stdout)
    store = zarr.open_group(str(tmp_path / "logits.zarr"), mode="r")
    logits, tokens = np.asarray(store["logits"]), np.asarray(store["tokens"])
    assert logits.shape == (384, 1000)
    assert value == pytest.approx(float(fl.cross_entropy(logits, tokens)), abs=1e-4)
