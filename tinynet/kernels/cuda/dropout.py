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

Dropout's forward is ONE launch (``dropout_forward``): it draws the mask, keeps it for the
backward and applies it (``y = x * mask``), for dropout (a mask value per element) and dropout2d
(a value per channel, broadcast over its H*W positions) alike.

Parallel decomposition: one thread per group of four mask values (and, for dropout2d, per
position in the channel). Thread g computes one Philox block for counter ``(g, offset)`` under
key ``seed`` (ten rounds of 32x32-bit multiplies and xors, all in registers): mask values
4g .. 4g+3, already scaled: ``1/(1-p)`` where the 32-bit word is at least ``ceil(p * 2^32)``,
else 0. Threads share nothing but the state, so the mask does not depend on how many threads or
blocks run.
"""
from __future__ import annotations

import numpy as np

from ...backend import get_array_module
from ..philox import PHILOX_M, PHILOX_W, dropout_threshold
from .launch import THREADS, CudaModule, blocks_for

__all__ = ["philox_state", "reseed", "dropout_cuda", "philox_words_cuda", "MODULE"]

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

// The four mask values of group g (elements 4g .. 4g+3): scale where the word is kept, else 0.
__device__ __forceinline__ void mask_group(long long g, unsigned long long seed, unsigned long long offset,
                                           unsigned long long threshold, T scale, T values[4]) {
    unsigned int c[4] = {(unsigned int)g, (unsigned int)((unsigned long long)g >> 32),
                         (unsigned int)offset, (unsigned int)(offset >> 32)};
    philox4x32_10(c, (unsigned int)seed, (unsigned int)(seed >> 32));
    for (int k = 0; k < 4; ++k) values[k] = (unsigned long long)c[k] >= threshold ? scale : (T)0;
}

// The next draw's offset: written by the last block to finish, once every block has read it.
__device__ void advance_offset(unsigned long long* state, unsigned long long offset) {
    __syncthreads();   // every thread of this block has read the state
    if (threadIdx.x == 0) {
        __threadfence();
        if (atomicAdd(&state[2], 1ULL) == (unsigned long long)gridDim.x - 1) {
            state[1] = offset + 1;
            state[2] = 0;
        }
    }
}

// Dropout's forward in one launch: draw the mask, keep it for the backward, and apply it. The
// input is (channels, spatial): mask value c (of `channels`) scales the `spatial` elements
// x[c * spatial ...]; spatial = 1 for dropout (a value per element), H*W for dropout2d (a value
// per channel). Thread i handles group g = i / positions of four mask values at position
// s = i %% positions: it computes the group's Philox block (again at every position: ten rounds
// in registers cost less than reading the mask back, which other blocks may not have written
// yet), writes the four mask values at s = 0, and the four scaled elements of position s.
extern "C" __global__ void dropout_forward(unsigned long long* state, unsigned long long threshold, T scale,
                                           const T* x, T* y, T* mask, long long channels, long long spatial) {
    unsigned long long seed = state[0], offset = state[1];
    long long positions = spatial > 0 ? spatial : 1;   // no elements (spatial 0): still write the mask
    GRID_STRIDE_LOOP(i, (channels + 3) / 4 * positions) {
        long long g = i / positions, s = i %% positions;
        T values[4];
        mask_group(g, seed, offset, threshold, scale, values);
        for (int k = 0; k < 4; ++k) {
            long long c = 4 * g + k;
            if (c >= channels) break;
            if (s == 0) mask[c] = values[k];
            if (s < spatial) y[c * spatial + s] = x[c * spatial + s] * values[k];
        }
    }
    advance_offset(state, offset);
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


def dropout_cuda(state, x, p: float, channel_dims: int | None = None):
    """Dropout of ``x`` in one launch, with the mask drawn from the generator ``state`` (whose
    offset the same launch advances on the device). Returns ``(y, mask)``, ``y = x * mask``.

    ``channel_dims``: None for one mask value per element (``mask`` shaped like ``x``); k for one
    per index of the first k dims, broadcast over the rest (dropout2d: k = 2 for (N, C, H, W),
    ``mask`` of shape (N, C, 1, 1)). Mask value e is the e-th value of
    :func:`tinynet.kernels.philox.dropout_mask_reference` at the state's seed and offset."""
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    k = x.ndim if channel_dims is None else channel_dims
    mask_shape = tuple(x.shape[:k]) + (1,) * (x.ndim - k)
    y, mask = xp.empty_like(x), xp.empty(mask_shape, dtype=x.dtype)
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    spatial = int(np.prod(x.shape[k:], dtype=np.int64))
    # One launch even for an empty input: it still advances the offset.
    MODULE.launch("dropout_forward", x.dtype, blocks_for(-(-mask.size // 4) * max(spatial, 1)), THREADS,
                  (state, np.uint64(dropout_threshold(p)), x.dtype.type(scale), x, y, mask, np.int64(mask.size),
                   np.int64(spatial)))
    return y, mask


def philox_words_cuda(counters, keys):
    """Philox-4x32-10 of uint32 ``counters`` (n, 4) under uint32 ``keys`` (n, 2), on the device:
    uint32 (n, 4). (The known-answer tests check the kernel's generator with it.)"""
    xp = get_array_module(counters)
    words = xp.empty(counters.shape, dtype=xp.uint32)
    MODULE.launch("philox_words", np.float32, blocks_for(len(counters)), THREADS,
                  (xp.ascontiguousarray(counters), xp.ascontiguousarray(keys), words, np.int64(len(counters))))
    return words
