"""A shallow convolution on the CPU, image by image: the first layer of an image model, whose
windows hold few values (C*kh*kw at most :data:`SHALLOW_DEPTH`: LeNet's 1x5x5, a 1x3x3).

im2col + one GEMM (:mod:`tinynet.functional.conv`) is the fast way for wide layers, where the
GEMM does many multiply-adds per value it reads. A shallow layer does few: LeNet's first layer
at batch 256 writes a 15 MB cols matrix (25 values per output position), then reads it back for
a product of only 6 rows, then again for dW, so its time goes into moving cols through main
memory, and OpenBLAS's GEMM with 6 rows is far from its best. Here each parallel task takes a
few images and, for each, unfolds that image alone into a small cols (25 x 576 floats for LeNet:
in cache), multiplies it straight into the NCHW output with the bias, and moves on; the backward
unfolds each image again for dW (cheaper than reading a saved cols from memory) and saves no
cols at all, only x, as PyTorch does.

`python benchmarks/conv_cpu.py --batch 256 --repeats 15 --threads N --no-input-grad` (forward,
then dW and db, as for a first layer; 2-core development machine, 2026-12-04, float32; "before"
the same command on the tree before this module):

    layer (batch 256)               threads   before    now       PyTorch
    LeNet's first (6 5x5, 28x28)       2      2.91 ms   2.02 ms   1.76 ms
                                       1      6.17      3.62      2.84
    VGG's first (32 3x3, pad 1)        2      8.96      3.54     20.29
                                       1     15.49      6.94     32.72

("before" from an earlier run of the same command.)

A prototype of the same loops was no faster than OpenBLAS on LeNet's second layer (a window of
150 values) and 1.4x slower on a window of 288: hence the depth limit.

The sums run in another order than the GEMM's (four rows of cols per pass; dot products split
into vector lanes), so results match im2col + GEMM to rounding, not bit for bit.
"""
from __future__ import annotations

import numba
import numpy as np

from .threads import Loops

__all__ = ["SHALLOW_DEPTH", "IMAGES_PER_TASK", "fits", "shallow_conv_forward_numba", "shallow_conv_weight_grad_numba"]

SHALLOW_DEPTH = 32      # C*kh*kw of the layers that take this path (groups=1)
IMAGES_PER_TASK = 4     # images per parallel task: each task reuses one small cols buffer


def fits(weight, groups: int) -> bool:
    """Whether a convolution of float32/float64 NumPy arrays (of one dtype, as ``conv2d``
    checks) takes this path: no groups, a window of at most SHALLOW_DEPTH values."""
    return groups == 1 and weight.shape[1] * weight.shape[2] * weight.shape[3] <= SHALLOW_DEPTH


@numba.njit(cache=True)
def _unfold_image(x, n, cols, kh, kw, sh, sw, top, left, dh, dw, out_h, out_w):
    """cols (C*kh*kw, OH*OW) of image ``n`` alone: im2col's entries for its windows (0 in the padding)."""
    _, channels, height, width = x.shape
    for c in range(channels):
        for i in range(kh):
            for j in range(kw):
                row = cols[(c * kh + i) * kw + j]
                for oh in range(out_h):
                    h = oh * sh - top + i * dh
                    start = oh * out_w
                    if h < 0 or h >= height:
                        for ow in range(out_w):
                            row[start + ow] = 0
                        continue
                    for ow in range(out_w):
                        w = ow * sw - left + j * dw
                        row[start + ow] = x[n, c, h, w] if 0 <= w < width else 0


@numba.njit(cache=True)
def _multiply_image(weight, bias, has_bias, cols, out):
    """out (C_out, P) = weight (C_out, K) @ cols (K, P) + bias: for each output row, four rows of
    cols per pass over it (one read and write of the row per four multiply-adds, not per one)."""
    c_out, depth = weight.shape
    positions = cols.shape[1]
    for o in range(c_out):
        row = out[o]
        for p in range(positions):
            row[p] = bias[o] if has_bias else 0
        k = 0
        while k + 4 <= depth:
            w0, w1, w2, w3 = weight[o, k], weight[o, k + 1], weight[o, k + 2], weight[o, k + 3]
            c0, c1, c2, c3 = cols[k], cols[k + 1], cols[k + 2], cols[k + 3]
            for p in range(positions):
                row[p] += w0 * c0[p] + w1 * c1[p] + w2 * c2[p] + w3 * c3[p]
            k += 4
        while k < depth:
            w0, c0 = weight[o, k], cols[k]
            for p in range(positions):
                row[p] += w0 * c0[p]
            k += 1


