"""examples/train_torch_lm.py trains the same model to the same losses with torch's and
fastloss.torch's cross-entropy (tiny settings; skipped without torch)."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

torch = pytest.importorskip("torch")


def test_character_model_trains_alike_with_both_losses():
    path = pathlib.Path(__file__).parents[1] / "examples" / "train_torch_lm.py"
    spec = importlib.util.spec_from_file_location("train_torch_lm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import fastloss.torch as flt

    sizes = {"steps": 8, "batch": 64, "context": 4, "hidden": 16}
    theirs, _ = module.train(torch.nn.functional.cross_entropy, **sizes)
    ours, times = module.train(flt.cross_entropy, **sizes)
    assert len(times) == 8
    # It trains: each step's loss is of a new batch (noisy; the data is README.md's text), so the
    # last four steps' mean is compared with the first four's.
    assert sum(theirs[4:]) < sum(theirs[:4])
    for a, b in zip(theirs, ours):
        assert abs(a - b) <= 1e-5 * abs(a)
