"""Dropout masks on the GPU from Philox-4x32-10, with the generator's state in device memory.

The generator and the mask layout are those of :mod:`tinynet.kernels.philox` (the NumPy
reference): element e of a mask is a function of ``(seed, offset, e)`` only.

The state is a uint64 device array ``[seed, offset]``. Drawing a mask is two launches on the
same stream: the mask kernel reads the state, then a one-thread kernel adds 1 to ``offset``.
The host never reads or writes the state, so the draw can be captured in a CUDA graph: each
replay reads the offset the previous replay left, and draws a new mask.

Parallel decomposition: one thread per group of four elements. Thread g computes one Philox
block for counter ``(g, offset)`` under key ``seed`` (ten rounds of 32x32-bit multiplies and
xors, all in registers) and writes mask elements 4g .. 4g+3: ``1/(1-p)`` where the 32-bit word
is at least ``ceil(p * 2^32)``, else 0. Threads share nothing, so the mask does not depend on
how many threads or blocks run.

Philox words are 32-bit; they are held in uint64 so that the products keep their high halves.
Every constant is a NumPy uint64: numba would turn a uint64 mixed with a plain (int64) integer
into a float64.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from ...backend import get_array_module
from ..philox import PHILOX_M, PHILOX_W, dropout_threshold
from .launch import THREADS, blocks_for, launch

__all__ = ["philox_state", "reseed", "dropout_mask_cuda"]

_M0, _M1 = np.uint64(PHILOX_M[0]), np.uint64(PHILOX_M[1])
_W0, _W1 = np.uint64(PHILOX_W[0]), np.uint64(PHILOX_W[1])
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_ONE = np.uint64(1)


@cuda.jit(device=True)
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox-4x32-10 of counter (c0, c1, c2, c3) under key (k0, k1): four uint64 holding
    32-bit words in, four out."""
    for r in range(10):
        if r > 0:
            k0 = (k0 + _W0) & _LOW32
            k1 = (k1 + _W1) & _LOW32
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = (p1 >> _SHIFT32) ^ c1 ^ k0, p1 & _LOW32, (p0 >> _SHIFT32) ^ c3 ^ k1, p0 & _LOW32
    return c0, c1, c2, c3


@cuda.jit(device=True)
def _write(mask, e, bits, threshold, scale):
    if e < mask.size:
        mask[e] = scale if bits >= threshold else mask.dtype.type(0)


@cuda.jit(cache=True)
def _dropout_mask_kernel(state, threshold, scale, mask):
    seed, offset = state[0], state[1]
    k0, k1 = seed & _LOW32, seed >> _SHIFT32
    o0, o1 = offset & _LOW32, offset >> _SHIFT32
    for g in range(cuda.grid(1), (mask.size + 3) // 4, cuda.gridsize(1)):
        group = np.uint64(g)
        r0, r1, r2, r3 = philox4x32_10(group & _LOW32, group >> _SHIFT32, o0, o1, k0, k1)
        _write(mask, 4 * g, r0, threshold, scale)
        _write(mask, 4 * g + 1, r1, threshold, scale)
        _write(mask, 4 * g + 2, r2, threshold, scale)
        _write(mask, 4 * g + 3, r3, threshold, scale)


@cuda.jit(cache=True)
def _advance_offset_kernel(state):
    if cuda.grid(1) == 0:
        state[1] += _ONE


def philox_state(xp, seed: int):
    """A new generator state ``[seed, 0]`` (uint64) on the array module ``xp``'s device."""
    return xp.array([int(seed) % 2 ** 64, 0], dtype=xp.uint64)


def reseed(state, seed: int) -> None:
    """Restart ``state`` at ``(seed, offset 0)`` in place (the array stays the same, so a
    captured graph that reads it sees the new seed)."""
    state[0] = int(seed) % 2 ** 64
    state[1] = 0


def dropout_mask_cuda(state, shape, p: float, dtype, out=None):
    """A dropout mask of ``shape`` (0 with probability p, else 1/(1-p), in ``dtype``) drawn
    from the generator ``state``, whose offset is then advanced on the device.

    ``out``: an optional contiguous buffer of ``shape`` and ``dtype`` to fill."""
    xp = get_array_module(state)
    dtype = np.dtype(dtype)
    mask = xp.empty(shape, dtype=dtype) if out is None else out
    flat = mask.reshape(-1)
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    if flat.size:
        launch(_dropout_mask_kernel, blocks_for(-(-flat.size // 4)), THREADS, state,
               state, np.uint64(dropout_threshold(p)), dtype.type(scale), flat)
    launch(_advance_offset_kernel, 1, 1, state, state)
    return mask
