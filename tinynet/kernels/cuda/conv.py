"""The convolution's layout changes on the GPU, fused with its bias (CUDA C, through CuPy).

A convolution as one GEMM (:mod:`tinynet.functional.conv`) produces its output channel-major,
``(C_out, N, OH*OW)``, and takes its output gradient in that layout too. Written as array
expressions, the forward adds the bias then copies to NCHW (two launches), and the backward
copies the gradient to channel-major and sums it per channel for the bias (two more). Here each
pair is one kernel:

* ``bias_to_nchw``: one thread per output element gathers its channel-major value and adds its
  channel's bias (the same sum as the array code, then the same copy).
* ``nchw_to_channels``: one block per channel (the tree sum of :mod:`.reduce`): its threads copy
  the channel's N*OH*OW values into channel-major order and add them up for the bias gradient.
  Only C_out blocks run, as in batch norm.
"""
from __future__ import annotations

import numpy as np

from ...backend import get_array_module
from .launch import THREADS, CudaModule, blocks_for, reduce_threads_for
from .reduce import BLOCK_SUM

__all__ = ["bias_to_nchw_cuda", "nchw_to_channels_cuda"]

_SOURCE = BLOCK_SUM + r"""
// y (N, C, S) = out (C, N, S) + bias[c].
extern "C" __global__ void bias_to_nchw(const T* out, const T* bias, int has_bias, T* y, long long n_batch,
                                        long long channels, long long spatial) {
    GRID_STRIDE_LOOP(i, n_batch * channels * spatial) {
        long long s = i % spatial, c = (i / spatial) % channels, n = i / (spatial * channels);
        T value = out[(c * n_batch + n) * spatial + s];
        y[i] = has_bias ? value + bias[c] : value;
    }
}

// grad (N, C, S) -> grad_cm (C, N, S), and grad_bias[c] = the sum of channel c. Block c does channel c.
extern "C" __global__ void nchw_to_channels(const T* grad, T* grad_cm, T* grad_bias, int need_bias,
                                            long long n_batch, long long channels, long long spatial) {
    __shared__ T shared[REDUCE_THREADS];
    long long c = blockIdx.x, count = n_batch * spatial;
    T partial = 0;
    for (long long k = threadIdx.x; k < count; k += blockDim.x) {
        T g = grad[((k / spatial) * channels + c) * spatial + k % spatial];
        grad_cm[c * count + k] = g;
        partial += g;
    }
    if (need_bias) {
        T total = block_sum(shared, partial);
        if (threadIdx.x == 0) grad_bias[c] = total;
    }
}
"""

_module = CudaModule("conv", _SOURCE)


def bias_to_nchw_cuda(out, bias, y=None):
    """``out`` (C, N, OH, OW) plus ``bias`` (C,) or None, as an NCHW array, in one kernel: a new
    one, or ``y`` (C-contiguous (N, C, OH, OW), e.g. a batch slice of a larger output)."""
    xp = get_array_module(out)
    c, n = out.shape[:2]
    if y is None:
        y = xp.empty((n, c) + out.shape[2:], dtype=out.dtype)
    if y.size:
        spatial = y.size // (n * c)
        _module.launch("bias_to_nchw", out.dtype, (blocks_for(y.size),), (THREADS,),
                       (xp.ascontiguousarray(out), out if bias is None else bias, np.int32(bias is not None), y,
                        np.int64(n), np.int64(c), np.int64(spatial)))
    return y


def nchw_to_channels_cuda(grad, need_bias: bool, out_bias=None):
    """``grad`` (N, C, OH, OW) in channel-major order (C, N*OH*OW), and its per-channel sum (C,)
    when ``need_bias`` (else None; written into ``out_bias`` when given), in one kernel."""
    xp = get_array_module(grad)
    n, c = grad.shape[:2]
    grad_cm = xp.empty((c, grad.size // c if c else 0), dtype=grad.dtype)
    grad_bias = (xp.empty(c, dtype=grad.dtype) if out_bias is None else out_bias) if need_bias else None
    if grad.size:
        _module.launch("nchw_to_channels", grad.dtype, (c,), (reduce_threads_for(grad.size // c),),
                       (grad, grad_cm, grad_cm if grad_bias is None else grad_bias, np.int32(need_bias),
                        np.int64(n), np.int64(c), np.int64(grad.size // (n * c))))
    return grad_cm, grad_bias
