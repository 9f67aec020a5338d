"""A convolution with few filters on the CPU, without im2col: its forward pass and its weight
gradient as vector tiles held in registers (float32, no groups, at most :data:`MAX_FILTERS`
filters, maps of at least :data:`MIN_POSITIONS` outputs: the second layers of LeNet and of the
PyTorch example, lenet_resnet's residual block), and the input gradient of a stride-1
convolution as the forward pass of another one (lenet_resnet's block).

im2col + GEMM (:mod:`tinynet.functional.conv`) writes every window into a cols matrix and
reads it back: for LeNet's second layer at batch 256 that is 9.8 MB each way, and writing it
took as long as a plain copy of that much memory (0.6 ms on two threads), more than the
product itself. Here the products read the windows where they lie in x:

* forward, per image: a tile of 8 output positions x 16 filters, eight 16-wide accumulators,
  each tap ``r`` adding ``x[window r of position k] * W[:, r]`` (one vector of the transposed
  weights, one number of x broadcast to 16 lanes) to accumulator k;
* weight gradient, per task of a few images: a tile of 8 taps x 16 filters, each output
  position ``q`` of the task's images adding ``x[window r of q] * dY[:, q]`` to accumulator r;
  each task gives a share, and the shares are added in task order (the same result on any
  number of threads).

Layers with more than 16 filters run two blocks of 16 in one tile (16 accumulators), so each
number of x is loaded and broadcast once for 32 filters: the PyTorch example's second layer
(20 filters, batch 64, one thread) 0.62-0.67 -> 0.46-0.54 ms forward and 0.52-0.56 -> 0.40-0.46
ms for dW (four runs each). Eight positions per forward tile, not four, were as fast on
16-filter layers and faster with two blocks.

numba compiles neither tile to vector code from a loop (its accumulators went to memory, or
stayed scalar), so each tile is written as LLVM IR (:func:`_forward_tile_of`,
:func:`_weight_grad_tile_of`): the accumulators are 16-float vectors that LLVM keeps in registers,
and every multiply-add is one fused vector instruction (``llvm.fma.v16f32``; where the CPU has
no 16-wide registers LLVM splits it into narrower ones). The sums run in the taps' order, as
the GEMM's, so results match im2col + GEMM to rounding.

Padding is handled by a zero-padded copy of each task's images, made by the task itself
(:func:`_padded_images`); stride and dilation by the offsets of the windows
(:func:`_window_offsets`). A kernel goes parallel by its multiply-adds, not its outputs (a
small map's outputs are few, but each costs a whole window).

The input gradient of a stride-1 convolution is itself a convolution: of dY, padded by the
kernel's span minus one minus the padding, with the kernels flipped and their in and out
channels swapped (:func:`direct_conv_input_grad_numba`). As the forward tiles it needs neither
the dcols matrix ``W.T @ dY`` nor col2im's scatter, but it makes an output for every pixel
of x from a whole window of dY, zeros of the padding included, and fills whole vectors of 16
of x's channels: where that wastes more than :data:`MAX_WASTE` times the product's
multiply-adds (LeNet's second layer: 6 channels, no padding, 6 times), or the layer has more
than MAX_FILTERS channels in or out, dx stays with GEMM + col2im. Measured on two threads
(and one), batch 64, dx alone: lenet_resnet's 16-channel 3x3 layers on 4x4 maps 0.26 ->
0.085 ms (0.28 -> 0.085); 32 channels on 28x28 15.3 -> 6.0 ms (25.2 -> 10.8); 64 on 14x14
6.2 -> 5.6 (12.2 -> 9.7); 16 channels, 5x5 kernels without padding (waste 2.25) 1.05 -> 0.71;
8 channels on 12x12 (waste 2) 0.44 -> 0.34; but 10 channels, 5x5 without padding (waste 3.6:
the PyTorch example's second layer) 0.66 -> 0.88, and 32 channels from 128 on 14x14 (the
VGG-like model's second layer) 4.6 -> 7.2 ms.

LeNet's second layer alone (batch 256, float32, 2-core development machine,
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

__all__ = ["MAX_FILTERS", "MIN_POSITIONS", "MAX_WASTE", "fits", "fits_input_grad", "direct_conv_forward_numba",
           "direct_conv_weight_grad_numba", "direct_conv_input_grad_numba"]

LANES = 16          # float32 numbers in one 64-byte vector: filters per tile
POSITIONS = 8       # output positions per forward tile (8 or 16 accumulators)
TAPS = 8            # taps per weight-gradient tile (eight accumulators)
MAX_FILTERS = 64    # at most four vectors of filters: wider layers keep OpenBLAS's GEMM
MIN_POSITIONS = 16  # output positions per image at least: smaller maps keep im2col + GEMM
IMAGES_PER_TASK = 4  # images per weight-gradient task (each task keeps one share of dW)
MAX_WASTE = 3       # dx on tiles: at most this many times GEMM + col2im's multiply-adds


def fits(x, weight, groups: int, positions: int) -> bool:
    """Whether a convolution takes this path: float32 NumPy arrays, no groups, few filters and
    ``positions`` (OH*OW) enough. Measured per layer, forward and backward at batch 64, two
    threads: 64 filters on 14x14 maps 9.5 -> 8.7 ms and on 28x28 124 -> 89 ms; 128 filters the
    same either way, 256 slower (32.1 ms against 22.5); on 8x8 faster (LeNet's second at batch
    64: 1.14 -> 0.95 ms). Once each task padded its own images and small maps ran in parallel
    (2026-12-05; dx on the tiles in both columns): 16 filters on 4x4 maps 0.30 -> 0.23 ms
    (lenet_resnet's block; 0.38 -> 0.27 on one thread), 32 on 5x5 1.05 -> 0.78 ms; on 2x2 maps
    the same either way (16, 32 filters), 64 filters on 2x2 slower (0.72 -> 0.79 ms), and 1x1
    maps slower (0.09 -> 0.15 ms: im2col's path cuts the taps that read padding alone)."""
    return (type(x) is np.ndarray and x.dtype == np.float32 and weight.dtype == np.float32 and groups == 1
            and weight.shape[0] <= MAX_FILTERS and positions >= MIN_POSITIONS)


def fits_input_grad(grad, weight, groups: int, stride, padding, dilation, x_hw) -> bool:
    """Whether dx of a convolution is computed here, as the forward pass of another convolution
    (:func:`direct_conv_input_grad_numba`): float32 NumPy arrays, no groups, stride 1, padding
    of at most the kernel's span minus one (as usual), at most MAX_FILTERS channels in and
    out, and at most MAX_WASTE times the multiply-adds of GEMM + col2im (see :func:`_waste`)."""
    c_out, channels, kh, kw = weight.shape
    return (type(grad) is np.ndarray and grad.dtype == np.float32 and weight.dtype == np.float32 and groups == 1
            and tuple(stride) == (1, 1) and max(channels, c_out) <= MAX_FILTERS
            and all(max(pair) <= d * (k - 1) for pair, d, k in zip(padding, dilation, (kh, kw)))
            and _waste(channels, x_hw, grad.shape[2:]) <= MAX_WASTE)


def _waste(channels: int, x_hw, out_hw) -> float:
    """The multiply-adds of dx as a forward convolution on tiles over those of W.T @ dY: the
    tiles fill whole vectors of LANES filters (dx's filters are x's channels), and they make an
    output for every pixel of x, each from a whole window of dY, zero padding included (a
    layer without padding is the worst case: its dx is a "full" convolution)."""
    return _blocks(channels) * LANES / channels * (x_hw[0] * x_hw[1]) / (out_hw[0] * out_hw[1])


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


def _forward_tile_of(vectors: int):
    """The forward tile for ``vectors`` blocks of LANES filters at once (1 or 2), as an intrinsic."""
    @intrinsic
    def forward_tile(typingctx, weights, image, offsets, starts, tile):
        """tile[k, b*LANES:(b+1)*LANES] = sum over taps r of image[offsets[r] + starts[k]] *
        weights[b, r, :], for the POSITIONS output positions whose windows start at
        ``starts[k]`` in the flat padded image; ``weights`` (vectors, taps, LANES), or (taps,
        LANES) for one: blocks of filters, transposed; ``tile`` (POSITIONS, vectors*LANES)."""
        def codegen(context, builder, signature, args):
            w, x, off, start, out = (context.make_array(t)(context, builder, a) for t, a in zip(signature.args, args))
            i64, fma = ir.IntType(64), _fma(builder)
            taps = builder.extract_value(w.shape, signature.args[0].ndim - 2)
            zero = ir.Constant(_vector_type(), [0.0] * LANES)
            sums = [[cgutils.alloca_once_value(builder, zero) for _ in range(vectors)] for _ in range(POSITIONS)]
            first = [builder.load(builder.gep(start.data, [ir.Constant(i64, k)])) for k in range(POSITIONS)]
            with cgutils.for_range(builder, taps) as loop:
                r = loop.index
                columns = []  # weights[b, r, :], at (b * taps + r) * LANES
                for b in range(vectors):
                    index = r if b == 0 else builder.add(builder.mul(ir.Constant(i64, b), taps), r)
                    column = _vector_at(builder, w.data, builder.mul(index, ir.Constant(i64, LANES)))
                    columns.append(builder.load(column, align=4))
                offset = builder.load(builder.gep(off.data, [r]))
                for k in range(POSITIONS):  # one pixel of x, broadcast, for every block of filters
                    pixel = _broadcast(builder, builder.load(builder.gep(x.data, [builder.add(offset, first[k])])))
                    for b in range(vectors):
                        builder.store(builder.call(fma, [columns[b], pixel, builder.load(sums[k][b])]), sums[k][b])
            for k in range(POSITIONS):
                for b in range(vectors):
                    builder.store(builder.load(sums[k][b]),
                                  _vector_at(builder, out.data, ir.Constant(i64, (k * vectors + b) * LANES)), align=4)
            return context.get_dummy_value()
        return types.void(weights, image, offsets, starts, tile), codegen
    return forward_tile


_forward_tile = _forward_tile_of(1)       # 16 filters
_forward_tile_pair = _forward_tile_of(2)  # 32 filters: each pixel of x loaded once for both


def _weight_grad_tile_of(vectors: int):
    """The weight-gradient tile for ``vectors`` blocks of LANES filters at once (1 or 2)."""
    @intrinsic
    def weight_grad_tile(typingctx, image, offsets, first_tap, starts, grad, share, block):
        """share[block + b, first_tap + j, :] = sum over positions q of image[offsets[first_tap
        + j] + starts[q]] * grad[q, b*LANES:(b+1)*LANES], for TAPS taps; ``grad`` (positions,
        vectors*LANES): the output gradient of the task's images for its blocks of filters,
        position-major; ``share`` (blocks, taps, LANES): the task's share of dW."""
        def codegen(context, builder, signature, args):
            x, off, _, start, g, out, _ = (context.make_array(t)(context, builder, a) if isinstance(t, types.Array)
                                           else None for t, a in zip(signature.args, args))
            i64, fma = ir.IntType(64), _fma(builder)
            tap_offsets = [builder.load(builder.gep(off.data, [builder.add(args[2], ir.Constant(i64, j))]))
                           for j in range(TAPS)]
            zero = ir.Constant(_vector_type(), [0.0] * LANES)
            sums = [[cgutils.alloca_once_value(builder, zero) for _ in range(vectors)] for _ in range(TAPS)]
            with cgutils.for_range(builder, builder.extract_value(start.shape, 0)) as loop:
                q = loop.index
                first = builder.load(builder.gep(start.data, [q]))
                row = builder.mul(q, ir.Constant(i64, vectors * LANES))
                grads = [builder.load(_vector_at(builder, g.data, builder.add(row, ir.Constant(i64, b * LANES))),
                                      align=4) for b in range(vectors)]
                for j in range(TAPS):  # one pixel of x, broadcast, for every block of filters
                    pixel = _broadcast(builder, builder.load(builder.gep(x.data, [builder.add(tap_offsets[j], first)])))
                    for b in range(vectors):
                        builder.store(builder.call(fma, [pixel, grads[b], builder.load(sums[j][b])]), sums[j][b])
            taps = builder.extract_value(out.shape, 1)
            for j in range(TAPS):
                for b in range(vectors):
                    row = builder.add(builder.mul(builder.add(args[6], ir.Constant(i64, b)), taps),
                                      builder.add(args[2], ir.Constant(i64, j)))  # (block + b) * taps + first_tap + j
                    builder.store(builder.load(sums[j][b]),
                                  _vector_at(builder, out.data, builder.mul(row, ir.Constant(i64, LANES))), align=4)
            return context.get_dummy_value()
        return types.void(image, offsets, first_tap, starts, grad, share, block), codegen
    return weight_grad_tile


_weight_grad_tile = _weight_grad_tile_of(1)
_weight_grad_tile_pair = _weight_grad_tile_of(2)


# ------------------------------------------------------------------------------- the loops
@numba.njit(cache=True)
def _padded_images(x, first, stop, top, left, padded_h, padded_w):
    """Images ``first:stop`` of x with their zero padding written out, flat (x's own memory
    when there is no padding): each parallel task pads its own images, while they are in its
    cache, instead of a pass over the whole batch before the kernel."""
    n_batch, channels, height, width = x.shape
    if padded_h == height and padded_w == width:
        return x[first:stop].reshape(-1)
    padded = np.zeros((stop - first, channels, padded_h, padded_w), dtype=x.dtype)
    for n in range(first, stop):
        for c in range(channels):
            for h in range(height):
                for w in range(width):
                    padded[n - first, c, top + h, left + w] = x[n, c, h, w]
    return padded.reshape(-1)


def _forward_pass_of(tile, vectors: int):
    """One image's outputs for ``vectors`` blocks of filters, tile by tile, as a compiled function."""
    @numba.njit(cache=True)
    def forward_pass(weights, image, offsets, starts, bias, out, first_filter):
        """out[first_filter + o, q] = bias + the tiles' sums, for every position q of the image."""
        positions = starts.shape[0]
        filters = min(vectors * LANES, out.shape[0] - first_filter)
        sums = np.empty((POSITIONS, vectors * LANES), dtype=np.float32)
        tile_starts = np.empty(POSITIONS, dtype=np.int64)
        for q0 in range(0, positions, POSITIONS):
            for k in range(POSITIONS):  # a last, partial tile repeats its last position
                tile_starts[k] = starts[min(q0 + k, positions - 1)]
            tile(weights, image, offsets, tile_starts, sums)
            for k in range(min(POSITIONS, positions - q0)):
                for o in range(filters):
                    out[first_filter + o, q0 + k] = sums[k, o] + bias[first_filter + o]
    return forward_pass


_forward_pass = _forward_pass_of(_forward_tile, 1)
_forward_pass_pair = _forward_pass_of(_forward_tile_pair, 2)


def _weight_grad_pass_of(tile, vectors: int):
    """A task's share of dW for ``vectors`` blocks of filters, tile by tile, as a compiled function."""
    @numba.njit(cache=True)
    def weight_grad_pass(images, offsets, task_starts, grad, first, stop, block, share):
        """share[block:block + vectors] = the tiles' sums over images first:stop (``images``,
        padded and flat; ``task_starts`` their windows' starts in it)."""
        c_out, positions = grad.shape[1], grad.shape[2]
        width = vectors * LANES  # a row as wide as the tile reads: one block's fits in cache better
        grad_by_position = np.zeros(((stop - first) * positions, width), dtype=np.float32)
        for n in range(first, stop):  # lanes past the last filter stay 0: their sums are dropped
            for q in range(positions):
                for o in range(min(width, c_out - block * LANES)):
                    grad_by_position[(n - first) * positions + q, o] = grad[n, block * LANES + o, q]
        for first_tap in range(0, offsets.shape[0], TAPS):
            tile(images, offsets, first_tap, task_starts, grad_by_position, share, block)
    return weight_grad_pass


_weight_grad_pass = _weight_grad_pass_of(_weight_grad_tile, 1)
_weight_grad_pass_pair = _weight_grad_pass_of(_weight_grad_tile_pair, 2)


def _forward_driver(parallel: bool):
    loop = numba.prange if parallel else range  # see im2col._im2col_driver

    @numba.njit(parallel=parallel, cache=True)
    def direct_forward_loops(x, top, left, padded_h, padded_w, weight_blocks, bias, offsets, starts, c_out):
        n_batch, blocks = x.shape[0], weight_blocks.shape[0]
        out = np.empty((n_batch, c_out, starts.shape[0]), dtype=np.float32)
        for n in loop(n_batch):
            image = _padded_images(x, n, n + 1, top, left, padded_h, padded_w)
            for block in range(0, blocks - 1, 2):  # two blocks of filters a pass, then the last one alone
                _forward_pass_pair(weight_blocks[block:block + 2], image, offsets, starts, bias, out[n], block * LANES)
            if blocks % 2:
                _forward_pass(weight_blocks[blocks - 1], image, offsets, starts, bias, out[n], (blocks - 1) * LANES)
        return out
    return direct_forward_loops


def _weight_grad_driver(parallel: bool):
    loop = numba.prange if parallel else range

    @numba.njit(parallel=parallel, cache=True)
    def direct_weight_grad_loops(x, top, left, padded_h, padded_w, grad, offsets, starts, blocks):
        n_batch, c_out, positions = grad.shape
        taps = offsets.shape[0]
        plane = x.shape[1] * padded_h * padded_w  # one padded image, flat
        tasks = (n_batch + IMAGES_PER_TASK - 1) // IMAGES_PER_TASK
        shares = np.zeros((tasks, blocks, taps, LANES), dtype=np.float32)
        for task in loop(tasks):
            first, stop = task * IMAGES_PER_TASK, min(n_batch, (task + 1) * IMAGES_PER_TASK)
            images = _padded_images(x, first, stop, top, left, padded_h, padded_w)
            # The task's images as one long run of positions (image-major): each tile then sums
            # over all of them at once, loading and storing its accumulators once per task.
            task_starts = np.empty((stop - first) * positions, dtype=np.int64)
            for n in range(stop - first):
                for q in range(positions):
                    task_starts[n * positions + q] = n * plane + starts[q]
            for block in range(0, blocks - 1, 2):  # two blocks of filters a pass, then the last one alone
                _weight_grad_pass_pair(images, offsets, task_starts, grad, first, stop, block, shares[task])
            if blocks % 2:
                _weight_grad_pass(images, offsets, task_starts, grad, first, stop, blocks - 1, shares[task])
        return shares
    return direct_weight_grad_loops


_forward = Loops(_forward_driver)
_weight_grad = Loops(_weight_grad_driver)


# ------------------------------------------------------------------------------- geometry
def _padded_size(x_shape, padding) -> tuple:
    """(height, width) of x's images with their padding, ((top, bottom), (left, right))."""
    (top, bottom), (left, right) = padding
    return x_shape[2] + top + bottom, x_shape[3] + left + right


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
    x = np.ascontiguousarray(x)
    padded_hw = _padded_size(x.shape, padding)
    taps = channels * kh * kw
    blocks = np.zeros((_blocks(c_out), taps, LANES), dtype=np.float32)  # W transposed, in blocks of filters
    for block in range(blocks.shape[0]):
        part = weight.reshape(c_out, taps)[block * LANES:(block + 1) * LANES]
        blocks[block, :, :part.shape[0]] = part.T
    bias = np.zeros(c_out, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    offsets = _window_offsets(channels, padded_hw, (kh, kw), tuple(dilation), taps)
    starts = _window_starts(tuple(out_hw), padded_hw[1], tuple(stride))
    multiply_adds = x.shape[0] * c_out * starts.size * taps  # the grain counts work, not outputs
    out = _forward(multiply_adds, x, padding[0][0], padding[1][0], *padded_hw, blocks, bias, offsets, starts, c_out)
    return out.reshape((x.shape[0], c_out) + tuple(out_hw))


def direct_conv_weight_grad_numba(grad, x, kernel_size, stride, padding, dilation):
    """dW (C_out, C, kh, kw) of a convolution from its output gradient ``grad`` (N, C_out, OH,
    OW) and input ``x``, float32, without a cols matrix."""
    n, c_out, out_h, out_w = grad.shape
    channels, (kh, kw) = x.shape[1], kernel_size
    x = np.ascontiguousarray(x)
    padded_hw = _padded_size(x.shape, padding)
    taps = channels * kh * kw
    taps_padded = (taps + TAPS - 1) // TAPS * TAPS
    offsets = _window_offsets(channels, padded_hw, tuple(kernel_size), tuple(dilation), taps_padded)
    starts = _window_starts((out_h, out_w), padded_hw[1], tuple(stride))
    grad = np.ascontiguousarray(grad).reshape(n, c_out, out_h * out_w)
    shares = _weight_grad(grad.size * taps, x, padding[0][0], padding[1][0], *padded_hw, grad, offsets, starts,
                          _blocks(c_out))
    total = _sum_shares(shares)                                         # (blocks, taps_padded, LANES)
    by_filter = total[:, :taps, :].transpose(0, 2, 1).reshape(-1, taps)[:c_out]
    return np.ascontiguousarray(by_filter).reshape(c_out, channels, kh, kw)


def direct_conv_input_grad_numba(grad, weight, x_hw, padding, dilation):
    """dx (N, C, H, W) of a stride-1 convolution from its output gradient ``grad`` (N, C_out,
    OH, OW), float32, as the forward pass of another convolution (no cols, no col2im).

    Pixel h of x met tap i of the kernel at output h + top - i*d, so with the taps in reverse
    order (i' = k-1-i) dx is the cross-correlation of dY, padded by d*(k-1) - top before and
    d*(k-1) - bottom after, with the kernels flipped in both axes and in/out channels swapped:
    ``dx = conv2d(dY, flip(W).transpose(1, 0, 2, 3), padding=d*(k-1) - padding, dilation=d)``."""
    kh, kw = weight.shape[2:]
    flipped = np.ascontiguousarray(weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])  # (C, C_out, kh, kw)
    dh, dw = dilation
    (top, bottom), (left, right) = padding
    full = ((dh * (kh - 1) - top, dh * (kh - 1) - bottom), (dw * (kw - 1) - left, dw * (kw - 1) - right))
    return direct_conv_forward_numba(grad, flipped, None, tuple(x_hw), (1, 1), full, dilation)
