"""Max pooling on the GPU: forward with argmax, and backward as a gather.

The definitions are those of :mod:`tinynet.kernels.pool`: ``argmax`` is the flat index
``h*W + w`` of each window's first maximum in its input plane (-1 when the maximum is padding).

Parallel decomposition:

* forward: one thread per output ``(n, c, oh, ow)``. It scans its kh*kw window in row-major
  order exactly as the numba CPU loop does (padding counts as -inf; the first maximum, or the
  first NaN, wins) and writes the maximum and its index.
* backward: the gradient of an input pixel is the sum of ``grad_out`` over the windows whose
  argmax is that pixel. A scatter (one thread per output adding into its argmax) would need
  atomic adds where overlapping windows share a maximum. Instead one thread per input pixel
  ``(n, c, h, w)`` *gathers*: it visits the (at most kh*kw) windows that contain it, found as in
  col2im (window ``(oh, ow)`` holds the pixel at offset ``(i, j)`` when
  ``oh*sh = h + top - i*dh`` and ``ow*sw = w + left - j*dw``), and adds the gradient of those
  whose argmax is its own index. It visits the windows in increasing ``(oh, ow)`` order, the
  order in which the reference's scatter adds them. Each pixel is written once; no atomics.
"""
from __future__ import annotations

import math

from numba import cuda

from ...backend import get_array_module
from ..im2col import _geometry
from .launch import THREADS, blocks_for, launch

__all__ = ["max_pool2d_forward_cuda", "max_pool2d_backward_cuda"]


@cuda.jit(cache=True)
def _max_pool_forward_kernel(x, out, argmax, kh, kw, sh, sw, top, left, dh, dw):
    n_chan, height, width = x.shape[1], x.shape[2], x.shape[3]
    out_h, out_w = out.shape[2], out.shape[3]
    for index in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        ow = index % out_w
        oh = (index // out_w) % out_h
        c = (index // (out_w * out_h)) % n_chan
        n = index // (out_w * out_h * n_chan)
        neg_inf = x.dtype.type(-math.inf)  # in x's dtype, so float32 stays float32
        best = neg_inf
        best_h, best_w = oh * sh - top, ow * sw - left
        for i in range(kh):
            h = oh * sh - top + i * dh
            for j in range(kw):
                w = ow * sw - left + j * dw
                value = x[n, c, h, w] if (0 <= h < height and 0 <= w < width) else neg_inf
                if value > best or (value != value and best == best):  # first max, or first NaN
                    best, best_h, best_w = value, h, w
        out[n, c, oh, ow] = best
        inside = 0 <= best_h < height and 0 <= best_w < width
        argmax[n, c, oh, ow] = best_h * width + best_w if inside else -1


@cuda.jit(cache=True)
def _max_pool_backward_kernel(grad_out, argmax, grad_in, kh, kw, sh, sw, top, left, dh, dw):
    n_chan, height, width = grad_in.shape[1], grad_in.shape[2], grad_in.shape[3]
    out_h, out_w = grad_out.shape[2], grad_out.shape[3]
    for index in range(cuda.grid(1), grad_in.size, cuda.gridsize(1)):
        w = index % width
        h = (index // width) % height
        c = (index // (width * height)) % n_chan
        n = index // (width * height * n_chan)
        me = h * width + w
        total = grad_in.dtype.type(0)
        for i in range(kh - 1, -1, -1):        # decreasing i: increasing oh
            start_h = h + top - i * dh
            if start_h < 0 or start_h % sh != 0 or start_h // sh >= out_h:
                continue
            oh = start_h // sh
            for j in range(kw - 1, -1, -1):
                start_w = w + left - j * dw
                if start_w < 0 or start_w % sw != 0 or start_w // sw >= out_w:
                    continue
                ow = start_w // sw
                if argmax[n, c, oh, ow] == me:
                    total += grad_out[n, c, oh, ow]
        grad_in[n, c, h, w] = total


def max_pool2d_forward_cuda(x, kernel_size, stride, padding, dilation):
    """:func:`tinynet.kernels.pool.max_pool2d_forward` as one kernel launch."""
    xp = get_array_module(x)
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    out_h, out_w, (top, _), (left, _) = _geometry(x.shape, kernel_size, stride, padding, dilation)
    shape = (x.shape[0], x.shape[1], out_h, out_w)
    out = xp.empty(shape, dtype=x.dtype)
    argmax = xp.empty(shape, dtype=xp.int64)
    if out.size:
        launch(_max_pool_forward_kernel, blocks_for(out.size), THREADS, x,
               x, out, argmax, kh, kw, sh, sw, top, left, dh, dw)
    return out, argmax


def max_pool2d_backward_cuda(grad_out, argmax, input_shape, kernel_size, stride, padding, dilation):
    """:func:`tinynet.kernels.pool.max_pool2d_backward` as one gather kernel (it needs the
    window geometry to find the windows that contain each pixel)."""
    xp = get_array_module(grad_out)
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    _, _, (top, _), (left, _) = _geometry(input_shape, kernel_size, stride, padding, dilation)
    grad_in = xp.empty(tuple(input_shape), dtype=grad_out.dtype)
    if grad_in.size:
        launch(_max_pool_backward_kernel, blocks_for(grad_in.size), THREADS, grad_out,
               grad_out, argmax, grad_in, kh, kw, sh, sw, top, left, dh, dw)
    return grad_in
