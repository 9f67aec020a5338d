"""Transitional: how the remaining ``numba.cuda`` kernels (batch norm, cross-entropy, optimisers) are
launched until they are ported to CUDA C (``launch.py``). How they are launched: grid and block sizes, the stream, and the
arrays handed to numba.

* Geometry. Elementwise kernels run ``THREADS`` threads per block (a multiple of the 32-thread
  warp) and enough blocks to give every element a thread, capped at ``MAX_BLOCKS``: the kernels
  loop with a grid stride, so a capped grid still covers everything. Reduction kernels run one
  block of ``REDUCE_THREADS`` threads (a power of two, for the tree sum) per channel.
* Stream. Kernels are queued on CuPy's *current* stream (``numba.cuda.external_stream`` wraps
  its pointer), so they run in order with the CuPy operations around them, with no waiting.
* Arrays. CuPy arrays reach numba through ``__cuda_array_interface__``. Version 3 of that
  protocol tells the consumer to synchronise the producer's stream, which would make the host
  wait for the GPU at every launch; ``as_cuda_array(..., sync=False)`` skips that, which is safe
  because the kernel is queued on that very stream.
* Under numba's CUDA simulator (the tests) the arrays are NumPy arrays, passed as they are,
  and the stream is 0. The simulator copies each array argument in and back out, so a kernel
  must never receive one array twice when it writes to either: the stand-ins that the
  launchers pass for absent optional arrays are always arrays the kernel only reads.
"""
from __future__ import annotations

import sys

import numpy as np
from numba import cuda

from ..dispatch import is_cupy_array

__all__ = ["THREADS", "REDUCE_THREADS", "MAX_BLOCKS", "blocks_for", "stream_for", "kernel_arg", "launch"]

THREADS = 256          # threads per block of the elementwise kernels
REDUCE_THREADS = 256   # threads per block of the block reductions: a power of two
MAX_BLOCKS = 4096      # enough to fill any current GPU several times over


def blocks_for(count: int, threads: int = THREADS) -> int:
    """Blocks of ``threads`` threads for ``count`` work items: one item per thread, at least one
    block, at most ``MAX_BLOCKS`` (the grid-stride loops cover the rest)."""
    return max(1, min(MAX_BLOCKS, -(-int(count) // threads)))


def stream_for(array):
    """The stream to queue a kernel on: CuPy's current stream for a CuPy array; 0 (the
    default stream) for the NumPy arrays of the simulator."""
    if is_cupy_array(array):
        cupy = sys.modules["cupy"]
        return cuda.external_stream(cupy.cuda.get_current_stream().ptr)
    return 0


def kernel_arg(value):
    """A kernel argument: a CuPy array as a numba device view (without the interface's stream
    synchronisation, see the module docstring); anything else unchanged, except that under the
    simulator a read-only NumPy array (a broadcast view) is marked input-only (``cuda.In``):
    the simulator copies every array in and back out, and cannot copy back into it."""
    if is_cupy_array(value):
        return cuda.as_cuda_array(value, sync=False)
    if isinstance(value, np.ndarray) and value.ndim and not value.flags.writeable:
        return cuda.In(value)
    return value


def launch(kernel, blocks: int, threads: int, like, *args) -> None:
    """Queue ``kernel[blocks, threads]`` on the stream of array ``like`` with ``args``."""
    kernel[blocks, threads, stream_for(like)](*(kernel_arg(a) for a in args))
