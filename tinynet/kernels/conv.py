"""The convolution's layout changes on the CPU, fused with its bias, as compiled loops (a GPU
needs neither: its implicit-GEMM kernels, :mod:`tinynet.kernels.cuda.conv`, read and write NCHW).

A convolution as one GEMM (:mod:`tinynet.functional.conv`) produces its output channel-major,
``(C_out, N, OH*OW)``, and takes its output gradient in that layout too. As array expressions
the forward adds the bias, then copies to NCHW (two passes over the output, on one core), and
the backward copies the gradient to channel-major and sums it per channel for the bias (two
more). Here each pair is one pass, split over numba's threads when large enough:

* :func:`bias_to_nchw_numba`: each (n, c) plane of the output is its channel-major row plus the
  channel's bias: the same float additions as the array code, so the same values.
* :func:`nchw_to_channels_numba`: each channel copies its N planes into its channel-major row and
  adds them up (in float64, then rounded to the gradient's dtype) for the bias gradient; NumPy's
  pairwise float32 sum can differ from it in the last bits.
"""
from __future__ import annotations

import numba
import numpy as np

from .threads import Loops

__all__ = ["bias_to_nchw_numba", "nchw_to_channels_numba"]


def _bias_to_nchw_driver(parallel: bool):
    loop = numba.prange if parallel else range  # see im2col._im2col_driver

    @numba.njit(parallel=parallel, cache=True)
    def bias_to_nchw_loops(out_cm, bias, has_bias, y):
        channels, n_batch, spatial = out_cm.shape
        for plane in loop(n_batch * channels):
            n, c = plane // channels, plane % channels
            if has_bias:
                b = bias[c]
                for s in range(spatial):
                    y[n, c, s] = out_cm[c, n, s] + b
            else:
                for s in range(spatial):
                    y[n, c, s] = out_cm[c, n, s]
    return bias_to_nchw_loops


def _nchw_to_channels_driver(parallel: bool):
    loop = numba.prange if parallel else range

    # reassoc: the float64 sum may be vectorised (its order is not the array code's anyway)
    @numba.njit(parallel=parallel, cache=True, fastmath={"reassoc"})
    def nchw_to_channels_loops(grad, grad_cm, grad_bias, need_bias):
        n_batch, channels, spatial = grad.shape
        for c in loop(channels):
            total = 0.0
            for n in range(n_batch):
                for s in range(spatial):
                    g = grad[n, c, s]
                    grad_cm[c, n * spatial + s] = g
                    total += g
            if need_bias:
                grad_bias[c] = total
    return nchw_to_channels_loops


_bias_to_nchw = Loops(_bias_to_nchw_driver)
_nchw_to_channels = Loops(_nchw_to_channels_driver)


def bias_to_nchw_numba(out, bias):
    """``out`` (C, N, OH, OW) plus ``bias`` (C,) or None, as a new NCHW array. Float32/float64
    NumPy arrays; ``bias`` of ``out``'s dtype."""
    c, n = out.shape[:2]
    y = np.empty((n, c) + out.shape[2:], dtype=out.dtype)
    spatial = out.size // (c * n) if c * n else 0
    _bias_to_nchw(out.size, np.ascontiguousarray(out).reshape(c, n, spatial),
                  out.reshape(-1)[:1] if bias is None else bias, bias is not None, y.reshape(n, c, spatial))
    return y


def nchw_to_channels_numba(grad, need_bias: bool, out_bias=None):
    """``grad`` (N, C, OH, OW) in channel-major order (C, N*OH*OW), and its per-channel sum (C,)
    when ``need_bias`` (else None; written into ``out_bias`` when given)."""
    n, c = grad.shape[:2]
    spatial = grad.size // (n * c) if n * c else 0
    grad_cm = np.empty((c, n * spatial), dtype=grad.dtype)
    grad_bias = (np.empty(c, dtype=grad.dtype) if out_bias is None else out_bias) if need_bias else None
    _nchw_to_channels(grad.size, np.ascontiguousarray(grad).reshape(n, c, spatial), grad_cm,
                      grad_cm.reshape(-1)[:1] if grad_bias is None else grad_bias, need_bias)
    return grad_cm, grad_bias
