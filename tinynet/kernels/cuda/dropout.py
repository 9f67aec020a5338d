"""Dropout masks on the GPU from Philox-4x32-10, with the generator's state in device memory.

The generator and the mask layout are those of :mod:`tinynet.kernels.philox` (the NumPy
reference): element e of a mask is a function of ``(seed, offset, e)`` only.

The state is a uint64 device array ``[seed, offset, blocks_done]``. Drawing a mask is ONE
launch: every thread reads ``seed`` and ``offset``, and the last block to finish adds 1 to
``offset`` for the next draw. "Last" is counted with an atomic add on ``blocks_done``: a block
reports once all its threads have read the state (``__syncthreads``), so when the count reaches
the number of blocks nobody will read the old offset again, and the last block advances it and
resets the count. The host never reads or writes the state, so the draw can be captured in a
CUDA graph: each replay reads the offset the previous replay left, and draws a new mask.

Parallel decomposition: one thread per group of four elements. Thread g computes one Philox
block for counter ``(g, offset)`` under key ``seed`` (ten rounds of 32x32-bit multiplies and
xors, all in registers) and writes mask elements 4g .. 4g+3, already scaled: ``1/(1-p)`` where
the 32-bit word is at least ``ceil(p * 2^32)``, else 0. Threads share nothing but the state, so
the mask does not depend on how many threads or blocks run.
"""
from __future__ import annotations

import numpy as np

from ...backend import get_array_module
from ..philox import PHILOX_M, PHILOX_W, dropout_threshold
from .launch import THREADS, CudaModule, blocks_for

__all__ = ["philox_state", "reseed", "dropout_mask_cuda", "philox_words_cuda", "MODULE"]

SOURCE = r"""
// Philox-4x32-10 of the counter c[0..3] under the key (k0, k1), in place.
__device__ __forceinline__ void philox4x32_10(unsigned int c[4], unsigned int k0, unsigned int k1) {
    for (int round = 0; round < 10; ++round) {
        if (round > 0) { k0 += %(W0)su; k1 += %(W1)su; }   // wraps modulo 2^32, as unsigned does
        unsigned long long p0 = (unsigned long long)%(M0)su * c[0];
        unsigned long long p1 = (unsigned long long)%(M1)su * c[2];
        unsigned int next0 = (unsigned int)(p1 >> 32) ^ c[1] ^ k0;
        unsigned int next2 = (unsigned int)(p0 >> 32) ^ c[3] ^ k1;
        c[0] = next0; c[1] = (unsigned int)p1; c[2] = next2; c[3] = (unsigned int)p0;
    }
}

extern "C" __global__ void dropout_mask(unsigned long long* state, unsigned long long threshold, T scale,
                                        T* mask, long long size) {
    unsigned long long seed = state[0], offset = state[1];
    GRID_STRIDE_LOOP(g, (size + 3) / 4) {
        unsigned int c[4] = {(unsigned int)g, (unsigned int)((unsigned long long)g >> 32),
                             (unsigned int)offset, (unsigned int)(offset >> 32)};
        philox4x32_10(c, (unsigned int)seed, (unsigned int)(seed >> 32));
        for (int k = 0; k < 4; ++k) {
            long long e = 4 * g + k;
            if (e < size) mask[e] = (unsigned long long)c[k] >= threshold ? scale : (T)0;
        }
    }
    // The next draw's offset: written by the last block to finish, once every block has read it.
    __syncthreads();   // every thread of this block has read the state
    if (threadIdx.x == 0) {
        __threadfence();
        if (atomicAdd(&state[2], 1ULL) == (unsigned long long)gridDim.x - 1) {
            state[1] = offset + 1;
            state[2] = 0;
        }
    }
}

// The raw generator, for the known-answer tests: words[4i..4i+3] = philox(counters[4i..], keys[2i..]).
extern "C" __global__ void philox_words(const unsigned int* counters, const unsigned int* keys,
                                        unsigned int* words, long long count) {
    GRID_STRIDE_LOOP(i, count) {
        unsigned int c[4] = {counters[4 * i], counters[4 * i + 1], counters[4 * i + 2], counters[4 * i + 3]};
        philox4x32_10(c, keys[2 * i], keys[2 * i + 1]);
        for (int k = 0; k < 4; ++k) words[4 * i + k] = c[k];
    }
}
""" % dict(M0=PHILOX_M[0], M1=PHILOX_M[1], W0=PHILOX_W[0], W1=PHILOX_W[1])

MODULE = CudaModule("dropout", SOURCE)


def philox_state(xp, seed: int):
    """A new generator state ``[seed, offset 0, blocks_done 0]`` (uint64) on the array module
    ``xp``'s device."""
    return xp.array([int(seed) % 2 ** 64, 0, 0], dtype=xp.uint64)


def reseed(state, seed: int) -> None:
    """Restart ``state`` at ``(seed, offset 0)`` in place (the array stays the same, so a
    captured graph that reads it sees the new seed)."""
    state[0] = int(seed) % 2 ** 64
    state[1] = 0
    state[2] = 0


def dropout_mask_cuda(state, shape, p: float, dtype, out=None):
    """A dropout mask of ``shape`` (0 with probability p, else 1/(1-p), in ``dtype``) drawn
    from the generator ``state``, whose offset the same launch advances on the device.

    ``out``: an optional contiguous buffer of ``shape`` and ``dtype`` to fill."""
    xp = get_array_module(state)
    dtype = np.dtype(dtype)
    mask = xp.empty(shape, dtype=dtype) if out is None else out
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    # One launch even for an empty mask: it still advances the offset.
    MODULE.launch("dropout_mask", dtype, blocks_for(-(-mask.size // 4)), THREADS,
                  (state, np.uint64(dropout_threshold(p)), dtype.type(scale), mask, np.int64(mask.size)))
    return mask


def philox_words_cuda(counters, keys):
    """Philox-4x32-10 of uint32 ``counters`` (n, 4) under uint32 ``keys`` (n, 2), on the device:
    uint32 (n, 4). (The known-answer tests check the kernel's generator with it.)"""
    xp = get_array_module(counters)
    words = xp.empty(counters.shape, dtype=xp.uint32)
    MODULE.launch("philox_words", np.float32, blocks_for(len(counters)), THREADS,
                  (xp.ascontiguousarray(counters), xp.ascontiguousarray(keys), words, np.int64(len(counters))))
    return words