# reassoc: each dot product may be split into vector lanes (a fixed order, chosen when compiled)
@numba.njit(cache=True, fastmath={"reassoc"})
def _add_image_weight_grad(grad, cols, grad_weight):
    """grad_weight (C_out, K) += grad (C_out, P) @ cols.T (P, K): one image's share of dW, as dot
    products of a gradient row with four rows of cols at once (four sums in flight, one read of
    the gradient row for four of them)."""
    c_out, positions = grad.shape
    depth = cols.shape[0]
    for o in range(c_out):
        g = grad[o]
        k = 0
        while k + 4 <= depth:
            c0, c1, c2, c3 = cols[k], cols[k + 1], cols[k + 2], cols[k + 3]
            # started from the shares so far: sums in the arrays' dtype (0.0 would make them float64)
            t0, t1, t2, t3 = grad_weight[o, k], grad_weight[o, k + 1], grad_weight[o, k + 2], grad_weight[o, k + 3]
            for p in range(positions):
                gp = g[p]
                t0 += gp * c0[p]
                t1 += gp * c1[p]
                t2 += gp * c2[p]
                t3 += gp * c3[p]
            grad_weight[o, k], grad_weight[o, k + 1], grad_weight[o, k + 2], grad_weight[o, k + 3] = t0, t1, t2, t3
            k += 4
        while k < depth:
            c0, t0 = cols[k], grad_weight[o, k]
            for p in range(positions):
                t0 += g[p] * c0[p]
            grad_weight[o, k] = t0
            k += 1


@numba.njit(cache=True, fastmath={"reassoc"})
def _add_image_bias_grad(grad, grad_bias):
    """grad_bias (C_out,) += grad (C_out, P) summed per row, in float64: one image's share of db."""
    for o in range(grad.shape[0]):
        total = 0.0
        for p in range(grad.shape[1]):
            total += grad[o, p]
        grad_bias[o] += total


@numba.njit(cache=True)
def _sum_shares(shares):
    """shares[0] + shares[1] + ..., in that order. (A function of its own: inside a parallel
    kernel numba turns each ``total += shares[task]`` into a parallel loop of its own, a
    thread-pool start per task, 3x the whole kernel's time for LeNet's bias alone.)"""
    total = np.zeros(shares.shape[1:], dtype=shares.dtype)
    flat = total.reshape(-1)
    for task in range(shares.shape[0]):
        share = shares[task].reshape(-1)
        for i in range(flat.size):
            flat[i] += share[i]
    return total


