"""Batch normalisation (training) on the GPU: one block per channel, one kernel each way (CUDA C,
launched through CuPy).

The formulas are those of :class:`tinynet.functional.norm.BatchNorm`. The input is viewed as
(N, C, S) with S the product of the spatial sizes; channel c owns the M = N*S values
``x[:, c, :]``, numbered k = n*S + s.

Parallel decomposition: block c (of up to ``REDUCE_THREADS`` threads, fewer for small channels:
``reduce_threads_for``) handles channel c alone.
Thread t visits the values k = t, t + T, t + 2T, ... of its channel (T threads per block) and
keeps a partial sum; ``block_sum`` (:mod:`.reduce`) then adds the T partial sums in shared memory as a tree
(T/2 threads add pairs, then T/4, ... : log2(T) steps, with ``__syncthreads()`` between them so
that every thread sees the others' writes) and hands the total to every thread. With the
totals known, each thread writes its own values. So:

* forward: three passes over the channel inside one kernel: the sum (-> mean), the sum of
  squared deviations from that mean (-> variance: two passes, as the reference, so no
  cancellation), then ``x_hat = (x - mean) * inv_std`` and ``y = gamma * x_hat + beta``. Thread
  0 writes the channel's mean and inv_std and updates the running statistics; thread 0 of
  block 0 also adds 1 to the module's ``num_batches_tracked`` when it is passed, so that
  counter costs no kernel launch of its own (and a replayed CUDA graph advances it too).
* backward: one pass for ``sum(g)`` and ``sum(g * x_hat)`` (these are dbeta and dgamma, and,
  times gamma, the two sums of the closed-form dx), then the elementwise formula
  ``dx = inv_std / M * (M * dxhat - sum(dxhat) - x_hat * sum(dxhat * x_hat))``.

A channel's values are read three (forward) or two (backward) times by the same block, which
keeps them in L2 cache for the later passes. Only C blocks run: enough for the channel counts
of convolutional layers; a batch-norm over very few channels would want several blocks per
channel and a second reduction step.
"""
from __future__ import annotations

import numpy as np

from ...backend import get_array_module
from .launch import CudaModule, reduce_threads_for
from .reduce import BLOCK_SUM

__all__ = ["batch_norm_forward_cuda", "batch_norm_backward_cuda"]

_SOURCE = BLOCK_SUM + r"""
// x, y, x_hat: (N, C, S) contiguous; gamma, beta, running_mean, running_var, mean_out,
// inv_std_out: (C,); num_batches_tracked: one int64. Block c normalises channel c.
extern "C" __global__ void batch_norm_forward(
        const T* x, const T* gamma, const T* beta, T* running_mean, T* running_var,
        T* y, T* x_hat, T* mean_out, T* inv_std_out, long long* num_batches_tracked, long long n_batch,
        long long channels, long long spatial, T eps, T keep, T momentum, T unbias, int has_gamma, int has_beta,
        int has_running, int has_counter) {
    __shared__ T shared[REDUCE_THREADS];
    long long c = blockIdx.x;
    int t = threadIdx.x, step = blockDim.x;
    long long count = n_batch * spatial;
#define AT(k) (((k) / spatial * channels + c) * spatial + (k) % spatial)

    T partial = 0;
    for (long long k = t; k < count; k += step) partial += x[AT(k)];
    T mean = block_sum(shared, partial) / (T)count;

    partial = 0;
    for (long long k = t; k < count; k += step) {
        T d = x[AT(k)] - mean;
        partial += d * d;
    }
    T var = block_sum(shared, partial) / (T)count;     // biased, as the normalisation uses
    T inv_std = (T)1 / sqrt(var + eps);

    T g = has_gamma ? gamma[c] : (T)1;
    T b = has_beta ? beta[c] : (T)0;
    for (long long k = t; k < count; k += step) {
        long long at = AT(k);
        T xh = (x[at] - mean) * inv_std;
        x_hat[at] = xh;
        y[at] = xh * g + b;
    }
    if (t == 0) {
        mean_out[c] = mean;
        inv_std_out[c] = inv_std;
        if (has_running) {  // running = (1 - momentum) * running + momentum * batch (var unbiased)
            running_mean[c] = running_mean[c] * keep + momentum * mean;
            running_var[c] = running_var[c] * keep + momentum * (var * unbias);
        }
        if (has_counter && c == 0) *num_batches_tracked += 1;   // one thread in the whole grid
    }
}

extern "C" __global__ void batch_norm_backward(
        const T* grad, const T* x_hat, const T* inv_std, const T* gamma, T* grad_x, T* grad_gamma, T* grad_beta,
        long long n_batch, long long channels, long long spatial, int has_gamma, int need_x) {
    __shared__ T shared[REDUCE_THREADS];
    long long c = blockIdx.x;
    int t = threadIdx.x, step = blockDim.x;
    long long count = n_batch * spatial;

    T partial_g = 0, partial_gx = 0;
    for (long long k = t; k < count; k += step) {
        long long at = AT(k);
        partial_g += grad[at];
        partial_gx += grad[at] * x_hat[at];
    }
    T sum_g = block_sum(shared, partial_g);
    T sum_gx = block_sum(shared, partial_gx);
    if (t == 0) {
        grad_beta[c] = sum_g;
        grad_gamma[c] = sum_gx;
    }
    if (need_x) {
        T g = has_gamma ? gamma[c] : (T)1;
        T sum_dxhat = g * sum_g, sum_dxhat_xhat = g * sum_gx;   // dxhat = g * grad
        T m = (T)count;
        T scale = inv_std[c] / m;
        for (long long k = t; k < count; k += step) {
            long long at = AT(k);
            grad_x[at] = scale * (m * (grad[at] * g) - sum_dxhat - x_hat[at] * sum_dxhat_xhat);
        }
    }
}
"""

