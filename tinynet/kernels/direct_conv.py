"""A convolution with few filters on the CPU, without im2col: its forward pass and its weight
gradient as vector tiles held in registers (float32, no groups, at most :data:`MAX_FILTERS`
filters, maps of at least :data:`MIN_POSITIONS` outputs: LeNet's second layer, the PyTorch
example's, the 64-filter layers of the VGG-like model and cnn5).

im2col + GEMM (:mod:`tinynet.functional.conv`) writes every window into a cols matrix and
reads it back: for LeNet's second layer at batch 256 that is 9.8 MB each way, and writing it
took as long as a plain copy of that much memory (0.6 ms on two threads), more than the
product itself. Here the products read the windows where they lie in x:

* forward, per image: a tile of 4 output positions x 16 filters, four 16-wide accumulators,
  each tap ``r`` adding ``x[window r of position k] * W[:, r]`` (one vector of the transposed
  weights, one number of x broadcast to 16 lanes) to accumulator k;
* weight gradient, per task of a few images: a tile of 8 taps x 16 filters, each output
  position ``q`` of the task's images adding ``x[window r of q] * dY[:, q]`` to accumulator r;
  each task gives a share, and the shares are added in task order (the same result on any
  number of threads).

numba compiles neither tile to vector code from a loop (its accumulators went to memory, or
stayed scalar), so each tile is written as LLVM IR (:func:`_forward_tile`,
:func:`_weight_grad_tile`): the accumulators are 16-float vectors that LLVM keeps in registers,
and every multiply-add is one fused vector instruction (``llvm.fma.v16f32``; where the CPU has
no 16-wide registers LLVM splits it into narrower ones). The sums run in the taps' order, as
the GEMM's, so results match im2col + GEMM to rounding.

Padding is handled by a zero-padded copy of x (once per call); stride and dilation by the
offsets of the windows (:func:`_window_offsets`). The input gradient stays with GEMM + col2im
(it needs no cols). LeNet's second layer alone (batch 256, float32, 2-core development machine,
2026-12-05), against im2col + GEMM + layout: forward 1.43 -> 0.44 ms on two threads and
2.74 -> 0.97 ms on one; dW (with the im2col it needed) 1.34 -> 0.87 and 2.0 -> 1.27 ms. The
whole layer, forward and backward: 4.04 -> 2.86 ms on two threads. PyTorch's oneDNN took 0.40
ms forward on the same layer (0.34-0.40 in two runs).
"""
from __future__ import annotations

import functools

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from .shallow_conv import _sum_shares  # the per-task shares, added in task order
from .threads import Loops

__all__ = ["MAX_FILTERS", "MIN_POSITIONS", "fits", "direct_conv_forward_numba", "direct_conv_weight_grad_numba"]

LANES = 16          # float32 numbers in one 64-byte vector: filters per tile
POSITIONS = 4       # output positions per forward tile (four accumulators)
TAPS = 8            # taps per weight-gradient tile (eight accumulators)
MAX_FILTERS = 64    # at most four vectors of filters: wider layers keep OpenBLAS's GEMM
MIN_POSITIONS = 32  # output positions per image at least: smaller maps keep im2col + GEMM
IMAGES_PER_TASK = 4  # images per weight-gradient task (each task keeps one share of dW)


def fits(x, weight, groups: int, positions: int) -> bool:
    """Whether a convolution takes this path: float32 NumPy arrays, no groups, few filters and
    ``positions`` (OH*OW) enough. Measured per layer, forward and backward at batch 64, two
    threads: 64 filters on 14x14 maps 9.5 -> 8.7 ms and on 28x28 124 -> 89 ms; 128 filters the
    same either way, 256 slower (32.1 ms against 22.5); on 4x4 maps no faster
    (lenet_resnet's 3x3 layers: 0.39 ms either way), on 8x8 faster (LeNet's second at batch 64:
    1.14 -> 0.95 ms)."""
    return (type(x) is np.ndarray and x.dtype == np.float32 and weight.dtype == np.float32 and groups == 1
            and weight.shape[0] <= MAX_FILTERS and positions >= MIN_POSITIONS)