def _forward_driver(parallel: bool):
    loop = numba.prange if parallel else range  # see im2col._im2col_driver

    @numba.njit(parallel=parallel, cache=True)
    def shallow_forward_loops(x, weight, bias, has_bias, kh, kw, sh, sw, top, left, dh, dw, out_h, out_w):
        n_batch = x.shape[0]
        c_out, depth = weight.shape
        y = np.empty((n_batch, c_out, out_h * out_w), dtype=x.dtype)
        for task in loop((n_batch + IMAGES_PER_TASK - 1) // IMAGES_PER_TASK):
            cols = np.empty((depth, out_h * out_w), dtype=x.dtype)   # this task's, reused per image
            for n in range(task * IMAGES_PER_TASK, min(n_batch, (task + 1) * IMAGES_PER_TASK)):
                _unfold_image(x, n, cols, kh, kw, sh, sw, top, left, dh, dw, out_h, out_w)
                _multiply_image(weight, bias, has_bias, cols, y[n])
        return y
    return shallow_forward_loops


def _weight_grad_driver(parallel: bool):
    loop = numba.prange if parallel else range

    @numba.njit(parallel=parallel, cache=True, fastmath={"reassoc"})
    def shallow_weight_grad_loops(grad, x, need_weight, kh, kw, sh, sw, top, left, dh, dw, out_h, out_w):
        n_batch, c_out = grad.shape[:2]
        depth = x.shape[1] * kh * kw
        tasks = (n_batch + IMAGES_PER_TASK - 1) // IMAGES_PER_TASK
        # Each task's own share of dW and db (no two tasks add into one place), added up below
        # in task order: the same result on any number of threads.
        weight_shares = np.zeros((tasks, c_out, depth if need_weight else 0), dtype=grad.dtype)
        bias_shares = np.zeros((tasks, c_out), dtype=np.float64)
        for task in loop(tasks):
            cols = np.empty((depth if need_weight else 0, out_h * out_w), dtype=x.dtype)
            for n in range(task * IMAGES_PER_TASK, min(n_batch, (task + 1) * IMAGES_PER_TASK)):
                if need_weight:
                    _unfold_image(x, n, cols, kh, kw, sh, sw, top, left, dh, dw, out_h, out_w)
                    _add_image_weight_grad(grad[n], cols, weight_shares[task])
                _add_image_bias_grad(grad[n], bias_shares[task])
        grad_weight = _sum_shares(weight_shares)
        return grad_weight, _sum_shares(bias_shares).astype(grad.dtype)
    return shallow_weight_grad_loops


_forward = Loops(_forward_driver)
_weight_grad = Loops(_weight_grad_driver)


def _work(n_batch: int, elements: int) -> int:
    """The work the Loops see: none when the batch is one task's (nothing to split, and the
    parallel version's start would only add time: 64 against 25 us for a batch of 2)."""
    return elements if n_batch > IMAGES_PER_TASK else 0


def _window(kernel_size, stride, padding, dilation, out_hw):
    (kh, kw), (sh, sw), ((top, _), (left, _)), (dh, dw) = kernel_size, stride, padding, dilation
    return kh, kw, sh, sw, top, left, dh, dw, out_hw[0], out_hw[1]


def shallow_conv_forward_numba(x, weight, bias, out_hw, stride, padding, dilation):
    """conv2d(x, weight) + bias as an NCHW array (``out_hw`` = (OH, OW); ``padding`` as ((top,
    bottom), (left, right))), image by image: no cols matrix for the whole batch."""
    n, c_out = x.shape[0], weight.shape[0]
    y = _forward(_work(n, n * c_out * out_hw[0] * out_hw[1]), np.ascontiguousarray(x), np.ascontiguousarray(weight).reshape(c_out, -1),
                 weight.reshape(-1)[:1] if bias is None else bias, bias is not None,
                 *_window(weight.shape[2:], stride, padding, dilation, out_hw))
    return y.reshape((n, c_out) + tuple(out_hw))


def shallow_conv_weight_grad_numba(grad, x, kernel_size, stride, padding, dilation, need_weight=True):
    """(dW as (C_out, C*kh*kw) or None, db) of a convolution from its output gradient ``grad``
    (N, C_out, OH, OW) and input ``x`` (None will do when ``need_weight`` is False), each image
    unfolded again on its own; db summed in float64 (as ``nchw_to_channels_numba``), then
    rounded to grad's dtype."""
    n, c_out, out_h, out_w = grad.shape
    grad = np.ascontiguousarray(grad).reshape(n, c_out, out_h * out_w)
    if need_weight:
        x, work = np.ascontiguousarray(x), grad.size * x.shape[1] * kernel_size[0] * kernel_size[1]
    else:  # only db: x is not read (an empty stand-in of its dtype and rank)
        x, work = np.empty((n, 0, 0, 0), dtype=grad.dtype), grad.size
    grad_weight, grad_bias = _weight_grad(_work(n, work), grad, x, need_weight,
                                          *_window(kernel_size, stride, padding, dilation, (out_h, out_w)))
    return (grad_weight if need_weight else None), grad_bias
