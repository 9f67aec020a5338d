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

import functools

import numpy as np

from ...backend import get_array_module
from ..im2col import _geometry
from .launch import THREADS, CudaModule, blocks_for

__all__ = ["max_pool2d_forward_cuda", "max_pool2d_backward_cuda", "MODULE"]

SOURCE = r"""
extern "C" __global__ void max_pool_forward(const T* x, T* out, long long* argmax, long long total,
                                            int height, int width, int out_h, int out_w, int kh, int kw,
                                            int sh, int sw, int top, int left, int dh, int dw) {
    GRID_STRIDE_LOOP(index, total) {
        int ow = (int)(index % out_w), oh = (int)(index / out_w % out_h);
        const T* plane = x + index / ((long long)out_w * out_h) * height * width;   // plane n*C + c
        T best = -(T)TN_INFINITY;
        int best_h = oh * sh - top, best_w = ow * sw - left;
        for (int i = 0; i < kh; ++i) {
            int h = oh * sh - top + i * dh;
            for (int j = 0; j < kw; ++j) {
                int w = ow * sw - left + j * dw;
                T value = (0 <= h && h < height && 0 <= w && w < width) ? plane[(long long)h * width + w]
                                                                        : -(T)TN_INFINITY;
                if (value > best || (value != value && best == best)) {   // first max, or first NaN
                    best = value; best_h = h; best_w = w;
                }
            }
        }
        out[index] = best;
        bool inside = 0 <= best_h && best_h < height && 0 <= best_w && best_w < width;
        argmax[index] = inside ? (long long)best_h * width + best_w : -1;
    }
}

extern "C" __global__ void max_pool_backward(const T* grad_out, const long long* argmax, T* grad_in,
                                             long long total, int height, int width, int out_h, int out_w,
                                             int kh, int kw, int sh, int sw, int top, int left, int dh, int dw) {
    GRID_STRIDE_LOOP(index, total) {
        int w = (int)(index % width), h = (int)(index / width % height);
        long long windows = index / ((long long)width * height) * out_h * out_w;   // plane's first window
        long long me = (long long)h * width + w;
        T sum = 0;
        for (int i = kh - 1; i >= 0; --i) {   // decreasing i: increasing oh
            int start_h = h + top - i * dh;
            if (start_h < 0 || start_h % sh != 0 || start_h / sh >= out_h) continue;
            int oh = start_h / sh;
            for (int j = kw - 1; j >= 0; --j) {
                int start_w = w + left - j * dw;
                if (start_w < 0 || start_w % sw != 0 || start_w / sw >= out_w) continue;
                long long o = windows + (long long)oh * out_w + start_w / sw;
                if (argmax[o] == me) sum += grad_out[o];
            }
        }
        grad_in[index] = sum;
    }
}
"""

MODULE = CudaModule("pool", SOURCE)


@functools.lru_cache(maxsize=256)
def _window_args(height, width, out_h, out_w, kernel_size, stride, top, left, dilation):
    """The kernels' int parameters as np.int32, cached (see ``im2col._window_args``)."""
    values = (height, width, out_h, out_w, *kernel_size, *stride, top, left, *dilation)
    return tuple(np.int32(v) for v in values)


def max_pool2d_forward_cuda(x, kernel_size, stride, padding, dilation):
    """:func:`tinynet.kernels.pool.max_pool2d_forward` as one kernel launch."""
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    out_h, out_w, (top, _), (left, _) = _geometry(x.shape, kernel_size, stride, padding, dilation)
    shape = (x.shape[0], x.shape[1], out_h, out_w)
    out = xp.empty(shape, dtype=x.dtype)
    argmax = xp.empty(shape, dtype=xp.int64)
    if out.size:
        MODULE.launch("max_pool_forward", x.dtype, blocks_for(out.size), THREADS,
                      (x, out, argmax, np.int64(out.size),
                       *_window_args(*x.shape[2:], out_h, out_w, tuple(kernel_size), tuple(stride), top, left,
                                     tuple(dilation))))
    return out, argmax


def max_pool2d_backward_cuda(grad_out, argmax, input_shape, kernel_size, stride, padding, dilation):
    """:func:`tinynet.kernels.pool.max_pool2d_backward` as one gather kernel (it needs the
    window geometry to find the windows that contain each pixel)."""
    xp = get_array_module(grad_out)
    grad_out, argmax = xp.ascontiguousarray(grad_out), xp.ascontiguousarray(argmax)
    out_h, out_w = grad_out.shape[2:]
    _, _, (top, _), (left, _) = _geometry(input_shape, kernel_size, stride, padding, dilation)
    grad_in = xp.empty(tuple(input_shape), dtype=grad_out.dtype)
    if grad_in.size:
        MODULE.launch("max_pool_backward", grad_out.dtype, blocks_for(grad_in.size), THREADS,
                      (grad_out, argmax, grad_in, np.int64(grad_in.size),
                       *_window_args(*input_shape[2:], out_h, out_w, tuple(kernel_size), tuple(stride), top, left,
                                     tuple(dilation))))
    return grad_in
