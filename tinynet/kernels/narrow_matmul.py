"""Matrix products with a tiny side, on the CPU as compiled loops split over numba's threads.

A convolution with few input channels and few filters (LeNet's first: 6 filters of 1x5x5 over
a batch of 256) makes two products that OpenBLAS handles badly:

* forward, ``W @ cols``: (6, 25) by (25, 147456): few rows times a very wide matrix;
* weight gradient, ``dY @ cols.T``: (6, 147456) by (147456, 25): a very long inner dimension
  and only 6 x 25 results.

Both read a 15 MB operand once and do little arithmetic with each number (6 multiply-adds), so
their speed is that of memory; OpenBLAS ran them at about 20 GFLOPS and did not split them
between its threads (2.27 -> 2.03 ms on two). Here each is a loop over blocks of the long
dimension, the blocks spread over numba's threads (:mod:`tinynet.kernels.threads`):

* :func:`few_rows`: each block of columns of the result, row by row, as K scaled rows of ``b``
  added up (the block stays in the core's cache while the K rows stream through);
* :func:`few_outputs`: each block of the inner dimension gives a partial (M, N) result (dot
  products); the partials are then added up.

The sums run in another order than BLAS's, so results agree with ``numpy.matmul`` to rounding,
not bit for bit.
:func:`tinynet.kernels.gemm.matmul` picks them (:func:`choose`) and NumPy's BLAS for the rest.
"""
from __future__ import annotations

import numba
import numpy as np

from .threads import Loops

__all__ = ["choose", "few_rows", "few_outputs"]

SMALL = 512          # at most this many numbers on the tiny side (M*K, or M*N)
LONG = 1 << 14       # and at least this long on the other
_BLOCK = 2048        # columns (few_rows) or inner elements (few_outputs) per task


def choose(a, b, out):
    """Which kernel takes ``a @ b`` (into ``out``): ``"few_rows"``, ``"few_outputs"`` or None
    (BLAS). 2-D (or a batch of one) float32/float64 NumPy arrays of one dtype, laid out so that
    the long dimension is contiguous, when numba has more than one thread."""
    if type(a) is not np.ndarray or type(b) is not np.ndarray or a.dtype != b.dtype \
            or a.dtype not in (np.float32, np.float64) or a.ndim != b.ndim or a.ndim not in (2, 3):
        return None
    if a.ndim == 3 and (a.shape[0] != 1 or b.shape[0] != 1):
        return None
    (m, k), n = a.shape[-2:], b.shape[-1]
    if b.shape[-2] != k or (out is not None and not (type(out) is np.ndarray and out.dtype == a.dtype
                                                     and out.shape[-2:] == (m, n) and out.flags.c_contiguous)):
        return None
    item = a.dtype.itemsize
    if m * k <= SMALL and n >= LONG and b.strides[-1] == item and a.strides[-1] == item:
        kernel = "few_rows"
    elif m * n <= SMALL and k >= LONG and a.strides[-1] == item and b.strides[-2] == item:
        kernel = "few_outputs"
    else:
        return None
    # Asked last: it costs microseconds, and every CPU product comes through here. On one
    # thread BLAS does as well (the gain is the split).
    return kernel if numba.get_num_threads() >= 2 else None


def _few_rows_driver(parallel: bool):
    loop = numba.prange if parallel else range  # see im2col._im2col_driver

    # contract: multiply-adds may fuse (the order is not BLAS's anyway). 1-d slices and a local
    # accumulator let the inner loop vectorise (2-d indexing of ``out`` did not: 15x slower).
    @numba.njit(parallel=parallel, cache=True, fastmath={"contract"})
    def few_rows_loops(a, b, out, block):
        rows, inner = a.shape
        columns = b.shape[1]
        for task in loop((columns + block - 1) // block):
            start = task * block
            stop = min(columns, start + block)
            total = np.zeros(stop - start, dtype=out.dtype)
            for i in range(rows):
                total[:] = 0
                for k in range(inner):
                    weight = a[i, k]
                    source = b[k, start:stop]
                    for j in range(total.size):
                        total[j] += weight * source[j]
                out[i, start:stop] = total
    return few_rows_loops


def _few_outputs_driver(parallel: bool):
    loop = numba.prange if parallel else range

    # reassoc: the dot products may be vectorised (the order is not BLAS's anyway)
    @numba.njit(parallel=parallel, cache=True, fastmath={"reassoc", "contract"})
    def few_outputs_loops(a, b_t, partials, block):
        rows, inner = a.shape
        columns = b_t.shape[0]
        for task in loop(partials.shape[0]):
            start = task * block
            stop = min(inner, start + block)
            for i in range(rows):
                left = a[i, start:stop]
                for j in range(columns):
                    right = b_t[j, start:stop]
                    total = partials.dtype.type(0)
                    for k in range(left.size):
                        total += left[k] * right[k]
                    partials[task, i, j] = total
    return few_outputs_loops


_few_rows = Loops(_few_rows_driver)
_few_outputs = Loops(_few_outputs_driver)


def _matrices(a, b, out):
    """The 2-D matrices of ``a``, ``b`` (a batch of one dropped) and a result array (``out`` or new)."""
    shape = a.shape[:-2] + (a.shape[-2], b.shape[-1])
    result = np.empty(shape, dtype=a.dtype) if out is None else out
    return a.reshape(a.shape[-2:]), b.reshape(b.shape[-2:]), result, result.reshape(result.shape[-2:])


def few_rows(a, b, out=None):
    """``a @ b`` for a small ``a`` (M*K numbers) and a wide ``b`` (K, N) with contiguous rows."""
    a2, b2, result, result2 = _matrices(a, b, out)
    _few_rows(b2.size, a2, b2, result2, _BLOCK)
    return result


def few_outputs(a, b, out=None):
    """``a @ b`` for a long inner dimension and a small result (M*N numbers): ``a`` (M, K) with
    contiguous rows, ``b`` (K, N) with contiguous columns (the transpose of a row-major matrix)."""
    a2, b2, result, result2 = _matrices(a, b, out)
    inner = a2.shape[1]
    partials = np.empty(((inner + _BLOCK - 1) // _BLOCK,) + result2.shape, dtype=a.dtype)
    _few_outputs(a2.size + b2.size, a2, b2.T, partials, _BLOCK)
    result2[...] = partials.sum(axis=0)
    return result