# --------------------------------------------------------------------------- the two tiles (LLVM IR)
def _vector_type():
    return ir.VectorType(ir.FloatType(), LANES)


def _broadcast(builder, value):
    """A float as a vector of LANES copies."""
    vector, i32 = _vector_type(), ir.IntType(32)
    one = builder.insert_element(ir.Constant(vector, ir.Undefined), value, ir.Constant(i32, 0))
    return builder.shuffle_vector(one, ir.Constant(vector, ir.Undefined), ir.Constant(ir.VectorType(i32, LANES), [0] * LANES))


def _vector_at(builder, pointer, index):
    """The address of LANES floats starting at ``pointer[index]``, as a vector pointer."""
    return builder.bitcast(builder.gep(pointer, [index]), _vector_type().as_pointer())


def _fma(builder):
    vector = _vector_type()
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3), "llvm.fma.v16f32")


@intrinsic
def _forward_tile(typingctx, weights, image, offsets, starts, tile):
    """tile[k, :] = sum over taps r of image[offsets[r] + starts[k]] * weights[r, :], for the
    POSITIONS output positions whose windows start at ``starts[k]`` in the flat padded image;
    ``weights`` (taps, LANES): one block of filters, transposed."""
    def codegen(context, builder, signature, args):
        w, x, off, start, out = (context.make_array(t)(context, builder, a) for t, a in zip(signature.args, args))
        i64, fma = ir.IntType(64), _fma(builder)
        sums = [cgutils.alloca_once_value(builder, ir.Constant(_vector_type(), [0.0] * LANES)) for _ in range(POSITIONS)]
        first = [builder.load(builder.gep(start.data, [ir.Constant(i64, k)])) for k in range(POSITIONS)]
        with cgutils.for_range(builder, builder.extract_value(w.shape, 0)) as loop:
            r = loop.index
            column = builder.load(_vector_at(builder, w.data, builder.mul(r, ir.Constant(i64, LANES))), align=4)
            offset = builder.load(builder.gep(off.data, [r]))
            for k in range(POSITIONS):
                pixel = builder.load(builder.gep(x.data, [builder.add(offset, first[k])]))
                builder.store(builder.call(fma, [column, _broadcast(builder, pixel), builder.load(sums[k])]), sums[k])
        for k in range(POSITIONS):
            builder.store(builder.load(sums[k]), _vector_at(builder, out.data, ir.Constant(i64, k * LANES)), align=4)
        return context.get_dummy_value()
    return types.void(weights, image, offsets, starts, tile), codegen


@intrinsic
def _weight_grad_tile(typingctx, image, offsets, first_tap, starts, grad, tile):
    """tile[j, :] += sum over positions q of image[offsets[first_tap + j] + starts[q]] * grad[q, :],
    for TAPS taps; ``grad`` (positions, LANES): one image's output gradient for one block of
    filters, position-major."""
    def codegen(context, builder, signature, args):
        x, off, _, start, g, out = (context.make_array(t)(context, builder, a) if isinstance(t, types.Array) else None
                                    for t, a in zip(signature.args, args))
        i64, fma = ir.IntType(64), _fma(builder)
        tap_offsets = [builder.load(builder.gep(off.data, [builder.add(args[2], ir.Constant(i64, j))])) for j in range(TAPS)]
        sums = [cgutils.alloca_once_value(builder, builder.load(_vector_at(builder, out.data, ir.Constant(i64, j * LANES)),
                                                                 align=4)) for j in range(TAPS)]
        with cgutils.for_range(builder, builder.extract_value(start.shape, 0)) as loop:
            q = loop.index
            first = builder.load(builder.gep(start.data, [q]))
            grads = builder.load(_vector_at(builder, g.data, builder.mul(q, ir.Constant(i64, LANES))), align=4)
            for j in range(TAPS):
                pixel = builder.load(builder.gep(x.data, [builder.add(tap_offsets[j], first)]))
                builder.store(builder.call(fma, [_broadcast(builder, pixel), grads, builder.load(sums[j])]), sums[j])
        for j in range(TAPS):
            builder.store(builder.load(sums[j]), _vector_at(builder, out.data, ir.Constant(i64, j * LANES)), align=4)
        return context.get_dummy_value()
    return types.void(image, offsets, first_tap, starts, grad, tile), codegen


