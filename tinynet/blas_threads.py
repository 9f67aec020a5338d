"""OpenBLAS's idle threads, told to sleep soon after each matrix product.

Why: NumPy's OpenBLAS keeps its worker threads spinning on their cores for a while after every
product (2**28 cycles, a good part of a second, by default), waiting for the next one. tinynet
runs its numba kernels (:mod:`tinynet.kernels.threads`) between products, on the same cores,
and with two cores a spinning OpenBLAS thread holds one of them: the kernel's second half waits
for it. ``OPENBLAS_THREAD_TIMEOUT=4`` (2**4 cycles, the smallest value OpenBLAS accepts) puts
them to sleep almost at once; the next product wakes them, which costs microseconds. Measured
on the 2-core development machine at the default thread count (median ms per training step, the
same steps timed alone, docs/benchmarks.md "CPU thread settings"): LeNet 22.3 -> 20.6 ms,
pytorch_example 7.8 -> 6.5, the MLP 35.3 -> 31.8; beside PyTorch (imported first, so NumPy was
loaded before tinynet) LeNet took 25-28 ms without the setting and 17.7-18.5 with it.

OpenBLAS reads the variable when it is loaded. When tinynet is imported before NumPy, setting
it is all there is to do. When NumPy came first (``import numpy`` or ``import torch`` above
``import tinynet``), tinynet asks NumPy's OpenBLAS to read its settings again
(``openblas_read_env``) and stops its worker threads (``blas_thread_shutdown_``), which the
next product starts again with the new timeout; both are exported by the OpenBLAS builds NumPy
ships, and where either is missing nothing is changed. It concerns only the OpenBLAS that NumPy
(and SciPy, when it shares it) uses: PyTorch's BLAS and thread pool are its own. A value set by
the user wins, and ``TINYNET_BLAS_TUNING=0`` keeps OpenBLAS's default.
"""
from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["quiet_idle_blas_threads"]

THREAD_TIMEOUT = "4"


def quiet_idle_blas_threads() -> bool:
    """Apply ``OPENBLAS_THREAD_TIMEOUT`` (see above) unless the user set it or
    ``TINYNET_BLAS_TUNING=0``; True if it is in effect for NumPy's OpenBLAS."""
    if os.environ.get("TINYNET_BLAS_TUNING", "1") == "0" or "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return False
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = THREAD_TIMEOUT
    if "numpy" not in sys.modules:
        return True  # OpenBLAS reads it when NumPy loads it
    return _reload_loaded_openblas()


def _reload_loaded_openblas() -> bool:
    """Make every OpenBLAS already loaded read its environment again and restart its threads;
    True if at least one did."""
    reloaded = False
    for library in _loaded_openblas():
        try:
            read_env, stop_threads = library.openblas_read_env, library.blas_thread_shutdown_
        except AttributeError:  # a build that does not export them
            continue
        read_env()
        stop_threads()  # the next product starts them again, with the timeout just read
        reloaded = True
    return reloaded


def _loaded_openblas() -> list:
    """The OpenBLAS libraries mapped into this process (NumPy's), by ctypes; none where they
    cannot be found (only Linux's /proc/self/maps is read)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if "openblas" in line.lower()}
    except OSError:
        return []
    found = []
    for path in sorted(p for p in paths if p.startswith("/") and ".so" in p):
        try:
            found.append(ctypes.CDLL(path))
        except OSError:
            continue
    return found
