"""Max pooling: the maximum of every window, and where it was (the argmax), then the backward
pass that sends each output's gradient to that one input element.

``argmax`` holds, for every output, the flat index ``h*W + w`` of its maximum inside its own
(unpadded) input plane: the same indices PyTorch's ``max_pool2d(..., return_indices=True)``
returns. Ties go to the first maximum in the window's row-major order, as in PyTorch; padding
counts as ``-inf``, so it never wins against a real value. (When it does win, in a window whose
real values are all -inf or that holds only padding, the index is -1 and no gradient flows.)

The backward sends each output's gradient to its argmax: ``grad_input.flat[argmax] +=
grad_output``. Windows overlap when ``stride < kernel_size``, so one input element may be the
maximum of several windows and must receive the *sum* of their gradients. Written as a
scatter-add that needs atomic adds on a GPU (and CuPy's ``bincount`` waits for the device), so
the reference and the CUDA kernel *gather* instead: each pixel collects the gradients of the
windows that contain it and chose it, which needs the window geometry too.

Arguments are pairs ``(height, width)``; ``padding`` is ``(ph, pw)`` or
``((top, bottom), (left, right))`` as in :mod:`tinynet.kernels.im2col`. Three implementations
behind one signature: ``*_reference`` (array module: what to read, and what runs on anything
else), ``*_numba`` (compiled loops for NumPy arrays, parallel over batch x channels when the
work is large enough: :mod:`tinynet.kernels.threads`), and ``tinynet.kernels.cuda.pool``
(CUDA C kernels for CuPy and simulated CUDA arrays).
:mod:`tinynet.kernels.dispatch` picks.
"""
from __future__ import annotations

import numba
import numpy as np

from ..backend import get_array_module
from .dispatch import uses_cuda, uses_numba
from .im2col import _geometry, col2im, padding_pairs
from .threads import Loops

__all__ = ["max_pool2d_forward", "max_pool2d_backward", "max_pool2d_forward_reference",
           "max_pool2d_backward_reference", "max_pool2d_forward_numba", "max_pool2d_backward_numba"]


