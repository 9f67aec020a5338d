"""Activations on the GPU, each direction one kernel (CUDA C, launched through CuPy).

Written as array expressions, a sigmoid is four launches forward (negate, exp, add 1,
reciprocal) and three backward; a ReLU's backward two (compare, select); a PReLU's backward
six; a log-softmax six forward and three backward (its kernels run one thread per row of the
softmax axis, like the cross-entropy's). Each kernel here computes the same formula, in the same order of operations, as the
array code in :mod:`tinynet.functional.elementwise` and :mod:`tinynet.functional.activation`,
one thread per element (a grid-stride loop), reading each input once and writing each output
once. The launchers take C-contiguous arrays of one shape and dtype (:func:`fusable`); the
ops run their array code for anything else (a broadcast gradient, say).
"""
from __future__ import annotations

import numpy as np

from ...backend import get_array_module
from .launch import THREADS, CudaModule, blocks_for
from .reduce import ROW_LOG_SUM_EXP

__all__ = ["fusable", "sigmoid_forward_cuda", "sigmoid_backward_cuda", "tanh_backward_cuda",
           "relu_backward_cuda", "prelu_forward_cuda", "prelu_backward_cuda", "log_softmax_forward_cuda",
           "log_softmax_backward_cuda"]

_SOURCE = ROW_LOG_SUM_EXP + r"""
extern "C" __global__ void sigmoid_forward(const T* x, T* y, long long n) {
    GRID_STRIDE_LOOP(i, n) y[i] = (T)1 / ((T)1 + exp(-x[i]));  // exp overflows to inf: y = 0, the limit
}

// dx = (1 - y) * y * dy, from the output alone.
extern "C" __global__ void sigmoid_backward(const T* y, const T* grad, T* dx, long long n) {
    GRID_STRIDE_LOOP(i, n) dx[i] = (((T)1 - y[i]) * y[i]) * grad[i];
}

// dx = dy * (1 - y^2), from the output alone.
extern "C" __global__ void tanh_backward(const T* y, const T* grad, T* dx, long long n) {
    GRID_STRIDE_LOOP(i, n) dx[i] = grad[i] * ((T)1 - y[i] * y[i]);
}

// dx = dy where y > 0, else 0 (relu'(0) = 0).
extern "C" __global__ void relu_backward(const T* y, const T* grad, T* dx, long long n) {
    GRID_STRIDE_LOOP(i, n) dx[i] = y[i] > 0 ? grad[i] : (T)0;
}

// PReLU with one slope (channels = 1) or one per channel c = (i / inner) % channels.
extern "C" __global__ void prelu_forward(const T* x, const T* w, T* y, long long n, long long channels,
                                         long long inner) {
    GRID_STRIDE_LOOP(i, n) {
        T slope = w[(i / inner) % channels];
        y[i] = x[i] > 0 ? x[i] : slope * x[i];
    }
}

// dx = dy where x > 0, else w * dy; per_element = 0 where x > 0, else dy * x (summed to dw).
extern "C" __global__ void prelu_backward(const T* x, const T* w, const T* grad, T* dx, T* per_element,
                                          long long n, long long channels, long long inner,
                                          int need_x, int need_w) {
    GRID_STRIDE_LOOP(i, n) {
        bool positive = x[i] > 0;
        if (need_x) dx[i] = positive ? grad[i] : w[(i / inner) % channels] * grad[i];
        if (need_w) per_element[i] = positive ? (T)0 : grad[i] * x[i];
    }
}

// log_softmax along the middle axis of x (outer, C, inner): one thread per row (o, i), whose C
// values are x[(o * C + c) * inner + i]. y = (x - max) - log(sum(exp(x - max))).
extern "C" __global__ void log_softmax_forward(const T* x, T* y, long long rows, long long n_class,
                                               long long inner) {
    GRID_STRIDE_LOOP(row, rows) {
        const T* xr = x + (row / inner) * n_class * inner + row % inner;
        T* yr = y + (row / inner) * n_class * inner + row % inner;
        T m;
        T log_sum = row_log_sum_exp(xr, n_class, inner, &m);
        for (long long c = 0; c < n_class; c++) yr[c * inner] = (xr[c * inner] - m) - log_sum;
    }
}

// dx = dy - exp(y) * sum(dy) along the axis: one thread per row.
extern "C" __global__ void log_softmax_backward(const T* y, const T* grad, T* dx, long long rows,
                                                long long n_class, long long inner) {
    GRID_STRIDE_LOOP(row, rows) {
        long long start = (row / inner) * n_class * inner + row % inner;
        T total = 0;
        for (long long c = 0; c < n_class; c++) total += grad[start + c * inner];
        for (long long c = 0; c < n_class; c++) {
            long long at = start + c * inner;
            dx[at] = grad[at] - exp(y[at]) * total;
        }
    }
}
"""

