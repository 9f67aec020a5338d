"""im2col and col2im: turn a convolution into one matrix product, and back.

A 2-d convolution slides a ``(C, kh, kw)`` window over the (padded) input and takes, at every
output position, the dot product of the window with each filter. ``im2col`` copies every
window into one column of a matrix::

    cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw]

    rows    C*kh*kw    ordered (c, i, j): the same order as weight.reshape(C_out, -1)
    columns N*OH*OW    ordered (n, oh, ow)

so the whole convolution is ``weight.reshape(C_out, -1) @ cols``: ONE matrix product for the
whole batch (per group, see ``functional/conv.py``).

``col2im`` is the transpose (adjoint) of ``im2col``: it sends every entry of ``cols`` back to the
input pixel it was copied from and *adds* the entries that land on the same pixel (windows
overlap), then drops the padding. That is exactly the backward pass of ``im2col``:
``<im2col(x), c> == <x, col2im(c)>`` for all ``x`` and ``c``.

Arguments are pairs ``(height, width)``; ``padding`` is ``(ph, pw)`` (the same on both sides) or
``((top, bottom), (left, right))`` (``padding='same'`` with an even kernel and ``ceil_mode``
pooling need more padding at the bottom/right).

Three implementations behind one signature: ``im2col_reference`` / ``col2im_reference``
(strided views on the array module: what to read, and what runs on anything else),
``im2col_numba`` / ``col2im_numba`` (compiled loops for NumPy arrays, parallel over the rows
of ``cols`` / over channels when the work is large enough: :mod:`tinynet.kernels.threads`), and
``tinynet.kernels.cuda.im2col`` (CUDA C kernels, used for CuPy and simulated CUDA arrays; col2im
there is a gather). :mod:`tinynet.kernels.dispatch` picks.
"""
from __future__ import annotations

import numba
import numpy as np

from ..backend import get_array_module
from .dispatch import reference_kernels, uses_cuda, uses_numba  # (re-exported)
from .threads import Loops

__all__ = ["im2col", "col2im", "im2col_reference", "col2im_reference", "im2col_numba", "col2im_numba",
           "padding_pairs", "output_size", "uses_numba", "reference_kernels"]


# ------------------------------------------------------------------------------------ geometry
def padding_pairs(padding):
    """``(ph, pw)`` -> ``((ph, ph), (pw, pw))``; ``((top, bottom), (left, right))`` stays."""
    ph, pw = padding
    return _as_pair(ph), _as_pair(pw)


def _as_pair(p) -> tuple:
    if type(p) is tuple and len(p) == 2 and type(p[0]) is int and type(p[1]) is int:
        return p  # the common case (conv2d and the pools pass pairs of ints), without np.ndim
    return (int(p), int(p)) if np.ndim(p) == 0 else (int(p[0]), int(p[1]))


def output_size(size: int, kernel: int, stride: int, pad_before: int, pad_after: int, dilation: int) -> int:
    """Number of window positions along one axis: ``(size + pads - dilation*(kernel-1) - 1)//stride + 1``.

    ``dilation*(kernel-1) + 1`` is the span of a dilated window (its *effective* size)."""
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def _geometry(input_shape, kernel_size, stride, padding, dilation):
    """Output height and width and the padding pairs, all as Python ints."""
    (top, bottom), (left, right) = padding_pairs(padding)
    height, width = input_shape[-2:]
    out_h = output_size(height, kernel_size[0], stride[0], top, bottom, dilation[0])
    out_w = output_size(width, kernel_size[1], stride[1], left, right, dilation[1])
    return out_h, out_w, (top, bottom), (left, right)


# ----------------------------------------------------------------------------------- reference
def im2col_reference(x, kernel_size, stride, padding, dilation):
    """Unfold ``x`` (N, C, H, W) into ``cols`` (C*kh*kw, N*OH*OW), on any array module.

    Pad, then take a 6-d strided *view* (C, kh, kw, N, OH, OW) of the padded input whose
    strides step by ``dilation`` inside a window and by ``stride`` between windows; reshaping
    that view to 2-d makes the one copy."""
    xp = get_array_module(x)
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    n, c = x.shape[:2]
    out_h, out_w, pad_h, pad_w = _geometry(x.shape, kernel_size, stride, padding, dilation)
    padded = xp.pad(x, ((0, 0), (0, 0), pad_h, pad_w))
    s_n, s_c, s_h, s_w = padded.strides  # in bytes
    windows = xp.lib.stride_tricks.as_strided(
        padded, shape=(c, kh, kw, n, out_h, out_w),
        strides=(s_c, dh * s_h, dw * s_w, s_n, sh * s_h, sw * s_w))
    return windows.reshape(c * kh * kw, n * out_h * out_w)


