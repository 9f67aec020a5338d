"""Batch normalisation in training mode on the CPU, as compiled loops: one task per channel (on
numba's threads when the work is large enough: :mod:`tinynet.kernels.threads`).

The readable version is ``BatchNorm.forward``/``backward`` in :mod:`tinynet.functional.norm`
(array expressions: the statistics as reductions over every axis but the channel axis, then
the normalisation). Those reductions run across the strided (N, H, W) axes of an NCHW array
and every step makes a full-size temporary: about a dozen passes over memory. Here each
channel is one task that walks its N planes in order: two passes for the statistics, one to
write ``x_hat`` and ``y``; backward: one pass for both sums, one for ``dx``. Sums are
accumulated in float64. Same signature and results (to rounding) as the reference, and
:mod:`tinynet.kernels.dispatch` picks it for float32/float64 NumPy arrays.
"""
from __future__ import annotations

import numba
import numpy as np

from .threads import Loops

__all__ = ["batch_norm_forward_numba", "batch_norm_backward_numba"]


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _forward_channel(x, y, x_hat, c, gamma, beta, eps, stats):
    n_batch, _, size = x.shape
    count = n_batch * size
    total = 0.0
    for n in range(n_batch):
        for s in range(size):
            total += x[n, c, s]
    mean = total / count
    squares = 0.0
    for n in range(n_batch):
        for s in range(size):
            d = x[n, c, s] - mean
            squares += d * d
    var = squares / count
    inv_std = 1.0 / np.sqrt(var + eps)
    for n in range(n_batch):
        for s in range(size):
            h = (x[n, c, s] - mean) * inv_std
            x_hat[n, c, s] = h
            y[n, c, s] = h * gamma + beta
    stats[0, c], stats[1, c], stats[2, c] = mean, var, inv_std


def _forward_driver(parallel: bool):
    loop = numba.prange if parallel else range  # see im2col._im2col_driver

    @numba.njit(parallel=parallel, cache=True)
    def forward_loops(x, gamma, beta, eps):
        n_chan = x.shape[1]
        y = np.empty_like(x)
        x_hat = np.empty_like(x)
        stats = np.empty((3, n_chan), dtype=np.float64)  # mean, biased variance, 1/sqrt(var + eps)
        for c in loop(n_chan):
            _forward_channel(x, y, x_hat, c, gamma[c], beta[c], eps, stats)
        return y, x_hat, stats
    return forward_loops


_forward_loops = Loops(_forward_driver)


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _backward_channel(grad, x_hat, c, gamma, inv_std, need_x, grad_x, sums):
    n_batch, _, size = grad.shape
    count = n_batch * size
    sum_g = 0.0
    sum_g_xhat = 0.0
    for n in range(n_batch):
        for s in range(size):
            g = grad[n, c, s]
            sum_g += g
            sum_g_xhat += g * x_hat[n, c, s]
    sums[0, c], sums[1, c] = sum_g_xhat, sum_g
    if need_x:
        # dxhat = g * gamma; dx = inv_std / M * (M * dxhat - sum(dxhat) - x_hat * sum(dxhat * x_hat))
        scale = gamma * inv_std / count
        for n in range(n_batch):
            for s in range(size):
                grad_x[n, c, s] = scale * (count * grad[n, c, s] - sum_g - x_hat[n, c, s] * sum_g_xhat)


def _backward_driver(parallel: bool):
    loop = numba.prange if parallel else range  # see im2col._im2col_driver

    @numba.njit(parallel=parallel, cache=True)
    def backward_loops(grad, x_hat, gamma, inv_std, need_x):
        n_chan = grad.shape[1]
        grad_x = np.empty_like(grad) if need_x else np.empty((0, 0, 0), dtype=grad.dtype)
        sums = np.empty((2, n_chan), dtype=np.float64)  # sum(g * x_hat) (dgamma), sum(g) (dbeta)
        for c in loop(n_chan):
            _backward_channel(grad, x_hat, c, gamma[c], inv_std[c], need_x, grad_x, sums)
        return grad_x, sums
    return backward_loops


_backward_loops = Loops(_backward_driver)


def _per_channel(value, channels: int, dtype, default: float):
    """A (C,) contiguous array of ``dtype``: ``value``, or ``default`` everywhere when None."""
    return np.full(channels, default, dtype) if value is None else np.ascontiguousarray(value, dtype)


def _as_ncs(array):
    """(N, C, ...) as a C-contiguous (N, C, S) array."""
    return np.ascontiguousarray(array).reshape(array.shape[0], array.shape[1], -1)


def batch_norm_forward_numba(x, weight, bias, eps):
    """Training-mode batch norm of ``x`` (N, C, ...) over every axis but C.

    Returns ``(y, x_hat, mean, var, inv_std)``: ``y`` and ``x_hat`` shaped like ``x``; the
    per-channel batch mean, biased variance and ``1/sqrt(var + eps)`` as (C,) arrays of x's
    dtype. ``weight``/``bias`` may be None (1 and 0)."""
    gamma, beta = (_per_channel(v, x.shape[1], x.dtype, d) for v, d in ((weight, 1.0), (bias, 0.0)))
    y, x_hat, stats = _forward_loops(x.size, _as_ncs(x), gamma, beta, float(eps))
    mean, var, inv_std = (s.astype(x.dtype) for s in stats)
    return y.reshape(x.shape), x_hat.reshape(x.shape), mean, var, inv_std


def batch_norm_backward_numba(grad, x_hat, inv_std, weight, need_x: bool):
    """Gradients of training-mode batch norm: ``(grad_x or None, grad_weight, grad_bias)``, the
    last two (C,). ``inv_std`` is (C,); ``weight`` (C,) or None."""
    gamma = _per_channel(weight, grad.shape[1], grad.dtype, 1.0)
    grad_x, sums = _backward_loops(grad.size, _as_ncs(grad), _as_ncs(x_hat), gamma,
                                   np.ascontiguousarray(inv_std, np.float64).reshape(-1), bool(need_x))
    grad_weight, grad_bias = (s.astype(grad.dtype) for s in sums)
    return (grad_x.reshape(grad.shape) if need_x else None), grad_weight, grad_bias
