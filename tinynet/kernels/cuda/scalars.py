"""Host numbers that GPU kernels read from device memory: the learning rate, Adam's bias
corrections. Why: a CUDA graph freezes the arguments of the kernels it captured, so a number
passed as a kernel argument would keep its capture-time value on every replay (a scheduler's new
learning rate would be ignored, Adam's step count would stop). A kernel that reads the number
from a small device array instead sees whatever was written there before the launch.

Such a kernel takes both: the numbers as arguments, a pointer to the array, and a flag saying
which to use. :func:`device_scalars` returns ``(array, numbers, from_memory)`` for one launch:

* run eagerly (or replayed as a list), ``values()`` is called now and its numbers go in as
  arguments (``from_memory`` 0): no extra launch;
* while a CUDA graph is captured (:func:`deferred`), ``values`` is not called but kept, and the
  kernel is told to read the array (``from_memory`` 1); the executor calls ``values()`` and
  writes its numbers into the array before every launch of the graph (:func:`write`: one
  one-thread kernel, not a copy from host memory, so it never waits for the GPU).

The array is the same on every call with the same ``key``, so the captured kernel keeps
pointing at it. ``values`` may also advance host state (Adam's step count): it runs once per
real step, eager, replayed or launched as a graph.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ...backend import get_array_module
from .launch import CudaModule

__all__ = ["MAX_SCALARS", "device_scalars", "deferred", "write"]

MAX_SCALARS = 4

_SOURCE = r"""
// out[0..n) = (v0, v1, v2, v3)[0..n): one thread.
extern "C" __global__ void set_scalars(T* out, int n, T v0, T v1, T v2, T v3) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        if (n > 0) out[0] = v0;
        if (n > 1) out[1] = v1;
        if (n > 2) out[2] = v2;
        if (n > 3) out[3] = v3;
    }
}
"""

_module = CudaModule("scalars", _SOURCE)
_arrays: dict = {}      # key -> the device array of that key's numbers
_deferred = None        # while a graph is captured: the list of (values, array) to write before each launch


def write(array, values) -> None:
    """Write the numbers ``values`` (at most :data:`MAX_SCALARS`) into the device ``array``
    with one launch."""
    values = tuple(values)
    if len(values) > MAX_SCALARS or len(values) > array.size:
        raise ValueError(f"device_scalars: at most {min(MAX_SCALARS, array.size)} numbers, got {len(values)}")
    dtype = array.dtype.type
    padded = [dtype(v) for v in values] + [dtype(0)] * (MAX_SCALARS - len(values))
    _module.launch("set_scalars", array.dtype, (1,), (1,), (array, np.int32(len(values)), *padded))


def device_scalars(key, values, like):
    """``(array, numbers, from_memory)`` for a kernel that reads the numbers ``values()``
    returns either as arguments (``numbers``, when ``from_memory`` is 0) or from the device
    ``array`` (of ``like``'s dtype and device; ``from_memory`` 1, while a graph is captured:
    then ``numbers`` are zeros and the executor writes the array before each launch). ``key``
    names the array: the same key gives the same array on every call."""
    key = (key, like.dtype.str, str(like.device))
    array = _arrays.get(key)
    if array is None:
        xp = get_array_module(like)
        array = _arrays[key] = xp.empty(MAX_SCALARS, dtype=like.dtype)  # written before any read
    if _deferred is not None:
        _deferred.append((values, array))
        return array, (0,) * MAX_SCALARS, 1
    return array, tuple(values()) + (0,) * MAX_SCALARS, 0


@contextlib.contextmanager
def deferred():
    """While the block runs (a graph capture), :func:`device_scalars` keeps its ``values``
    instead of writing them: the block yields the list of ``(values, array)`` pairs, for the
    executor to write before each launch."""
    global _deferred
    previous, _deferred = _deferred, []
    try:
        yield _deferred
    finally:
        _deferred = previous
