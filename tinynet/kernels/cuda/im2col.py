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

Flat indices are 64-bit (``long long``): ``cols`` passes 2^31 entries at VGG sizes.
"""
from __future__ import annotations

import functools

import numpy as np

from ...backend import get_array_module
from ..im2col import _geometry
from .launch import THREADS, CudaModule, blocks_for

__all__ = ["im2col_cuda", "col2im_cuda", "MODULE"]

SOURCE = r"""
extern "C" __global__ void im2col(const T* x, T* cols, long long total, long long n_cols, int channels,
                                  int height, int width, int kh, int kw, int sh, int sw, int top, int left,
                                  int dh, int dw, int out_h, int out_w) {
    GRID_STRIDE_LOOP(index, total) {
        long long row = index / n_cols, col = index % n_cols;
        int c = (int)(row / (kh * kw)), i = (int)(row / kw % kh), j = (int)(row % kw);
        long long n = col / ((long long)out_h * out_w);
        int oh = (int)(col / out_w % out_h), ow = (int)(col % out_w);
        int h = oh * sh - top + i * dh, w = ow * sw - left + j * dw;
        bool inside = 0 <= h && h < height && 0 <= w && w < width;
        cols[index] = inside ? x[((n * channels + c) * height + h) * width + w] : (T)0;
    }
}

extern "C" __global__ void col2im(const T* cols, T* x, long long total, long long n_cols, int channels,
                                  int height, int width, int kh, int kw, int sh, int sw, int top, int left,
                                  int dh, int dw, int out_h, int out_w) {
    GRID_STRIDE_LOOP(index, total) {
        int w = (int)(index % width), h = (int)(index / width % height);
        int c = (int)(index / ((long long)width * height) % channels);
        long long n = index / ((long long)width * height * channels);
        T sum = 0;
        for (int i = 0; i < kh; ++i) {
            int start_h = h + top - i * dh;   // = oh*sh if window oh reads (h, w) at row offset i
            if (start_h < 0 || start_h % sh != 0 || start_h / sh >= out_h) continue;
            int oh = start_h / sh;
            for (int j = 0; j < kw; ++j) {
                int start_w = w + left - j * dw;
                if (start_w < 0 || start_w % sw != 0 || start_w / sw >= out_w) continue;
                int ow = start_w / sw;
                sum += cols[((long long)(c * kh + i) * kw + j) * n_cols + (n * out_h + oh) * out_w + ow];
            }
        }
        x[index] = sum;
    }
}
"""

MODULE = CudaModule("im2col", SOURCE)


@functools.lru_cache(maxsize=256)
def _window_args(channels, height, width, kernel_size, stride, top, left, dilation, out_h, out_w):
    """The kernels' shared int parameters, as the exact C widths (np.int32). Cached: a model has
    a few layer shapes, and making 13 NumPy scalars costs more host time than the launch."""
    values = (channels, height, width, *kernel_size, *stride, top, left, *dilation, out_h, out_w)
    return tuple(np.int32(v) for v in values)


def im2col_cuda(x, kernel_size, stride, padding, dilation, out=None):
    """:func:`tinynet.kernels.im2col.im2col` as one kernel launch. ``out``: an optional
    (C*kh*kw, N*OH*OW) contiguous buffer of x's dtype to fill (else one is allocated)."""
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    (kh, kw) = kernel_size
    n, c, height, width = x.shape
    out_h, out_w, (top, _), (left, _) = _geometry(x.shape, kernel_size, stride, padding, dilation)
    cols = xp.empty((c * kh * kw, n * out_h * out_w), dtype=x.dtype) if out is None else out
    if cols.size:
        window = _window_args(c, height, width, tuple(kernel_size), tuple(stride), top, left, tuple(dilation),
                              out_h, out_w)
        MODULE.launch("im2col", x.dtype, blocks_for(cols.size), THREADS,
                      (x, cols, np.int64(cols.size), np.int64(cols.shape[1]), *window))
    return cols


def col2im_cuda(cols, input_shape, kernel_size, stride, padding, dilation, out=None):
    """:func:`tinynet.kernels.im2col.col2im` as one gather kernel. ``out``: an optional
    contiguous buffer of ``input_shape`` and cols' dtype to fill (else one is allocated)."""
    xp = get_array_module(cols)
    cols = xp.ascontiguousarray(cols)
    n, c, height, width = input_shape
    out_h, out_w, (top, _), (left, _) = _geometry(input_shape, kernel_size, stride, padding, dilation)
    x = xp.empty(tuple(input_shape), dtype=cols.dtype) if out is None else out
    if x.size:
        window = _window_args(c, height, width, tuple(kernel_size), tuple(stride), top, left, tuple(dilation),
                              out_h, out_w)
        MODULE.launch("col2im", cols.dtype, blocks_for(x.size), THREADS,
                      (cols, x, np.int64(x.size), np.int64(cols.shape[1]), *window))
    return x