# ----------------------------------------------------------------------------------- reference
def max_pool2d_forward_reference(x, kernel_size, stride, padding, dilation):
    """Max over each window of ``x`` (N, C, H, W) and its argmax, on any array module.

    Pad with -inf, view the windows as a 5-d strided array (N, C, OH, OW, kh, kw), flatten each
    window, and take ``max`` and ``argmax`` (NumPy's argmax returns the first maximum). The
    window index ``(i, j)`` of the maximum becomes an index into the input plane:
    ``h = oh*sh - top + i*dh``, ``w = ow*sw - left + j*dw``."""
    xp = get_array_module(x)
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    n, c, height, width = x.shape
    out_h, out_w, pad_h, pad_w = _geometry(x.shape, kernel_size, stride, padding, dilation)
    padded = xp.pad(x, ((0, 0), (0, 0), pad_h, pad_w), constant_values=-np.inf)
    s_n, s_c, s_h, s_w = padded.strides
    windows = xp.lib.stride_tricks.as_strided(
        padded, shape=(n, c, out_h, out_w, kh, kw),
        strides=(s_n, s_c, sh * s_h, sw * s_w, dh * s_h, dw * s_w)).reshape(n, c, out_h, out_w, kh * kw)
    best = windows.argmax(axis=-1)
    out = windows.max(axis=-1)
    rows = xp.arange(out_h).reshape(-1, 1) * sh - pad_h[0] + (best // kw) * dh
    columns = xp.arange(out_w) * sw - pad_w[0] + (best % kw) * dw
    inside = (rows >= 0) & (rows < height) & (columns >= 0) & (columns < width)
    return out, xp.where(inside, rows * width + columns, -1).astype(np.int64)


def max_pool2d_backward_reference(grad_out, argmax, input_shape, kernel_size, stride, padding, dilation):
    """Send ``grad_out`` (N, C, OH, OW) to the argmax positions of an (N, C, H, W) array, on any
    array module, as a col2im.

    Element ``(i, j)`` of window ``(oh, ow)`` is input pixel ``h = oh*sh - top + i*dh``,
    ``w = ow*sw - left + j*dw``. Put the window's gradient on the element that is its argmax and
    0 on the others: that is an im2col-shaped matrix (one row per window element ``(i, j)``, one
    column per window), and col2im adds every entry back onto its pixel, summing the windows
    that share a maximum. Unlike a scatter-add (``bincount``, ``add.at``) this needs neither
    atomic adds nor, on a GPU, a wait for the device; outputs with index -1 send nothing."""
    xp = get_array_module(grad_out)
    n, c, height, width = input_shape
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    out_h, out_w = grad_out.shape[2:]
    (top, _), (left, _) = padding_pairs(padding)
    rows = (xp.arange(out_h) * sh - top).reshape(-1, 1, 1, 1) + (xp.arange(kh) * dh).reshape(1, 1, -1, 1)
    columns = (xp.arange(out_w) * sw - left).reshape(1, -1, 1, 1) + (xp.arange(kw) * dw).reshape(1, 1, 1, -1)
    inside = (rows >= 0) & (rows < height) & (columns >= 0) & (columns < width)
    pixel = xp.where(inside, rows * width + columns, -2)                  # (OH, OW, kh, kw); -2: padding
    hit = argmax[..., None, None] == pixel                                 # (N, C, OH, OW, kh, kw)
    shares = xp.where(hit, grad_out[..., None, None], 0).astype(grad_out.dtype, copy=False)
    cols = shares.transpose(4, 5, 0, 1, 2, 3).reshape(kh * kw, n * c * out_h * out_w)
    planes = (n * c, 1, height, width)  # each channel plane on its own, as avg_pool2d does
    return col2im(cols, planes, kernel_size, stride, padding, dilation).reshape(input_shape)


# --------------------------------------------------------------------------------------- numba
def _max_pool_forward_driver(parallel: bool):
    loop = numba.prange if parallel else range  # see im2col._im2col_driver

    @numba.njit(parallel=parallel, cache=True)
    def max_pool_forward_loops(x, kh, kw, sh, sw, top, left, dh, dw, out_h, out_w):
        n_batch, n_chan, height, width = x.shape
        out = np.empty((n_batch, n_chan, out_h, out_w), dtype=x.dtype)
        argmax = np.empty((n_batch, n_chan, out_h, out_w), dtype=np.int64)
        for nc in loop(n_batch * n_chan):
            n, c = nc // n_chan, nc % n_chan
            for oh in range(out_h):
                for ow in range(out_w):
                    # Scan the whole window, padding as -inf, exactly like the reference's argmax:
                    # the first maximum wins (and the first NaN, which argmax treats as largest).
                    best, best_h, best_w = -np.inf, oh * sh - top, ow * sw - left
                    for i in range(kh):
                        h = oh * sh - top + i * dh
                        for j in range(kw):
                            w = ow * sw - left + j * dw
                            value = x[n, c, h, w] if (0 <= h < height and 0 <= w < width) else -np.inf
                            if _wins(value, best):
                                best, best_h, best_w = value, h, w
                    out[n, c, oh, ow] = best
                    inside = 0 <= best_h < height and 0 <= best_w < width
                    argmax[n, c, oh, ow] = best_h * width + best_w if inside else -1
        return out, argmax
    return max_pool_forward_loops


_max_pool_forward_loops = Loops(_max_pool_forward_driver)


@numba.njit(cache=True, inline="always")
def _wins(value, best):
    """Whether ``value`` replaces ``best`` as a window's maximum: larger, or the first NaN (as
    argmax treats NaN). Written with ``&``/``|``, not ``and``/``or``, so that the loops below
    compile to selects instead of branches: on real data the comparison is a coin toss, and a
    mispredicted branch per element cost more than the rest of the kernel (4.5 ms -> 1.7 ms on
    LeNet's first pooling layer, one thread)."""
    return (value > best) | ((value != value) & (best == best))


@numba.njit(cache=True, inline="always")
def _keep_max(src, index, best, best_index):
    """``(best, best_index)`` after looking at ``src[index]``: the new maximum and its index
    when it wins (:func:`_wins`), else the old ones, as selects."""
    value = src[index]
    wins = _wins(value, best)
    return (value if wins else best), (index if wins else best_index)


@numba.njit(cache=True)
def _plane_max_unpadded(src, out, argmax, width, kh, kw, sh, sw, dh, dw, out_h, out_w):
    """The windows of one plane, flattened to 1-d (``src`` H*W, ``out``/``argmax`` OH*OW), when
    none of them reaches into padding: no bounds checks, the window's first element as the
    starting maximum, flat indices (cheaper than 2-d indexing in numba); same results as the
    loops above."""
    for oh in range(out_h):
        for ow in range(out_w):
            first = oh * sh * width + ow * sw
            best, best_index = src[first], first
            for i in range(kh):
                row = first + i * dh * width
                for j in range(kw):
                    best, best_index = _keep_max(src, row + j * dw, best, best_index)
            out[oh * out_w + ow] = best
            argmax[oh * out_w + ow] = best_index


@numba.njit(cache=True)
def _plane_max_2x2(src, out, argmax, width, out_h, out_w):
    """:func:`_plane_max_unpadded` for the common 2x2 window with stride 2: the four indices
    written out, so the compiler unrolls the window (2x faster than the general loop)."""
    for oh in range(out_h):
        top = 2 * oh * width
        for ow in range(out_w):
            first = top + 2 * ow
            best, best_index = src[first], first
            for index in (first + 1, first + width, first + width + 1):
                best, best_index = _keep_max(src, index, best, best_index)
            out[oh * out_w + ow] = best
            argmax[oh * out_w + ow] = best_index


def _max_pool_forward_unpadded_driver(parallel: bool):
    loop = numba.prange if parallel else range  # see im2col._im2col_driver

    @numba.njit(parallel=parallel, cache=True)
    def max_pool_forward_unpadded_loops(x, kh, kw, sh, sw, dh, dw, out_h, out_w):
        n_batch, n_chan, height, width = x.shape
        planes = n_batch * n_chan
        out = np.empty((n_batch, n_chan, out_h, out_w), dtype=x.dtype)
        argmax = np.empty((n_batch, n_chan, out_h, out_w), dtype=np.int64)
        src = x.reshape(planes, height * width)
        out_flat = out.reshape(planes, out_h * out_w)
        argmax_flat = argmax.reshape(planes, out_h * out_w)
        two_by_two = kh == kw == sh == sw == 2 and dh == dw == 1
        for plane in loop(planes):
            if two_by_two:
                _plane_max_2x2(src[plane], out_flat[plane], argmax_flat[plane], width, out_h, out_w)
            else:
                _plane_max_unpadded(src[plane], out_flat[plane], argmax_flat[plane], width, kh, kw, sh, sw, dh, dw,
                                    out_h, out_w)
        return out, argmax
    return max_pool_forward_unpadded_loops


_max_pool_forward_unpadded_loops = Loops(_max_pool_forward_unpadded_driver)


def _max_pool_backward_driver(parallel: bool):
    loop = numba.prange if parallel else range  # see im2col._im2col_driver

    @numba.njit(parallel=parallel, cache=True)
    def max_pool_backward_loops(grad_out, argmax, height, width):
        n_batch, n_chan, out_h, out_w = grad_out.shape
        planes, outputs = n_batch * n_chan, out_h * out_w
        grad_in = np.empty((planes, height * width), dtype=grad_out.dtype)
        grad_flat = grad_out.reshape(planes, outputs)
        argmax_flat = argmax.reshape(planes, outputs)
        for plane in loop(planes):  # one thread per plane: no two threads add to one element
            grad_in[plane, :] = 0  # zeroed here, on the plane's thread, not by np.zeros on one
            for k in range(outputs):
                index = argmax_flat[plane, k]
                if index >= 0:
                    grad_in[plane, index] += grad_flat[plane, k]
        return grad_in.reshape(n_batch, n_chan, height, width)
    return max_pool_backward_loops


_max_pool_backward_loops = Loops(_max_pool_backward_driver)


def max_pool2d_forward_numba(x, kernel_size, stride, padding, dilation):
    """:func:`max_pool2d_forward_reference` as compiled loops (NumPy float32/float64 only)."""
    out_h, out_w, (top, bottom), (left, right) = _geometry(x.shape, kernel_size, stride, padding, dilation)
    work = x.shape[0] * x.shape[1] * out_h * out_w * kernel_size[0] * kernel_size[1]  # elements compared
    if top == bottom == left == right == 0:  # every window lies inside the image
        return _max_pool_forward_unpadded_loops(work, np.ascontiguousarray(x), *kernel_size, *stride, *dilation,
                                                out_h, out_w)
    return _max_pool_forward_loops(work, np.ascontiguousarray(x), *kernel_size, *stride, top, left, *dilation,
                                   out_h, out_w)


def max_pool2d_backward_numba(grad_out, argmax, input_shape, kernel_size=None, stride=None, padding=None,
                              dilation=None):
    """:func:`max_pool2d_backward_reference` as compiled loops (NumPy float32/float64 only): a
    scatter-add, safe without atomics because each task owns one plane. It needs only
    ``argmax``; the window geometry is accepted for the common signature."""
    return _max_pool_backward_loops(grad_out.size, np.ascontiguousarray(grad_out), np.ascontiguousarray(argmax),
                                    int(input_shape[2]), int(input_shape[3]))


# -------------------------------------------------------------------------------------- public
def max_pool2d_forward(x, kernel_size, stride, padding, dilation):
    """Max pooling of ``x`` (N, C, H, W).

    Args:
        kernel_size, stride, dilation: pairs ``(height, width)`` of ints.
        padding: ``(ph, pw)`` or ``((top, bottom), (left, right))``; padding counts as -inf.

    Returns:
        ``(out, argmax)``, both (N, C, OH, OW); ``argmax`` (int64) is the flat index ``h*W + w``
        of each maximum in its input plane, the first one on ties.
    """
    if uses_cuda(x):
        from .cuda.pool import max_pool2d_forward_cuda
        return max_pool2d_forward_cuda(x, kernel_size, stride, padding, dilation)
    if uses_numba(x):
        return max_pool2d_forward_numba(x, kernel_size, stride, padding, dilation)
    return max_pool2d_forward_reference(x, kernel_size, stride, padding, dilation)


def max_pool2d_backward(grad_out, argmax, input_shape, kernel_size, stride, padding, dilation):
    """Gradient of max pooling: an array of ``input_shape`` (N, C, H, W), zero except at the
    argmax positions, which receive the sum of the gradients of the windows they won.

    The window geometry is that given to :func:`max_pool2d_forward`: the reference and the CUDA
    kernel use it to find, for each pixel, the windows that contain it."""
    input_shape = tuple(int(s) for s in input_shape)
    geometry = (kernel_size, stride, padding, dilation)
    if uses_cuda(grad_out):
        from .cuda.pool import max_pool2d_backward_cuda
        return max_pool2d_backward_cuda(grad_out, argmax, input_shape, *geometry)
    if uses_numba(grad_out):
        return max_pool2d_backward_numba(grad_out, argmax, input_shape)
    return max_pool2d_backward_reference(grad_out, argmax, input_shape, *geometry)
