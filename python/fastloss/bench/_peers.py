"""How each provider is imported, how inputs reach it, and how its calls are made.

Converting inputs (torch.from_numpy, jax.device_put) and compiling (jax.jit) happen in `prepare`,
outside the timed region; the returned zero-argument callable is what gets timed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

from ._registry import FORWARD, PROVIDERS, Inputs, OpFn

__all__ = ["PEERS", "Peer", "load_providers"]

Runner = Callable[[], Any]


@dataclass(frozen=True)
class Peer:
    name: str
    load: Callable[[], Any]  # imports and returns the module passed to the case's functions
    prepare: Callable[[Any, OpFn, Inputs, str], Runner]  # (module, fn, inputs, mode) -> runner
    version: Callable[[Any], str]


def _load_fastloss() -> Any:
    import fastloss

    return fastloss


def _load_numpy() -> Any:
    import numpy

    return numpy


def _load_scipy() -> Any:
    import scipy
    import scipy.special  # a submodule, which `import scipy` does not load

    return scipy


def _load_torch() -> Any:
    import torch

    return torch


def _load_jax() -> Any:
    import jax

    # Without x64, jax silently computes float64 inputs in float32; the switch leaves float32 alone.
    jax.config.update("jax_enable_x64", True)
    return jax


def _prepare_plain(module: Any, fn: OpFn, inputs: Inputs, mode: str) -> Runner:
    # fastloss, NumPy and SciPy take the NumPy arrays as they are; in the forward+backward mode their
    # functions return (loss, grad) themselves.
    return lambda: fn(module, *inputs)


def _torch_tensor(torch: Any, a: Any) -> Any:
    """The array as a tensor sharing its memory (no copy); bfloat16 through its bits."""
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view("int16")).view(torch.bfloat16)
    return torch.from_numpy(a)


def _prepare_torch(torch: Any, fn: OpFn, inputs: Inputs, mode: str) -> Runner:
    tensors = [_torch_tensor(torch, a) for a in inputs]
    if mode == FORWARD:
        return lambda: fn(torch, *tensors)
    wrt = tensors[0].requires_grad_(True)
    rest = tensors[1:]

    def run() -> Any:
        loss = fn(torch, wrt, *rest)
        # autograd.grad returns the gradient instead of accumulating into wrt.grad across calls
        (grad,) = torch.autograd.grad(loss, wrt)
        return loss.detach(), grad

    return run


def _prepare_jax(jax: Any, fn: OpFn, inputs: Inputs, mode: str) -> Runner:
    args = [jax.device_put(a) for a in inputs]
    f = functools.partial(fn, jax)
    if mode != FORWARD:
        f = jax.value_and_grad(f)  # (loss, gradient w.r.t. the first input), like the others
    compiled = jax.jit(f).lower(*args).compile()  # compile now rather than in the first timed call
    # jax dispatches asynchronously: wait for the result, or only the dispatch would be timed
    return lambda: jax.block_until_ready(compiled(*args))


def _jax_version(jax: Any) -> str:
    try:
        import jaxlib

        return f"{jax.__version__} with jaxlib {jaxlib.__version__}"
    except ImportError:
        return str(jax.__version__)


PEERS: dict[str, Peer] = {
    "fastloss": Peer("fastloss", _load_fastloss, _prepare_plain, lambda m: m.__version__),
    "torch": Peer("torch", _load_torch, _prepare_torch, lambda m: m.__version__),
    "jax": Peer("jax", _load_jax, _prepare_jax, _jax_version),
    "scipy": Peer("scipy", _load_scipy, _prepare_plain, lambda m: m.__version__),
    "numpy": Peer("numpy", _load_numpy, _prepare_plain, lambda m: m.__version__),
}
assert tuple(PEERS) == PROVIDERS


def load_providers(names: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Import the providers in `names`: ({name: module} of those importable, {name: why not})."""
    modules: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for name in names:
        try:
            modules[name] = PEERS[name].load()
        except Exception as err:  # noqa: BLE001  (a broken install may raise anything)
            missing[name] = f"{type(err).__name__}: {err}"
    return modules, missing
