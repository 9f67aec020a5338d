"""Which implementation of a kernel runs for a given array.

Every kernel in ``tinynet/kernels`` has a readable reference written against the array module
``xp``, and faster versions behind the same signature. The public kernel functions (and the few
ops and optimisers that launch kernels themselves) ask this module which one to run:

* :func:`uses_cuda`: a CuPy float32/float64 array -> the CUDA C kernels of
  ``tinynet/kernels/cuda/``, launched through CuPy; a simulated CUDA array (``tinynet.sim``) of
  float32/float64 -> the same CUDA C kernels, run by the CPU emulator
  (``tinynet/kernels/cuda/emulate.py``) when a C++ compiler is there to build it;
* :func:`uses_numba`: exactly a ``numpy.ndarray`` of float32/float64 -> the numba CPU kernels;
* anything else (other dtypes, array types that only behave like NumPy, simulated arrays without
  the emulator, or inside :func:`reference_kernels`) -> the reference.

Nothing here imports CuPy, the simulator or ``numba.cuda`` (which tinynet never uses): a CuPy or
simulated array can only exist once its module has been imported, so looking in
``sys.modules`` is enough.
"""
from __future__ import annotations

import contextlib
import sys

import numpy as np

__all__ = ["uses_numba", "uses_cuda", "is_cupy_array", "is_sim_array", "emulator_available", "reference_kernels"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_fast_kernels = True      # False inside reference_kernels()
_emulator = None          # whether the CUDA emulator works here, asked once


def is_cupy_array(array) -> bool:
    """True for a real ``cupy.ndarray`` (not a subclass, not a look-alike)."""
    cupy = sys.modules.get("cupy")
    return cupy is not None and type(array) is cupy.ndarray


def is_sim_array(array) -> bool:
    """True for an array of the simulated CUDA device (``tinynet.sim.SimArray``)."""
    sim = sys.modules.get("tinynet.sim")
    return sim is not None and type(array) is sim.SimArray


def emulator_available() -> bool:
    """Whether the CPU emulator of the CUDA kernels works here (a C++ compiler builds it); asked
    once, on the first simulated array that wants a kernel."""
    global _emulator
    if _emulator is None:
        from .cuda import emulate
        _emulator = emulate.available()
    return _emulator


def uses_numba(array) -> bool:
    """Whether the kernels take the numba CPU path: a ``numpy.ndarray`` (exactly) of float32 or
    float64, outside :func:`reference_kernels`."""
    return _fast_kernels and type(array) is np.ndarray and array.dtype in _FLOATS


def uses_cuda(array) -> bool:
    """Whether the kernels take the CUDA C path: a CuPy float32/float64 array, or a simulated
    one when the emulator works here."""
    if not _fast_kernels or getattr(array, "dtype", None) not in _FLOATS:
        return False
    if is_cupy_array(array):
        return True
    return is_sim_array(array) and emulator_available()


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
