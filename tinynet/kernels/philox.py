"""Philox-4x32-10, a counter-based random number generator, and the dropout mask made from it:
the NumPy reference of ``tinynet/kernels/cuda/dropout.py``.

A counter-based generator is a keyed hash: ``philox(counter, key)`` maps a 128-bit counter and a
64-bit key to 128 random-looking bits (four 32-bit words), with nothing carried from one call to
the next. So element ``e`` of a mask can be computed by any thread, in any order, from
``(seed, offset, e)`` alone; and advancing ``offset`` (a number in device memory) gives fresh
masks without the host, which is what lets a captured CUDA graph draw new masks on every replay.
(Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011.)

One Philox round multiplies two counter words by fixed constants, and mixes the high and low
halves of the 64-bit products with the other words and the key; the key is bumped by two
constants (the golden ratio and sqrt(3) - 1, in 32-bit fixed point) between rounds. Ten rounds
pass the BigCrush statistical tests.

The layout used for a mask of ``size`` elements (seed and offset are 64-bit)::

    group g = e // 4 holds elements 4g .. 4g+3
    counter = (g mod 2^32, g div 2^32, offset mod 2^32, offset div 2^32)
    key     = (seed mod 2^32, seed div 2^32)
    bits(e) = philox(counter, key)[e % 4]
    keep(e) = bits(e) >= threshold,   threshold = ceil(p * 2^32)

so an element is dropped with probability ``threshold / 2^32`` (p, rounded up to a multiple of
2^-32), and different offsets use disjoint counters.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["philox4x32", "dropout_threshold", "dropout_mask_reference", "PHILOX_M", "PHILOX_W"]

PHILOX_M = (0xD2511F53, 0xCD9E8D57)   # round multipliers
PHILOX_W = (0x9E3779B9, 0xBB67AE85)   # key bumps (Weyl sequence)
_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)


def philox4x32(counter, key, rounds: int = 10) -> np.ndarray:
    """Philox-4x32 of uint32 ``counter`` (..., 4) under uint32 ``key`` (..., 2): uint32 (..., 4).

    Words are held in uint64 so that the 32x32-bit products keep their high halves."""
    counter = np.asarray(counter, dtype=np.uint32).astype(np.uint64)
    key = np.asarray(key, dtype=np.uint32).astype(np.uint64)
    c0, c1, c2, c3 = (counter[..., i] for i in range(4))
    k0, k1 = key[..., 0], key[..., 1]
    m0, m1 = np.uint64(PHILOX_M[0]), np.uint64(PHILOX_M[1])
    for r in range(rounds):
        if r:
            k0 = (k0 + np.uint64(PHILOX_W[0])) & _MASK32
            k1 = (k1 + np.uint64(PHILOX_W[1])) & _MASK32
        p0, p1 = m0 * c0, m1 * c2   # < 2^64: exact
        c0, c1, c2, c3 = (p1 >> _SHIFT32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _SHIFT32) ^ c3 ^ k1, p0 & _MASK32
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def dropout_threshold(p: float) -> int:
    """The smallest 32-bit value that is kept: ``ceil(p * 2^32)`` (2^32 for p = 1: none kept)."""
    return min(math.ceil(p * 2.0 ** 32), 2 ** 32)


def dropout_mask_reference(seed: int, offset: int, size: int, p: float, dtype=np.float32) -> np.ndarray:
    """The flat dropout mask (``size`` elements, 0 or ``1/(1-p)``) that the CUDA kernel draws
    for ``(seed, offset)``; see the module docstring for the layout."""
    groups = np.arange(-(-size // 4), dtype=np.uint64)
    counter = np.stack([groups & _MASK32, groups >> _SHIFT32,
                        np.full_like(groups, offset & 0xFFFFFFFF), np.full_like(groups, offset >> 32)], axis=-1)
    key = np.array([seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF], dtype=np.uint64)
    bits = philox4x32(counter, np.broadcast_to(key, (len(groups), 2))).reshape(-1)[:size]
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    return np.where(bits.astype(np.uint64) >= dropout_threshold(p), scale, 0.0).astype(dtype)
