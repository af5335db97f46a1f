"""fastloss's thread count inside the adapter: torch's (torch.get_num_threads()), unless
fastloss.set_num_threads was called.

Until set_num_threads is called, fastloss follows its OpenMP runtime's setting for the calling
thread (omp_get_max_threads). The adapter sets that runtime's count to torch's around each call
and restores it after, so the NumPy API and threadpoolctl see no change. The runtime is found
through the compiled module's own dependencies (dlsym on its handle), which is the runtime its
kernels use even when torch brought another one.
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable, Optional

import torch

from .. import _config, _core

__all__ = ["call_with_torch_threads"]


def _openmp_functions() -> Optional[tuple[Any, Any]]:
    try:
        library = ctypes.CDLL(_core.__file__)
        setter, getter = library.omp_set_num_threads, library.omp_get_max_threads
    except (OSError, AttributeError):  # no OpenMP runtime to talk to: fastloss's own count
        return None
    setter.argtypes, setter.restype = [ctypes.c_int], None
    getter.argtypes, getter.restype = [], ctypes.c_int
    return setter, getter


_OPENMP = _openmp_functions()


def call_with_torch_threads(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` with torch's thread count, unless the user chose one."""
    if _OPENMP is None or _config._threads_set_by_user():
        return function(*args, **kwargs)
    set_threads, get_threads = _OPENMP
    wanted, previous = torch.get_num_threads(), get_threads()
    if wanted == previous:
        return function(*args, **kwargs)
    set_threads(wanted)
    try:
        return function(*args, **kwargs)
    finally:
        set_threads(previous)
