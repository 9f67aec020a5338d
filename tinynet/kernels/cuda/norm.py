"""Batch normalisation (training) on the GPU: one block per channel, one kernel each way.

The formulas are those of :class:`tinynet.functional.norm.BatchNorm`. The input is viewed as
(N, C, S) with S the product of the spatial sizes; channel c owns the M = N*S values
``x[:, c, :]``, numbered k = n*S + s.

Parallel decomposition: block c (of ``REDUCE_THREADS`` threads) handles channel c alone.
Thread t visits the values k = t, t + T, t + 2T, ... of its channel (T threads per block) and
keeps a partial sum; :func:`_block_sum` then adds the T partial sums in shared memory as a
tree (T/2 threads add pairs, then T/4, ... : log2(T) steps) and hands the total to every
thread. With the totals known, each thread writes its own values. So:

* forward: three passes over the channel inside one kernel: the sum (-> mean), the sum of
  squared deviations from that mean (-> variance: two passes, as the reference, so no
  cancellation), then ``x_hat = (x - mean) * inv_std`` and ``y = gamma * x_hat + beta``. Thread
  0 writes the channel's mean and inv_std and updates the running statistics.
* backward: one pass for ``sum(g)`` and ``sum(g * x_hat)`` (these are dbeta and dgamma, and,
  times gamma, the two sums of the closed-form dx), then the elementwise formula
  ``dx = inv_std / M * (M * dxhat - sum(dxhat) - x_hat * sum(dxhat * x_hat))``.

A channel's values are read three (forward) or two (backward) times by the same block, which
keeps them in L2 cache for the later passes. Only C blocks run: enough for the channel counts
of convolutional layers; a batch-norm over very few channels would want several blocks per
channel and a second reduction step.
"""
from __future__ import annotations

import math

from numba import cuda

from ...backend import get_array_module
from ._numba_launch import REDUCE_THREADS, launch

__all__ = ["batch_norm_forward_cuda", "batch_norm_backward_cuda"]


@cuda.jit(device=True)
def _block_sum(shared, value):
    """The sum of ``value`` over the threads of the block, returned to every thread."""
    t = cuda.threadIdx.x
    shared[t] = value
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:
        if t < half:
            shared[t] += shared[t + half]
        cuda.syncthreads()
        half //= 2
    total = shared[0]
    cuda.syncthreads()  # everyone has read shared[0] before the next reduction overwrites it
    return total


