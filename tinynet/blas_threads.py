"""OpenBLAS's idle threads, told to sleep soon after each matrix product.

Why: NumPy's OpenBLAS keeps its worker threads spinning on their cores for a while after every
product (2**28 cycles, a good part of a second, by default), waiting for the next one. tinynet
runs its numba kernels (:mod:`tinynet.kernels.threads`) between products, on the same cores,
and with two cores a spinning OpenBLAS thread holds one of them: the kernel's second half waits
for it. ``OPENBLAS_THREAD_TIMEOUT=4`` (2**4 cycles, the smallest value OpenBLAS accepts) puts
them to sleep almost at once; the next product wakes them, which costs microseconds. Measured
on the 2-core development machine at the default thread count (median ms per training step,
the same steps timed alone, docs/benchmarks.md "CPU thread settings"):
LeNet 22.3 -> 20.6 ms, pytorch_example 7.8 -> 6.5, the MLP 35.3 -> 31.8.

OpenBLAS reads the variable once, when NumPy loads it, so it is set only when tinynet is imported
before NumPy (as the examples do); afterwards it would change nothing and is left alone. It
concerns only the OpenBLAS that NumPy (and SciPy) load: PyTorch's own BLAS and thread pool are
untouched. A value set by the user wins, and ``TINYNET_BLAS_TUNING=0`` keeps OpenBLAS's default.
"""
from __future__ import annotations

import os
import sys

__all__ = ["quiet_idle_blas_threads"]

THREAD_TIMEOUT = "4"


def quiet_idle_blas_threads() -> bool:
    """Set ``OPENBLAS_THREAD_TIMEOUT`` (see above) for this process, if NumPy is not loaded yet
    and neither the variable nor ``TINYNET_BLAS_TUNING=0`` is set; True if it was set."""
    if os.environ.get("TINYNET_BLAS_TUNING", "1") == "0" or "OPENBLAS_THREAD_TIMEOUT" in os.environ \
            or "numpy" in sys.modules:
        return False
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = THREAD_TIMEOUT
    return True
