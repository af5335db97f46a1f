"""The training example reaches its stated accuracy (skipped without scikit-learn)."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

pytest.importorskip("sklearn")


def test_digits_classifier_trains():
    path = pathlib.Path(__file__).parents[1] / "examples" / "train_digits.py"
    spec = importlib.util.spec_from_file_location("train_digits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.train(epochs=10, batch=64, lr=0.05, seed=0) >= 0.95
