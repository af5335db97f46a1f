"""Which instruction-set variant runs, how many threads, and a summary for bug reports."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

import numpy as np

from . import _core

# Whether set_num_threads was called: fastloss.torch then keeps the caller's count instead of
# following torch.get_num_threads().
_set_by_user = False

__all__ = [
    "available_capabilities",
    "cpu_capability",
    "get_num_threads",
    "set_num_threads",
    "show_config",
]


def cpu_capability() -> str:
    """Name of the active kernel variant: "scalar", "avx2" or "avx512".

    Chosen at import from what the CPU supports; the environment variable
    ``FASTLOSS_CPU_CAPABILITY`` forces one (an unknown or unsupported value fails the import).
    """
    return _core.cpu_capability()


def available_capabilities() -> list[str]:
    """Variants compiled into this build that this CPU can run, slowest first."""
    return list(_core.available_capabilities())


def get_num_threads() -> int:
    """Threads fastloss uses for large inputs.

    Until `set_num_threads` is called, this follows the OpenMP runtime: OMP_NUM_THREADS or the
    core count, and ``threadpoolctl.threadpool_limits(n, user_api="openmp")`` while it is active.

    In a process forked (``os.fork``, ``multiprocessing`` with the "fork" start method) after its
    parent ran a multi-threaded fastloss call, this is 1 whatever was set: the OpenMP runtime's
    threads do not survive fork, and waiting for them would hang. Such a child computes the same
    results, serially. Processes started with "spawn" or "forkserver" are not affected.
    """
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Use `n` threads (n >= 1) for large inputs, from every Python thread; it then takes
    precedence over OMP_NUM_THREADS and threadpoolctl's limits (and, inside fastloss.torch,
    over torch.get_num_threads()). Results do not depend on it.
    In a child forked after a multi-threaded call it has no effect (see `get_num_threads`)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an integer, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    global _set_by_user
    _core.set_num_threads(int(n))
    _set_by_user = True


def _threads_set_by_user() -> bool:
    """Whether `set_num_threads` was called in this process."""
    return _set_by_user


@contextlib.contextmanager
def _use_capability(name: str) -> Iterator[None]:
    """Temporarily make `name` the active variant (for tests and benchmarks)."""
    previous = _core.cpu_capability()
    _core._set_capability(name)
    try:
        yield
    finally:
        _core._set_capability(previous)


def show_config() -> None:
    """Print the version, kernel variants, threads and OpenMP runtime."""
    from . import __version__

    forced = os.environ.get("FASTLOSS_CPU_CAPABILITY")
    lines = [
        f"fastloss {__version__}",
        f"  active variant:      {cpu_capability()}"
        + (f" (forced by FASTLOSS_CPU_CAPABILITY={forced})" if forced else ""),
        f"  available variants:  {', '.join(available_capabilities())}",
        f"  compiled variants:   {', '.join(_core.compiled_capabilities())}",
        f"  threads:             {get_num_threads()}"
        + (" (forked after a parallel call: serial)" if _core.forked_child_runs_serially() else ""),
        f"  OpenMP runtime:      {_core.openmp_runtime()}",
        f"  numpy:               {np.__version__}",
        f"  python:              {sys.version.split()[0]}",
    ]
    print("\n".join(lines))
