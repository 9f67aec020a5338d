"""Activations and their backward passes on the CPU as compiled loops: one pass over memory, no
temporaries, and on numba's threads when the array is large enough (NumPy's ufuncs run on one
core whatever the machine has: at two threads they were what kept a LeNet step from scaling).

The readable versions are the ``Function`` classes of :mod:`tinynet.functional.elementwise`
(``Relu``, ``Sigmoid``, ``Tanh``); these loops compute the same expressions in the same order
and dtype, so the results are identical (the tests compare them bit for bit), with one
exception: the float32 sigmoid forward, whose ``exp`` is written out here (:func:`_exp_float32`).
numba's own ``exp`` calls the C library once per number, which no CPU vectorises (2.6 ms
against NumPy's 1.0 ms on LeNet's first activation); the polynomial below is plain arithmetic
that LLVM turns into 16-wide AVX-512 (or 8-wide AVX2) instructions, within 4 units in the last
place of NumPy's result (0.41 ms on one thread, 0.22 ms on two, for that activation).

Constants enter the loops as arguments of the arrays' dtype: a literal ``1`` would be an int64,
and numba would compute ``1 - y`` of a float32 ``y`` in float64.

Each function takes C-contiguous float32/float64 NumPy arrays of one shape and dtype
(:func:`fits`) and returns a new array.
"""
from __future__ import annotations

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic

from .dispatch import uses_numba
from .threads import Loops

__all__ = ["fits", "fits_sigmoid_forward", "relu_forward_numba", "relu_backward_numba", "sigmoid_forward_numba",
           "sigmoid_backward_numba", "tanh_backward_numba"]


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


# ----------------------------------------------------------------------- exp in float32
@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the int32 ``bits`` (C's type pun; one free instruction)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))
    return types.float32(types.int32), codegen


# exp(t) = 2**n * exp(r), with n the integer nearest t / ln 2 and r = t - n ln 2 in
# [-ln2/2, ln2/2]; exp(r) is Cephes' degree-7 polynomial for expf (1 + r + r^2 * (...)), and
# ln 2 is split in two (C1 exact in few bits, C2 the rest) so that r loses no precision.
_LOG2E = np.float32(1.44269504088896341)
_LN2_HIGH, _LN2_LOW = np.float32(0.693359375), np.float32(-2.12194440e-4)
_P0, _P1, _P2 = np.float32(1.9875691500e-4), np.float32(1.3981999507e-3), np.float32(8.3334519073e-3)
_P3, _P4, _P5 = np.float32(4.1665795894e-2), np.float32(1.6666665459e-1), np.float32(5.0000001201e-1)
_ROUND = np.float32(12582912.0)  # 1.5 * 2**23: adding and subtracting it rounds to an integer
_ONE, _TWO = np.float32(1), np.float32(2)
# Bounds on t that keep n's exponent field, n + 126, within [0, 255]. At the bottom, n = -126
# (t below about -87.0, where exp(t) < 1.8e-38, the foot of float32's normal range) gives the
# field 0, so exp comes out as 0; above 89.5 (past float32's largest exp, 88.72) 2**n comes out
# as +inf. The sigmoid needs no more: 1 + exp(t) is 1 at the bottom, and 1 / inf is 0 at the top.
_T_LOW, _T_HIGH = np.float32(-87.4), np.float32(89.5)


@numba.njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _exp_float32(t):
    """exp(t) for a float32 t that is not NaN: within a few units in the last place of NumPy's
    for t in [-87, 88.72], 0 below about -87 and +inf above 88.72 (see the constants above)."""
    t = min(max(t, _T_LOW), _T_HIGH)
    n = (t * _LOG2E + _ROUND) - _ROUND
    r = (t - n * _LN2_HIGH) - n * _LN2_LOW
    p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
    exp_r = p * (r * r) + r + _ONE
    # 2**n as the float with exponent field n + 126, times 2: n = 128 (t near 88.7) stays finite
    # through the product when exp(r) < 1, where 2**128 alone would already be +inf.
    return exp_r * _float32_from_bits(np.int32(n + np.float32(126)) << 23) * _TWO


def _sigmoid_forward_driver(parallel: bool):
    loop = numba.prange if parallel else range

    # error_model="numpy": 1 / (1 + e) is not checked for a zero divisor (it cannot be zero
    # here), a check that kept the serial loop from vectorising.
    @numba.njit(parallel=parallel, cache=True, fastmath={"contract"}, error_model="numpy")
    def sigmoid_forward_loops(x, y):
        for i in loop(x.size):
            v = x[i]
            y[i] = _ONE / (_ONE + _exp_float32(-v)) if v == v else v  # NaN stays NaN
    return sigmoid_forward_loops


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
_sigmoid_forward = Loops(_sigmoid_forward_driver)
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


def sigmoid_forward_numba(x):
    """``1 / (1 + exp(-x))`` for a float32 ``x`` (:func:`fits_sigmoid_forward`), with the exp
    of :func:`_exp_float32`: within a few units in the last place of the NumPy version."""
    return _unary(_sigmoid_forward, x)


def fits_sigmoid_forward(x) -> bool:
    """Whether :func:`sigmoid_forward_numba` takes ``x``: as :func:`fits`, and float32 (the
    polynomial is accurate to float32's precision only; float64 stays with NumPy)."""
    return fits(x) and x.dtype == np.float32


def sigmoid_backward_numba(y, grad):
    """``(1 - y) * y * grad`` from the sigmoid's output ``y``."""
    return _binary(_sigmoid_backward, y, grad, y.dtype.type(1))


def tanh_backward_numba(y, grad):
    """``grad * (1 - y * y)`` from tanh's output ``y``."""
    return _binary(_tanh_backward, y, grad, y.dtype.type(1))