# ------------------------------------------------------------------------------- the loops
def _forward_driver(parallel: bool):
    loop = numba.prange if parallel else range  # see im2col._im2col_driver

    @numba.njit(parallel=parallel, cache=True)
    def direct_forward_loops(x_padded, weight_blocks, bias, offsets, starts, c_out):
        n_batch = x_padded.shape[0]
        positions = starts.shape[0]
        out = np.empty((n_batch, c_out, positions), dtype=np.float32)
        for n in loop(n_batch):
            image = x_padded[n].reshape(-1)
            tile = np.empty((POSITIONS, LANES), dtype=np.float32)
            tile_starts = np.empty(POSITIONS, dtype=np.int64)
            for block in range(weight_blocks.shape[0]):
                filters = min(LANES, c_out - block * LANES)
                for q0 in range(0, positions, POSITIONS):
                    for k in range(POSITIONS):  # a last, partial tile repeats its last position
                        tile_starts[k] = starts[min(q0 + k, positions - 1)]
                    _forward_tile(weight_blocks[block], image, offsets, tile_starts, tile)
                    for k in range(min(POSITIONS, positions - q0)):
                        for o in range(filters):
                            out[n, block * LANES + o, q0 + k] = tile[k, o] + bias[block * LANES + o]
        return out
    return direct_forward_loops


def _weight_grad_driver(parallel: bool):
    loop = numba.prange if parallel else range

    @numba.njit(parallel=parallel, cache=True)
    def direct_weight_grad_loops(x_padded, grad, offsets, starts, blocks):
        n_batch, c_out, positions = grad.shape
        taps = offsets.shape[0]
        plane = x_padded[0].size  # one padded image, flat
        tasks = (n_batch + IMAGES_PER_TASK - 1) // IMAGES_PER_TASK
        shares = np.zeros((tasks, blocks, taps, LANES), dtype=np.float32)
        flat = x_padded.reshape(-1)
        for task in loop(tasks):
            first, stop = task * IMAGES_PER_TASK, min(n_batch, (task + 1) * IMAGES_PER_TASK)
            # The task's images as one long run of positions (image-major): each tile then sums
            # over all of them at once, loading and storing its accumulators once per task.
            task_starts = np.empty((stop - first) * positions, dtype=np.int64)
            for n in range(first, stop):
                for q in range(positions):
                    task_starts[(n - first) * positions + q] = n * plane + starts[q]
            grad_by_position = np.zeros(((stop - first) * positions, LANES), dtype=np.float32)
            for block in range(blocks):
                # lanes past the last filter keep what they held: their sums are dropped
                for n in range(first, stop):
                    for q in range(positions):
                        for o in range(min(LANES, c_out - block * LANES)):
                            grad_by_position[(n - first) * positions + q, o] = grad[n, block * LANES + o, q]
                for first_tap in range(0, taps, TAPS):
                    _weight_grad_tile(flat, offsets, first_tap, task_starts, grad_by_position,
                                      shares[task, block, first_tap:first_tap + TAPS])
        return shares
    return direct_weight_grad_loops


_forward = Loops(_forward_driver)
_weight_grad = Loops(_weight_grad_driver)


# ------------------------------------------------------------------------------- geometry
def _pad(x, padding):
    """x with its zero padding written out (x itself when there is none)."""
    (top, bottom), (left, right) = padding
    if top == bottom == left == right == 0:
        return np.ascontiguousarray(x)
    n, c, h, w = x.shape
    padded = np.zeros((n, c, h + top + bottom, w + left + right), dtype=x.dtype)
    padded[:, :, top:top + h, left:left + w] = x
    return padded