_module = CudaModule("activation", _SOURCE)


def fusable(*arrays) -> bool:
    """Whether the kernels take these arrays: C-contiguous, of one shape and dtype."""
    first = arrays[0]
    return all(a.flags.c_contiguous and a.shape == first.shape and a.dtype == first.dtype for a in arrays)


def _launch(kernel: str, inputs):
    """Run an elementwise ``kernel`` on ``inputs`` into a new array of their shape."""
    out = get_array_module(inputs[0]).empty_like(inputs[0])
    if out.size:
        _module.launch(kernel, out.dtype, (blocks_for(out.size),), (THREADS,), (*inputs, out, np.int64(out.size)))
    return out


def sigmoid_forward_cuda(x):
    """``1 / (1 + exp(-x))`` in one kernel."""
    return _launch("sigmoid_forward", (x,))


def sigmoid_backward_cuda(y, grad):
    """``(1 - y) * y * grad`` in one kernel (y: the sigmoid's output)."""
    return _launch("sigmoid_backward", (y, grad))


def tanh_backward_cuda(y, grad):
    """``grad * (1 - y * y)`` in one kernel (y: the tanh's output)."""
    return _launch("tanh_backward", (y, grad))


def relu_backward_cuda(y, grad):
    """``grad`` where ``y > 0``, else 0, in one kernel (y: the ReLU's output)."""
    return _launch("relu_backward", (y, grad))


def _channel_layout(x, weight):
    """(channels, inner): a slope per channel of dim 1 (``inner`` elements per (n, c)), or one."""
    if weight.size == 1:
        return np.int64(1), np.int64(1)
    inner = int(np.prod(x.shape[2:], dtype=np.int64)) if x.ndim > 2 else 1
    return np.int64(weight.size), np.int64(inner)


def prelu_forward_cuda(x, weight):
    """``x`` where ``x > 0``, else ``slope * x``, in one kernel; ``weight``: (1,) or (C,)."""
    xp = get_array_module(x)
    y = xp.empty_like(x)
    if x.size:
        channels, inner = _channel_layout(x, weight)
        _module.launch("prelu_forward", x.dtype, (blocks_for(x.size),), (THREADS,),
                       (x, xp.ascontiguousarray(weight.reshape(-1)), y, np.int64(x.size), channels, inner))
    return y


def prelu_backward_cuda(x, weight, grad, need_x: bool, need_w: bool):
    """The PReLU's input gradient and the per-element terms of its slope gradient, in one kernel.

    Returns ``(grad_x or None, per_element or None)``: ``per_element`` is ``grad * x`` where
    ``x <= 0`` and 0 elsewhere, for the caller to sum over all but the channel dim."""
    xp = get_array_module(x)
    grad_x = xp.empty_like(x) if need_x else None
    per_element = xp.empty_like(x) if need_w else None
    if x.size:
        channels, inner = _channel_layout(x, weight)
        # Absent outputs get a stand-in the kernel never writes (its flag is 0).
        _module.launch("prelu_backward", x.dtype, (blocks_for(x.size),), (THREADS,),
                       (x, xp.ascontiguousarray(weight.reshape(-1)), grad,
                        grad_x if need_x else per_element, per_element if need_w else grad_x,
                        np.int64(x.size), channels, inner, np.int32(need_x), np.int32(need_w)))
    return grad_x, per_element


def _rows_along(shape, axis: int):
    """(rows, classes, inner) of an array of ``shape`` seen as (outer, C, inner) around ``axis``."""
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    classes = shape[axis]
    rows = int(np.prod(shape, dtype=np.int64)) // classes if classes else 0
    return np.int64(rows), np.int64(classes), np.int64(inner)


def log_softmax_forward_cuda(x, axis: int):
    """``log(softmax(x))`` along ``axis`` in one kernel (one thread per row)."""
    y = get_array_module(x).empty_like(x)
    rows, classes, inner = _rows_along(x.shape, axis)
    if x.size:
        _module.launch("log_softmax_forward", x.dtype, (blocks_for(rows),), (THREADS,), (x, y, rows, classes, inner))
    return y


def log_softmax_backward_cuda(y, grad, axis: int):
    """``grad - exp(y) * sum(grad)`` along ``axis`` in one kernel (y: the log-softmax output)."""
    dx = get_array_module(y).empty_like(y)
    rows, classes, inner = _rows_along(y.shape, axis)
    if y.size:
        _module.launch("log_softmax_backward", y.dtype, (blocks_for(rows),), (THREADS,),
                       (y, grad, dx, rows, classes, inner))
    return dx
