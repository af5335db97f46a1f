"""Comparison benchmark: fastloss vs PyTorch, JAX, SciPy and NumPy.

Run ``python -m fastloss.bench --help`` for the options, ``python -m fastloss.bench --quick`` for a
short run, or call ``main(["--quick"])`` in-process. Peers that are not importable are skipped.

Every timed case is a registry entry (`Case`) holding an op name, a setup function
``(shape, dtype, rng) -> inputs`` (a tuple of NumPy arrays) and, per provider, a function
``fn(module, *inputs)`` where `module` is the provider's top-level module (fastloss, torch, jax,
scipy, numpy) and the inputs have been converted for it (torch tensors, jax arrays) outside the
timed region. fastloss's output is the reference: every peer's output is checked against it.

Adding an operation means adding one entry, e.g. in ``_registry.py`` (or, from other code, calling
``register`` before ``main``). A loss with a forward and a forward+backward ("op+grad") mode::

    register(Case(
        op="cross_entropy",
        setup=logits_and_class_targets,      # (N, C) logits, (N,) int64 targets
        forward={
            "fastloss": lambda fl, x, y: fl.cross_entropy(x, y),
            "torch": lambda torch, x, y: torch.nn.functional.cross_entropy(x, y),
            "jax": lambda jax, x, y: -jax.numpy.take_along_axis(
                jax.nn.log_softmax(x, axis=-1), y[:, None], axis=-1).mean(),
            "numpy": lambda np, x, y: numpy_cross_entropy(x, y),
        },
        # forward+backward: fastloss and numpy return (loss, grad w.r.t. the first input);
        # torch and jax return the loss and the harness differentiates it (autograd.grad,
        # jax.value_and_grad) w.r.t. the first input.
        grad={
            "fastloss": lambda fl, x, y: fl.cross_entropy(x, y, return_grad=True),
            "torch": lambda torch, x, y: torch.nn.functional.cross_entropy(x, y),
            "numpy": lambda np, x, y: numpy_cross_entropy_and_grad(x, y),
        },
        tolerance={"float32": (1e-4, 1e-6)},  # optional: (rtol, atol) per dtype name
    ))

Providers a case leaves out are simply not run for it. ``description="..."`` is shown by --list;
``default=False`` keeps a case out of the run without --ops (it runs when --ops names or matches it,
``--ops '*'`` runs every case). A new peer library goes into ``_peers.PEERS`` (how to import it,
convert inputs, and call it) and ``_registry.PROVIDERS``.
"""

from __future__ import annotations

from ._cli import main
from ._registry import (
    CASES,
    FORWARD,
    GRAD,
    PROVIDERS,
    Case,
    logits,
    logits_and_class_targets,
    numpy_log_softmax,
    numpy_logsumexp,
    numpy_softmax,
    register,
)
from ._report import CSV_COLUMNS
from ._runner import Comparison, compare_outputs

__all__ = [
    "CASES",
    "CSV_COLUMNS",
    "FORWARD",
    "GRAD",
    "PROVIDERS",
    "Case",
    "Comparison",
    "compare_outputs",
    "logits",
    "logits_and_class_targets",
    "main",
    "numpy_log_softmax",
    "numpy_logsumexp",
    "numpy_softmax",
    "register",
]