def _read_only(array):
    array.flags.writeable = False  # cached below and shared by every call: never to be written
    return array


@functools.lru_cache(maxsize=256)  # a few layer shapes per model, asked at every step (~20 us each)
def _window_offsets(channels, padded_hw, kernel_size, dilation, taps_padded: int):
    """Per tap (c, i, j), in weight.reshape(C_out, -1)'s order: where its pixel lies in a flat
    padded image relative to the window's first pixel; padded with zeros (a valid pixel) to
    ``taps_padded`` entries, whose sums are dropped."""
    (height, width), (kh, kw), (dh, dw) = padded_hw, kernel_size, dilation
    c, i, j = np.meshgrid(np.arange(channels), np.arange(kh), np.arange(kw), indexing="ij")
    offsets = np.zeros(taps_padded, dtype=np.int64)
    offsets[:channels * kh * kw] = (c * height * width + i * dh * width + j * dw).reshape(-1)
    return _read_only(offsets)


@functools.lru_cache(maxsize=256)
def _window_starts(out_hw, padded_width: int, stride):
    """Per output position (oh, ow): where its window starts in a flat padded image plane."""
    (out_h, out_w), (sh, sw) = out_hw, stride
    oh, ow = np.meshgrid(np.arange(out_h), np.arange(out_w), indexing="ij")
    return _read_only((oh * sh * padded_width + ow * sw).reshape(-1).astype(np.int64))


def _blocks(c_out: int) -> int:
    return (c_out + LANES - 1) // LANES


# ------------------------------------------------------------------------------- public
def direct_conv_forward_numba(x, weight, bias, out_hw, stride, padding, dilation):
    """conv2d(x, weight) + bias as an NCHW float32 array (``padding`` as ((top, bottom),
    (left, right))), without a cols matrix."""
    c_out, channels, kh, kw = weight.shape
    x_padded = _pad(x, padding)
    taps = channels * kh * kw
    blocks = np.zeros((_blocks(c_out), taps, LANES), dtype=np.float32)  # W transposed, in blocks of filters
    for block in range(blocks.shape[0]):
        part = weight.reshape(c_out, taps)[block * LANES:(block + 1) * LANES]
        blocks[block, :, :part.shape[0]] = part.T
    bias = np.zeros(c_out, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    offsets = _window_offsets(channels, x_padded.shape[2:], (kh, kw), tuple(dilation), taps)
    starts = _window_starts(tuple(out_hw), x_padded.shape[3], tuple(stride))
    out = _forward(x.shape[0] * c_out * starts.size, x_padded, blocks, bias, offsets, starts, c_out)
    return out.reshape((x.shape[0], c_out) + tuple(out_hw))


def direct_conv_weight_grad_numba(grad, x, kernel_size, stride, padding, dilation):
    """dW (C_out, C, kh, kw) of a convolution from its output gradient ``grad`` (N, C_out, OH,
    OW) and input ``x``, float32, without a cols matrix."""
    n, c_out, out_h, out_w = grad.shape
    channels, (kh, kw) = x.shape[1], kernel_size
    x_padded = _pad(x, padding)
    taps = channels * kh * kw
    taps_padded = (taps + TAPS - 1) // TAPS * TAPS
    offsets = _window_offsets(channels, x_padded.shape[2:], tuple(kernel_size), tuple(dilation), taps_padded)
    starts = _window_starts((out_h, out_w), x_padded.shape[3], tuple(stride))
    grad = np.ascontiguousarray(grad).reshape(n, c_out, out_h * out_w)
    shares = _weight_grad(grad.size, x_padded, grad, offsets, starts, _blocks(c_out))
    total = _sum_shares(shares)                                         # (blocks, taps_padded, LANES)
    by_filter = total[:, :taps, :].transpose(0, 2, 1).reshape(-1, taps)[:c_out]
    return np.ascontiguousarray(by_filter).reshape(c_out, channels, kh, kw)