@cuda.jit(cache=True)
def _batch_norm_forward_kernel(x, gamma, beta, running_mean, running_var, y, x_hat, mean_out, inv_std_out,
                               eps, keep, momentum, unbias, has_gamma, has_beta, has_running):
    c, t, step = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
    spatial = x.shape[2]
    count = x.shape[0] * spatial
    dtype = x.dtype.type
    shared = cuda.shared.array(REDUCE_THREADS, dtype=x.dtype)

    partial = dtype(0)
    for k in range(t, count, step):
        partial += x[k // spatial, c, k % spatial]
    mean = _block_sum(shared, partial) / dtype(count)

    partial = dtype(0)
    for k in range(t, count, step):
        d = x[k // spatial, c, k % spatial] - mean
        partial += d * d
    var = _block_sum(shared, partial) / dtype(count)   # biased, as the normalisation uses
    inv_std = dtype(1) / math.sqrt(var + eps)

    g = gamma[c] if has_gamma else dtype(1)
    b = beta[c] if has_beta else dtype(0)
    for k in range(t, count, step):
        n, s = k // spatial, k % spatial
        xh = (x[n, c, s] - mean) * inv_std
        x_hat[n, c, s] = xh
        y[n, c, s] = xh * g + b

    if t == 0:
        mean_out[c] = mean
        inv_std_out[c] = inv_std
        if has_running:  # running = (1 - momentum) * running + momentum * batch (var unbiased)
            running_mean[c] = running_mean[c] * keep + momentum * mean
            running_var[c] = running_var[c] * keep + momentum * (var * unbias)


@cuda.jit(cache=True)
def _batch_norm_backward_kernel(grad, x_hat, inv_std, gamma, grad_x, grad_gamma, grad_beta, has_gamma, need_x):
    c, t, step = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
    spatial = grad.shape[2]
    count = grad.shape[0] * spatial
    dtype = grad.dtype.type
    shared = cuda.shared.array(REDUCE_THREADS, dtype=grad.dtype)

    partial_g, partial_gx = dtype(0), dtype(0)
    for k in range(t, count, step):
        n, s = k // spatial, k % spatial
        partial_g += grad[n, c, s]
        partial_gx += grad[n, c, s] * x_hat[n, c, s]
    sum_g = _block_sum(shared, partial_g)
    sum_gx = _block_sum(shared, partial_gx)
    if t == 0:
        grad_beta[c] = sum_g
        grad_gamma[c] = sum_gx

    if need_x:
        g = gamma[c] if has_gamma else dtype(1)
        sum_dxhat, sum_dxhat_xhat = g * sum_g, g * sum_gx     # dxhat = g * grad
        scale = inv_std[c] / dtype(count)
        m = dtype(count)
        for k in range(t, count, step):
            n, s = k // spatial, k % spatial
            grad_x[n, c, s] = scale * (m * (grad[n, c, s] * g) - sum_dxhat - x_hat[n, c, s] * sum_dxhat_xhat)


def batch_norm_forward_cuda(x, weight, bias, running_mean, running_var, momentum, eps):
    """Training-mode batch norm of ``x`` (N, C, ...) over every axis but 1, in one kernel.

    ``weight``, ``bias``, ``running_mean``, ``running_var``: (C,) arrays of x's dtype or None;
    the running statistics are updated in place (both or neither).

    Returns ``(y, x_hat, mean, inv_std)``: y and x_hat of x's shape, mean and inv_std (C,).
    """
    xp = get_array_module(x)
    n, c = x.shape[:2]
    count = x.size // c
    x3 = xp.ascontiguousarray(x).reshape(n, c, -1)
    y, x_hat = xp.empty_like(x3), xp.empty_like(x3)
    mean, inv_std = xp.empty(c, dtype=x.dtype), xp.empty(c, dtype=x.dtype)
    dtype = x.dtype.type
    has_running = running_mean is not None
    # The flat input stands in for absent optional vectors (the flags say not to touch them).
    unused = x3.reshape(-1)
    launch(_batch_norm_forward_kernel, c, REDUCE_THREADS, x,
           x3, unused if weight is None else weight, unused if bias is None else bias,
           running_mean if has_running else unused, running_var if has_running else unused,
           y, x_hat, mean, inv_std,
           dtype(eps), dtype(1 - momentum), dtype(momentum), dtype(count / (count - 1)),
           weight is not None, bias is not None, has_running)
    return y.reshape(x.shape), x_hat.reshape(x.shape), mean, inv_std


def batch_norm_backward_cuda(grad, x_hat, inv_std, weight, need_x=True):
    """Backward of :func:`batch_norm_forward_cuda` in one kernel.

    Args:
        grad, x_hat: (N, C, ...); inv_std: (C,); weight: (C,) or None.
        need_x: also compute the input's gradient.

    Returns ``(grad_x or None, grad_weight, grad_bias)``; the last two are (C,).
    """
    xp = get_array_module(grad)
    n, c = grad.shape[:2]
    g3 = xp.ascontiguousarray(grad).reshape(n, c, -1)
    xh3 = xp.ascontiguousarray(x_hat).reshape(n, c, -1)
    grad_x = xp.empty_like(g3) if need_x else g3   # a stand-in, not written, when not needed
    grad_weight, grad_bias = xp.empty(c, dtype=grad.dtype), xp.empty(c, dtype=grad.dtype)
    launch(_batch_norm_backward_kernel, c, REDUCE_THREADS, grad,
           g3, xh3, inv_std, inv_std if weight is None else weight, grad_x, grad_weight, grad_bias,
           weight is not None, bool(need_x))
    return (grad_x.reshape(grad.shape) if need_x else None), grad_weight, grad_bias