_module = CudaModule("norm", _SOURCE)


def batch_norm_forward_cuda(x, weight, bias, running_mean, running_var, momentum, eps, num_batches_tracked=None):
    """Training-mode batch norm of ``x`` (N, C, ...) over every axis but 1, in one kernel.

    ``weight``, ``bias``, ``running_mean``, ``running_var``: (C,) arrays of x's dtype or None;
    the running statistics are updated in place (both or neither). ``num_batches_tracked``: a
    device int64 array of shape () or None; when given, the kernel adds 1 to it in place (the
    BatchNorm module's step counter, without a launch of its own).

    Returns ``(y, x_hat, mean, inv_std)``: y and x_hat of x's shape, mean and inv_std (C,).
    """
    xp = get_array_module(x)
    n, c = x.shape[:2]
    count = x.size // c
    x3 = xp.ascontiguousarray(x).reshape(n, c, -1)
    y, x_hat = xp.empty_like(x3), xp.empty_like(x3)
    mean, inv_std = xp.empty(c, dtype=x.dtype), xp.empty(c, dtype=x.dtype)
    dtype = x.dtype.type
    has_running, has_counter = running_mean is not None, num_batches_tracked is not None
    if has_counter and (num_batches_tracked.dtype != np.int64 or num_batches_tracked.shape != ()):
        raise ValueError(f"batch_norm_forward_cuda: expected num_batches_tracked to be an int64 array of "
                         f"shape (), got {num_batches_tracked.dtype} of shape {num_batches_tracked.shape}")
    # The mean output stands in for absent optional vectors, and an unwritten int64 for an absent
    # counter (the flags say not to touch them).
    counter = num_batches_tracked if has_counter else xp.empty((), dtype=np.int64)
    _module.launch("batch_norm_forward", x.dtype, (c,), (reduce_threads_for(count),),
                   (x3, mean if weight is None else weight, mean if bias is None else bias,
                    running_mean if has_running else mean, running_var if has_running else mean,
                    y, x_hat, mean, inv_std, counter, np.int64(n), np.int64(c), np.int64(x3.shape[2]),
                    dtype(eps), dtype(1 - momentum), dtype(momentum), dtype(count / (count - 1)),
                    np.int32(weight is not None), np.int32(bias is not None), np.int32(has_running),
                    np.int32(has_counter)))
    return y.reshape(x.shape), x_hat.reshape(x.shape), mean, inv_std


def batch_norm_backward_cuda(grad, x_hat, inv_std, weight, need_x=True, out_weight=None, out_bias=None):
    """Backward of :func:`batch_norm_forward_cuda` in one kernel.

    Args:
        grad, x_hat: (N, C, ...); inv_std: (C,); weight: (C,) or None.
        need_x: also compute the input's gradient.
        out_weight, out_bias: (C,) arrays to write the two parameter gradients into, or None.

    Returns ``(grad_x or None, grad_weight, grad_bias)``; the last two are (C,).
    """
    xp = get_array_module(grad)
    n, c = grad.shape[:2]
    g3 = xp.ascontiguousarray(grad).reshape(n, c, -1)
    xh3 = xp.ascontiguousarray(x_hat).reshape(n, c, -1)
    grad_x = xp.empty_like(g3) if need_x else g3   # a stand-in, not written, when not needed
    grad_weight = xp.empty(c, dtype=grad.dtype) if out_weight is None else out_weight
    grad_bias = xp.empty(c, dtype=grad.dtype) if out_bias is None else out_bias
    _module.launch("batch_norm_backward", grad.dtype, (c,), (reduce_threads_for(g3.size // c if c else 0),),
                   (g3, xh3, inv_std, inv_std if weight is None else weight, grad_x, grad_weight, grad_bias,
                    np.int64(n), np.int64(c), np.int64(g3.shape[2]), np.int32(weight is not None),
                    np.int32(need_x)))
    return (grad_x.reshape(grad.shape) if need_x else None), grad_weight, grad_bias
