"""Activations and their backward passes on the CPU as compiled loops: one pass over memory, no
temporaries, and on numba's threads when the array is large enough (NumPy's ufuncs run on one
core whatever the machine has: at two threads they were what kept a LeNet step from scaling).

The readable versions are the ``Function`` classes of :mod:`tinynet.functional.elementwise`
(``Relu``, ``Sigmoid``, ``Tanh``); these loops compute the same expressions in the same order
and dtype, so the results are identical (the tests compare them bit for bit). The sigmoid's
forward stays with NumPy, whose ``exp`` is vectorised (numba's is not: 2.6 ms against 1.0 ms
on LeNet's first activation).

Constants enter the loops as arguments of the arrays' dtype: a literal ``1`` would be an int64,
and numba would compute ``1 - y`` of a float32 ``y`` in float64.

Each function takes C-contiguous float32/float64 NumPy arrays of one shape and dtype
(:func:`fits`) and returns a new array.
"""
from __future__ import annotations

import numba
import numpy as np

from .dispatch import uses_numba
from .threads import Loops

__all__ = ["fits", "relu_forward_numba", "relu_backward_numba", "sigmoid_backward_numba", "tanh_backward_numba"]


def fits(*arrays) -> bool:
    """Whether the loops here take these arrays: NumPy float32/float64, C-contiguous, one shape
    and dtype (a broadcast gradient, say, is left to the array code)."""
    first = arrays[0]
    return uses_numba(first) and all(
        type(a) is np.ndarray and a.dtype == first.dtype and a.shape == first.shape and a.flags.c_contiguous
        for a in arrays)


def _relu_forward_driver(parallel: bool):
    loop = numba.prange if parallel else range  # see im2col._im2col_driver

    @numba.njit(parallel=parallel, cache=True)
    def relu_forward_loops(x, y):
        for i in loop(x.size):
            v = x[i]
            # numpy.maximum(v, 0): v when v > 0 or NaN, else 0 (so -0.0 becomes +0.0)
            y[i] = v if (v > 0) | (v != v) else 0
    return relu_forward_loops


def _relu_backward_driver(parallel: bool):
    loop = numba.prange if parallel else range

    @numba.njit(parallel=parallel, cache=True)
    def relu_backward_loops(y, grad, dx):
        for i in loop(y.size):
            dx[i] = grad[i] if y[i] > 0 else 0
    return relu_backward_loops


def _sigmoid_backward_driver(parallel: bool):
    loop = numba.prange if parallel else range

    @numba.njit(parallel=parallel, cache=True)
    def sigmoid_backward_loops(y, grad, dx, one):
        for i in loop(y.size):
            dx[i] = ((one - y[i]) * y[i]) * grad[i]
    return sigmoid_backward_loops


def _tanh_backward_driver(parallel: bool):
    loop = numba.prange if parallel else range

    @numba.njit(parallel=parallel, cache=True)
    def tanh_backward_loops(y, grad, dx, one):
        for i in loop(y.size):
            dx[i] = grad[i] * (one - y[i] * y[i])
    return tanh_backward_loops


_relu_forward = Loops(_relu_forward_driver)
_relu_backward = Loops(_relu_backward_driver)
_sigmoid_backward = Loops(_sigmoid_backward_driver)
_tanh_backward = Loops(_tanh_backward_driver)


def _unary(loops, x):
    out = np.empty_like(x)
    loops(x.size, x.reshape(-1), out.reshape(-1))
    return out


def _binary(loops, y, grad, *scalars):
    out = np.empty_like(y)
    loops(y.size, y.reshape(-1), grad.reshape(-1), out.reshape(-1), *scalars)
    return out


def relu_forward_numba(x):
    """``numpy.maximum(x, 0)``: NaN stays NaN."""
    return _unary(_relu_forward, x)


def relu_backward_numba(y, grad):
    """``where(y > 0, grad, 0)`` from ReLU's output ``y``."""
    return _binary(_relu_backward, y, grad)


def sigmoid_backward_numba(y, grad):
    """``(1 - y) * y * grad`` from the sigmoid's output ``y``."""
    return _binary(_sigmoid_backward, y, grad, y.dtype.type(1))


def tanh_backward_numba(y, grad):
    """``grad * (1 - y * y)`` from tanh's output ``y``."""
    return _binary(_tanh_backward, y, grad, y.dtype.type(1))