def col2im_reference(cols, input_shape, kernel_size, stride, padding, dilation):
    """Fold ``cols`` (C*kh*kw, N*OH*OW) back into an (N, C, H, W) array, summing overlaps.

    One step per kernel offset ``(i, j)``: the entries for that offset came from a strided
    slice of the padded input (rows ``i*dh + oh*sh``, columns ``j*dw + ow*sw``), so they are
    added back into that slice. Within one offset no two entries share a pixel, so ``+=`` on
    the slice is exact; different offsets overlap, and their sums accumulate."""
    xp = get_array_module(cols)
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    n, c, h, w = input_shape
    out_h, out_w, (top, bottom), (left, right) = _geometry(input_shape, kernel_size, stride, padding, dilation)
    blocks = cols.reshape(c, kh, kw, n, out_h, out_w)
    padded = xp.zeros((n, c, h + top + bottom, w + left + right), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (out_h - 1) + 1, sh)
            columns = slice(j * dw, j * dw + sw * (out_w - 1) + 1, sw)
            padded[:, :, rows, columns] += blocks[:, i, j].transpose(1, 0, 2, 3)
    return padded[:, :, top:top + h, left:left + w]


# --------------------------------------------------------------------------------------- numba
# Three choices here come from profiling (LeNet/VGG shapes, batch 64):
# * Each parallel task walks whole rows of ``cols`` in order (im2col: one row per task; col2im:
#   the kh*kw rows of one channel per task). Streaming through a row is about twice as fast as
#   the (n, c)-plane order, which touches kh*kw short pieces of rows far apart.
# * im2col works out a row's window geometry once, as a table of where each output position
#   reads in an input plane (:func:`_tap_sources`), not again for every image: the per-image
#   loop is then one pass over the table, without bounds tests where the tap never reaches
#   padding. With padding on small maps that was 2-2.3x faster (lenet_resnet's 4x4, a VGG 7x7),
#   15% on 14x14, and no slower without padding. col2im keeps its loop over each window row
#   (a contiguous, vectorised add): scattering through the table was 1.2-1.4x slower there
#   on 12x12 and 14x14 maps.
# * The body of each task is a plain ``@njit`` function called from the ``prange`` loop: numba
#   compiles the inside of a ``prange`` loop less well (about 2x slower here) than an ordinary
#   function.
@numba.njit(cache=True)
def _tap_sources(kh, kw, height, width, sh, sw, top, left, dh, dw, out_h, out_w):
    """For each kernel tap ``i*kw + j``: per output position ``oh*out_w + ow``, the flat index
    ``h*width + w`` of the input pixel it reads (-1 where that is padding), and whether any
    position of the tap is padding."""
    sources = np.empty((kh * kw, out_h * out_w), dtype=np.int64)
    padded = np.zeros(kh * kw, dtype=np.bool_)
    for i in range(kh):
        for j in range(kw):
            for oh in range(out_h):
                h = oh * sh - top + i * dh
                for ow in range(out_w):
                    w = ow * sw - left + j * dw
                    inside = 0 <= h < height and 0 <= w < width
                    sources[i * kw + j, oh * out_w + ow] = h * width + w if inside else -1
                    padded[i * kw + j] |= not inside
    return sources, padded


@numba.njit(cache=True)
def _fill_row(x, out, c, sources, padded):
    """A row of cols for channel c and one tap, whose ``sources`` and ``padded`` (from
    :func:`_tap_sources`) say where it reads: ``out[(n, q)] = x[n, c].flat[sources[q]]``, 0 in
    the padding."""
    n_batch, n_chan, height, width = x.shape
    flat, positions = x.reshape(-1), sources.shape[0]
    for n in range(n_batch):
        plane = (n * n_chan + c) * height * width   # where image n's channel c starts in x
        piece = out[n * positions:(n + 1) * positions]
        if padded:
            for q in range(positions):
                piece[q] = flat[plane + sources[q]] if sources[q] >= 0 else 0
        else:
            for q in range(positions):
                piece[q] = flat[plane + sources[q]]


def _im2col_driver(parallel: bool):
    # ``loop`` rather than ``numba.prange`` alone (which is ``range`` when parallel=False): the
    # two compiled versions then differ in their closure, which numba's on-disk cache needs
    # to tell them apart (see threads.Loops).
    loop = numba.prange if parallel else range

    @numba.njit(parallel=parallel, cache=True)
    def im2col_loops(x, kh, kw, sh, sw, top, left, dh, dw, out_h, out_w):
        n_batch, n_chan = x.shape[:2]
        cols = np.empty((n_chan * kh * kw, n_batch * out_h * out_w), dtype=x.dtype)
        sources, padded = _tap_sources(kh, kw, x.shape[2], x.shape[3], sh, sw, top, left, dh, dw, out_h, out_w)
        for row in loop(n_chan * kh * kw):  # each task fills its own row of cols
            c, tap = row // (kh * kw), row % (kh * kw)
            _fill_row(x, cols[row], c, sources[tap], padded[tap])
        return cols
    return im2col_loops


