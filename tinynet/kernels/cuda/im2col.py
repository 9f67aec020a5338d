"""im2col and col2im on the GPU, one thread per output element.

The definitions are those of :mod:`tinynet.kernels.im2col`::

    cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw]

Parallel decomposition:

* ``im2col``: one thread per entry of ``cols`` (C*kh*kw rows x N*OH*OW columns). The thread
  decodes its row into ``(c, i, j)`` and its column into ``(n, oh, ow)``, computes the input
  pixel ``(h, w)`` that entry copies, and writes it (or 0 in the padding). Neighbouring threads
  write neighbouring columns, so the writes are coalesced.
* ``col2im`` is the transpose: every input pixel receives the *sum* of the entries of ``cols``
  that copied it. Done as a scatter (each entry adds itself to its pixel) it would need atomic
  adds, since overlapping windows send several entries to one pixel. Done as a *gather*, one
  thread per input pixel ``(n, c, h, w)`` finds those entries itself: for each kernel offset
  ``(i, j)`` the window that reads ``(h, w)`` through that offset starts at
  ``oh*sh = h + top - i*dh`` (likewise ``ow``), so it exists when that number is a non-negative
  multiple of the stride below ``OH*sh``. The thread sums at most kh*kw entries and writes its
  pixel once: no atomics, and the same order of additions as the reference.
"""
from __future__ import annotations

from numba import cuda

from ...backend import get_array_module
from ..im2col import _geometry
from .launch import THREADS, blocks_for, launch

__all__ = ["im2col_cuda", "col2im_cuda"]


@cuda.jit(cache=True)
def _im2col_kernel(x, cols, kh, kw, sh, sw, top, left, dh, dw, out_h, out_w):
    height, width = x.shape[2], x.shape[3]
    n_cols = cols.shape[1]
    for index in range(cuda.grid(1), cols.size, cuda.gridsize(1)):
        row, col = index // n_cols, index % n_cols
        c, i, j = row // (kh * kw), (row // kw) % kh, row % kw
        n, oh, ow = col // (out_h * out_w), (col // out_w) % out_h, col % out_w
        h = oh * sh - top + i * dh
        w = ow * sw - left + j * dw
        if 0 <= h < height and 0 <= w < width:
            cols[row, col] = x[n, c, h, w]
        else:
            cols[row, col] = 0


@cuda.jit(cache=True)
def _col2im_kernel(cols, x, kh, kw, sh, sw, top, left, dh, dw, out_h, out_w):
    n_chan, height, width = x.shape[1], x.shape[2], x.shape[3]
    for index in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        w = index % width
        h = (index // width) % height
        c = (index // (width * height)) % n_chan
        n = index // (width * height * n_chan)
        total = x.dtype.type(0)
        for i in range(kh):
            start_h = h + top - i * dh          # = oh*sh if window oh reads (h, w) at row offset i
            if start_h < 0 or start_h % sh != 0 or start_h // sh >= out_h:
                continue
            oh = start_h // sh
            for j in range(kw):
                start_w = w + left - j * dw
                if start_w < 0 or start_w % sw != 0 or start_w // sw >= out_w:
                    continue
                ow = start_w // sw
                total += cols[(c * kh + i) * kw + j, (n * out_h + oh) * out_w + ow]
        x[n, c, h, w] = total


def im2col_cuda(x, kernel_size, stride, padding, dilation, out=None):
    """:func:`tinynet.kernels.im2col.im2col` as one kernel launch. ``out``: an optional
    (C*kh*kw, N*OH*OW) buffer of x's dtype to fill (else one is allocated)."""
    xp = get_array_module(x)
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    n, c = x.shape[:2]
    out_h, out_w, (top, _), (left, _) = _geometry(x.shape, kernel_size, stride, padding, dilation)
    cols = xp.empty((c * kh * kw, n * out_h * out_w), dtype=x.dtype) if out is None else out
    if cols.size:
        launch(_im2col_kernel, blocks_for(cols.size), THREADS, x,
               x, cols, kh, kw, sh, sw, top, left, dh, dw, out_h, out_w)
    return cols


def col2im_cuda(cols, input_shape, kernel_size, stride, padding, dilation, out=None):
    """:func:`tinynet.kernels.im2col.col2im` as one gather kernel. ``out``: an optional buffer
    of ``input_shape`` and cols' dtype to fill (else one is allocated)."""
    xp = get_array_module(cols)
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    out_h, out_w, (top, _), (left, _) = _geometry(input_shape, kernel_size, stride, padding, dilation)
    x = xp.empty(tuple(input_shape), dtype=cols.dtype) if out is None else out
    if x.size:
        launch(_col2im_kernel, blocks_for(x.size), THREADS, cols,
               cols, x, kh, kw, sh, sw, top, left, dh, dw, out_h, out_w)
    return x
