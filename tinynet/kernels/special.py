"""Special functions that NumPy lacks: ``erf`` (the error function, used by the exact GELU).

``erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt``. NumPy has no erf ufunc, so:

* on the CPU, a numba ``@vectorize`` of the standard library's ``math.erf`` (float32 and
  float64 loops), compiled on first use so that ``import tinynet`` stays fast;
* on the GPU, CuPy's own ``cupyx.scipy.special.erf`` (on the simulated device, its stand-in).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..backend import get_array_module

__all__ = ["erf"]

_cpu_erf = None  # the numba ufunc, built by _numba_erf() on first call


def _numba_erf():
    global _cpu_erf
    if _cpu_erf is None:
        from numba import vectorize

        @vectorize(["float32(float32)", "float64(float64)"])
        def erf_ufunc(x):
            return math.erf(x)

        _cpu_erf = erf_ufunc
    return _cpu_erf


def erf(x):
    """The error function of a floating-point array, elementwise, in the array's own dtype.

    Returns an array of ``x``'s shape and dtype on ``x``'s device (float16 is computed in
    float32 and rounded back).
    """
    xp = get_array_module(x)
    if x.dtype.kind != "f":
        raise TypeError(f"erf: expected a floating-point array, got dtype {x.dtype}")
    if xp is np:
        # numba's float32 loop also serves float16; asarray keeps a 0-d input an array, not a scalar.
        return xp.asarray(_numba_erf()(x), dtype=x.dtype)
    # CuPy's own (or the simulated device's stand-in for it): backend.cupyx picks the module.
    return backend.cupyx(xp).scipy.special.erf(x).astype(x.dtype, copy=False)