_im2col_loops = Loops(_im2col_driver)


@numba.njit(cache=True)
def _add_channel(cols, x, c, kh, kw, sh, sw, top, left, dh, dw, out_h, out_w):
    """Add the kh*kw rows of channel c back into ``x[:, c]`` (padding entries are dropped)."""
    n_batch, _, height, width = x.shape
    for i in range(kh):
        for j in range(kw):
            row = (c * kh + i) * kw + j
            for n in range(n_batch):
                for oh in range(out_h):
                    h = oh * sh - top + i * dh
                    if h < 0 or h >= height:
                        continue  # this row of the window is padding: nothing to send back
                    start = (n * out_h + oh) * out_w
                    for ow in range(out_w):
                        w = ow * sw - left + j * dw
                        if 0 <= w < width:
                            x[n, c, h, w] += cols[row, start + ow]


def _col2im_driver(parallel: bool):
    loop = numba.prange if parallel else range  # see _im2col_driver

    @numba.njit(parallel=parallel, cache=True)
    def col2im_loops(cols, n_batch, n_chan, height, width, kh, kw, sh, sw, top, left, dh, dw, out_h, out_w):
        x = np.empty((n_batch, n_chan, height, width), dtype=cols.dtype)
        for c in loop(n_chan):  # each task owns x[:, c]: no two tasks add to one element
            x[:, c] = 0  # zeroed here, on the channel's thread, not by np.zeros on one
            _add_channel(cols, x, c, kh, kw, sh, sw, top, left, dh, dw, out_h, out_w)
        return x
    return col2im_loops


_col2im_loops = Loops(_col2im_driver)


def im2col_numba(x, kernel_size, stride, padding, dilation):
    """:func:`im2col_reference` as compiled loops (NumPy float32/float64 arrays only)."""
    out_h, out_w, (top, _), (left, _) = _geometry(x.shape, kernel_size, stride, padding, dilation)
    work = x.shape[0] * x.shape[1] * kernel_size[0] * kernel_size[1] * out_h * out_w  # elements of cols
    return _im2col_loops(work, np.ascontiguousarray(x), *kernel_size, *stride, top, left, *dilation, out_h, out_w)


def col2im_numba(cols, input_shape, kernel_size, stride, padding, dilation):
    """:func:`col2im_reference` as compiled loops (NumPy float32/float64 arrays only)."""
    out_h, out_w, (top, _), (left, _) = _geometry(input_shape, kernel_size, stride, padding, dilation)
    return _col2im_loops(cols.size, np.ascontiguousarray(cols), *input_shape, *kernel_size, *stride, top, left,
                         *dilation, out_h, out_w)


# -------------------------------------------------------------------------------------- public
def im2col(x, kernel_size, stride, padding, dilation):
    """Unfold the windows of ``x`` (N, C, H, W) into ``cols`` (C*kh*kw, N*OH*OW).

    Args:
        x: NumPy or CuPy array, NCHW.
        kernel_size, stride, dilation: pairs ``(height, width)`` of ints.
        padding: ``(ph, pw)`` zeros on both sides, or ``((top, bottom), (left, right))``.

    Returns:
        ``cols`` with ``cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw]``.
        Its transpose is :func:`col2im`.
    """
    if uses_cuda(x):
        from .cuda.im2col import im2col_cuda
        return im2col_cuda(x, kernel_size, stride, padding, dilation)
    if uses_numba(x):
        return im2col_numba(x, kernel_size, stride, padding, dilation)
    return im2col_reference(x, kernel_size, stride, padding, dilation)


def col2im(cols, input_shape, kernel_size, stride, padding, dilation):
    """The transpose of :func:`im2col`: scatter-add ``cols`` (C*kh*kw, N*OH*OW) back into an
    array of ``input_shape`` (N, C, H, W). Used for the gradient of a convolution's input."""
    input_shape = tuple(int(s) for s in input_shape)
    if uses_cuda(cols):
        from .cuda.im2col import col2im_cuda
        return col2im_cuda(cols, input_shape, kernel_size, stride, padding, dilation)
    if uses_numba(cols):
        return col2im_numba(cols, input_shape, kernel_size, stride, padding, dilation)
    return col2im_reference(cols, input_shape, kernel_size, stride, padding, dilation)
