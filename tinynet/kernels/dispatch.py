"""Which implementation of a kernel runs for a given array.

Every kernel in ``tinynet/kernels`` has a readable reference written against the array module
``xp``, and faster versions behind the same signature. The public kernel functions (and the few
ops and optimisers that launch kernels themselves) ask this module which one to run:

* :func:`uses_cuda`: a CuPy float32/float64 array, and ``numba.cuda`` works -> the
  ``numba.cuda`` kernels of ``tinynet/kernels/cuda/``;
* :func:`uses_numba`: exactly a ``numpy.ndarray`` of float32/float64 -> the numba CPU kernels;
* anything else (other dtypes, CuPy without a working ``numba.cuda``, array types that only
  behave like NumPy, or inside :func:`reference_kernels`) -> the reference.

Neither CuPy nor ``numba.cuda`` is imported here: a CuPy array can only exist once CuPy has
been imported, so looking in ``sys.modules`` is enough, and ``numba.cuda`` is first imported
when a CuPy array asks for a kernel.
"""
from __future__ import annotations

import contextlib
import sys

import numpy as np

__all__ = ["uses_numba", "uses_cuda", "is_cupy_array", "cuda_kernels_available", "reference_kernels",
           "simulated_cuda_kernels"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_fast_kernels = True      # False inside reference_kernels()
_simulating = False       # True inside simulated_cuda_kernels()
_cuda_works = None        # numba.cuda.is_available(), asked once


def is_cupy_array(array) -> bool:
    """True for a real ``cupy.ndarray`` (not a subclass, not a look-alike)."""
    cupy = sys.modules.get("cupy")
    return cupy is not None and type(array) is cupy.ndarray


def cuda_kernels_available() -> bool:
    """Whether ``numba.cuda`` can launch kernels here (imports it on the first call)."""
    global _cuda_works
    if _cuda_works is None:
        try:
            from numba import cuda
            _cuda_works = bool(cuda.is_available())
        except Exception:  # no CUDA driver, or a numba built without CUDA: use the references
            _cuda_works = False
    return _cuda_works


def uses_numba(array) -> bool:
    """Whether the kernels take the numba CPU path: a ``numpy.ndarray`` (exactly) of float32 or
    float64, outside :func:`reference_kernels` and :func:`simulated_cuda_kernels`."""
    return (_fast_kernels and not _simulating and type(array) is np.ndarray
            and array.dtype in _FLOATS)


def uses_cuda(array) -> bool:
    """Whether the kernels take the ``numba.cuda`` path: a CuPy float32/float64 array when
    ``numba.cuda`` works (or, inside :func:`simulated_cuda_kernels`, a NumPy one)."""
    if not _fast_kernels or getattr(array, "dtype", None) not in _FLOATS:
        return False
    if _simulating:
        return type(array) is np.ndarray
    return is_cupy_array(array) and cuda_kernels_available()


@contextlib.contextmanager
def reference_kernels():
    """Inside this block every kernel runs its array-module reference (for benchmarks, for
    reading the reference in a debugger, and for tests that compare against it)."""
    global _fast_kernels
    previous, _fast_kernels = _fast_kernels, False
    try:
        yield
    finally:
        _fast_kernels = previous


@contextlib.contextmanager
def simulated_cuda_kernels():
    """Inside this block NumPy float arrays take the ``numba.cuda`` path. Only under numba's
    CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` set before ``numba.cuda`` is imported), where the
    kernels run on the CPU on NumPy arrays: the tests use it to run the ops and optimisers
    through the very launchers and kernels that a GPU runs."""
    import numba
    if not numba.config.ENABLE_CUDASIM:
        raise RuntimeError("simulated_cuda_kernels: set NUMBA_ENABLE_CUDASIM=1 before numba.cuda is imported")
    global _simulating
    previous, _simulating = _simulating, True
    try:
        yield
    finally:
        _simulating = previous
