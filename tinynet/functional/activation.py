"""Activation functions: the nonlinearities between layers, and softmax / log_softmax.

Each is elementwise (except softmax and log_softmax, which work along one dim), so each
backward is ``dx = dy * f'(x)``; the docstrings give ``f'``. ``relu``, ``sigmoid`` and
``tanh`` live in ``elementwise.py`` with the other unary math.

``inplace=True`` (where PyTorch offers it) overwrites ``input`` only when no graph is being
recorded; while recording, tinynet computes out of place, because it has no version counters
to notice that an array saved for some backward was overwritten. Always use the return value.
"""
from __future__ import annotations

import math
import warnings

from .. import dtypes as _dt
from ..autograd import Function, is_grad_enabled
from ..kernels.dispatch import uses_cuda
from ..kernels.special import erf
from ..recording import recordable
from ..tensor import Tensor

__all__ = ["leaky_relu", "elu", "gelu", "silu", "softplus", "prelu", "softmax", "log_softmax"]


# ----------------------------------------------------------------------------------- helpers
def _check_floating(op: str, input) -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(input).__name__}")
    if input.dtype.kind != "f":
        # PyTorch raises NotImplementedError (a RuntimeError) for integer inputs too.
        raise NotImplementedError(f"{op}: expected a floating-point input, got dtype {input.dtype}")


def finish_inplace(input: Tensor, output: Tensor, inplace: bool) -> Tensor:
    """For ``inplace=True`` outside graph recording: copy the result into ``input`` and return it."""
    if inplace and not (is_grad_enabled() and input.requires_grad):
        _copy_into(input, output)
        return input
    return output


@recordable
def _copy_into(input: Tensor, output: Tensor) -> None:
    """``input[...] = output`` on the arrays (recordable: compile_step replays the write)."""
    input.data[...] = output.data


def stable_sigmoid(xp, x):
    """1 / (1 + exp(-x)) without overflow: exp is only ever taken of -|x| <= 0."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def log_softmax_array(xp, x, axis):
    """log(softmax(x)) along ``axis`` on a raw array: x - max - log(sum(exp(x - max))).
    Subtracting the max keeps exp from overflowing; the result is never -inf for finite x."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return xp.asarray(shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True)))


def normalize_dim(op: str, dim: int, ndim: int) -> int:
    """``dim`` as a non-negative axis of an ``ndim``-dim tensor (a 0-d tensor accepts -1 and 0);
    IndexError as PyTorch's when it is out of range."""
    size = max(ndim, 1)
    if not -size <= dim < size:
        raise IndexError(f"{op}: dimension out of range (expected to be in range of [{-size}, {size - 1}], "
                         f"but got {dim})")
    return dim % size


# ----------------------------------------------------------------------- piecewise linear
class LeakyReLU(Function):
    """y = x if x > 0 else slope * x.  Backward: dx = dy if x > 0 else slope * dy."""

    @staticmethod
    def forward(ctx, x, negative_slope):
        ctx.save_for_backward(x)
        ctx.negative_slope = negative_slope
        return ctx.xp.where(x > 0, x, x * negative_slope)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return ctx.xp.where(x > 0, grad, grad * ctx.negative_slope), None


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """``max(0, x) + negative_slope * min(0, x)``: a ReLU that lets a little gradient through
    for negative inputs."""
    _check_floating("leaky_relu", input)
    return finish_inplace(input, LeakyReLU.apply(input, negative_slope), inplace)


class PReLU(Function):
    """y = x if x > 0 else w * x, with a learned slope w: one for all, or one per channel (dim 1).

    Backward: dx = dy if x > 0 else w * dy;  dw = sum of dy * x over the elements where x <= 0
    (over every dim except the channel dim when there is one slope per channel).
    """

    @staticmethod
    def forward(ctx, x, weight):
        xp = ctx.xp
        if weight.size == 1:
            w = weight.reshape(())
        else:  # one slope per channel: shape (C, 1, 1, ...) lines up with dim 1 of x
            w = weight.reshape((weight.size,) + (1,) * (x.ndim - 2))
        ctx.save_for_backward(x, w)
        ctx.weight_shape = weight.shape
        ctx.fused = uses_cuda(x) and x.flags.c_contiguous and weight.dtype == x.dtype
        if ctx.fused:  # the same selection in one GPU kernel (kernels/cuda/activation.py)
            from ..kernels.cuda.activation import prelu_forward_cuda
            return prelu_forward_cuda(x, weight)
        return xp.where(x > 0, x, w * x)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        x, w = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad
        if ctx.fused and grad.flags.c_contiguous and grad.shape == x.shape:  # both selections, one kernel
            from ..kernels.cuda.activation import prelu_backward_cuda
            grad_x, per_element = prelu_backward_cuda(x, w, grad, need_x, need_w)
        else:
            grad_x = xp.where(x > 0, grad, w * grad) if need_x else None
            per_element = xp.where(x > 0, 0, grad * x) if need_w else None
        grad_w = None
        if need_w:
            axes = tuple(i for i in range(x.ndim) if w.ndim == 0 or i != 1)
            dest = ctx.grad_out[1] if ctx.grad_out else None  # the slope's reserved .grad storage, if offered
            kept = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
            grad_w = per_element.sum(axis=axes, keepdims=True, out=None if dest is None else dest.reshape(kept))
            grad_w = grad_w.reshape(ctx.weight_shape) if dest is None else dest
        return grad_x, grad_w


def prelu(input, weight):
    """``max(0, x) + weight * min(0, x)`` with a learnable ``weight``: one element, or one per
    channel (``input.shape[1]``) as ``nn.PReLU(num_parameters=C)`` makes."""
    _check_floating("prelu", input)
    if not isinstance(weight, Tensor):
        raise TypeError(f"prelu: expected weight to be a Tensor, got {type(weight).__name__}")
    if weight.ndim > 1:
        raise RuntimeError(f"prelu: expected weight to be a scalar or 1-D tensor, got shape {tuple(weight.shape)}")
    channels = input.shape[1] if input.ndim >= 2 else 1
    if weight.numel() not in (1, channels):
        raise RuntimeError(f"prelu: weight has {weight.numel()} elements but input of shape {tuple(input.shape)} "
                           f"has {channels} channel(s) (dim 1); expected 1 or {channels}")
    if weight.dtype != input.dtype:
        dtype = _dt.promote_types(input.dtype, weight.dtype)
        input, weight = input.to(dtype), weight.to(dtype)
    return PReLU.apply(input, weight)


# ------------------------------------------------------------------------------ smooth
class ELU(Function):
    """y = x if x > 0 else alpha * (exp(x) - 1).  Backward: dx = dy if x > 0 else dy * alpha * exp(x)."""

    @staticmethod
    def forward(ctx, x, alpha):
        xp = ctx.xp
        exp_neg = xp.exp(xp.minimum(x, 0))  # exp of the negative part only: no overflow for large x
        ctx.save_for_backward(x, exp_neg)
        ctx.alpha = alpha
        return xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)))

    @staticmethod
    def backward(ctx, grad):
        x, exp_neg = ctx.saved_tensors
        return ctx.xp.where(x > 0, grad, grad * ctx.alpha * exp_neg), None


def elu(input, alpha=1.0, inplace=False):
    """Exponential linear unit: ``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise."""
    _check_floating("elu", input)
    return finish_inplace(input, ELU.apply(input, alpha), inplace)


_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715


class GELU(Function):
    """y = x * Phi(x), Phi the standard normal CDF: Phi(x) = (1 + erf(x / sqrt 2)) / 2.

    Backward: dx = dy * (Phi(x) + x * phi(x)), with phi(x) = exp(-x^2 / 2) / sqrt(2 pi) the
    normal density (product rule).

    ``approximate='tanh'``: y = x/2 * (1 + tanh(u)), u = sqrt(2/pi) * (x + 0.044715 x^3);
    dx = dy * (1/2 * (1 + t) + x/2 * (1 - t^2) * du/dx), t = tanh(u),
    du/dx = sqrt(2/pi) * (1 + 3 * 0.044715 x^2).
    """

    @staticmethod
    def forward(ctx, x, approximate):
        xp = ctx.xp
        ctx.save_for_backward(x)
        ctx.approximate = approximate
        if approximate == "tanh":
            t = xp.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x ** 3))
            return 0.5 * x * (1 + t)
        return 0.5 * x * (1 + erf(x / _SQRT_2))

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        (x,) = ctx.saved_tensors
        if ctx.approximate == "tanh":
            t = xp.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x ** 3))
            du_dx = _SQRT_2_OVER_PI * (1 + 3 * _GELU_CUBIC * x * x)
            return grad * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du_dx), None
        cdf = 0.5 * (1 + erf(x / _SQRT_2))
        pdf = _INV_SQRT_2PI * xp.exp(-0.5 * x * x)
        return grad * (cdf + x * pdf), None


def gelu(input, approximate="none"):
    """Gaussian error linear unit ``x * Phi(x)`` (``Phi`` the normal CDF, via erf), or its tanh
    approximation with ``approximate='tanh'``."""
    _check_floating("gelu", input)
    if approximate not in ("none", "tanh"):
        raise RuntimeError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return GELU.apply(input, approximate)


class SiLU(Function):
    """y = x * sigmoid(x) (also called swish).  Backward: dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x)."""

    @staticmethod
    def forward(ctx, x):
        s = stable_sigmoid(ctx.xp, x)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx, grad):
        x, s = ctx.saved_tensors
        return grad * s * (1 + x * (1 - s))


def silu(input, inplace=False):
    """Sigmoid linear unit ``x * sigmoid(x)``."""
    _check_floating("silu", input)
    return finish_inplace(input, SiLU.apply(input), inplace)


class Softplus(Function):
    """y = log(1 + exp(beta * x)) / beta, and y = x where beta * x > threshold (there the two
    agree to float precision, and exp would overflow).

    Backward: dx = dy * sigmoid(beta * x), and dx = dy above the threshold.
    """

    @staticmethod
    def forward(ctx, x, beta, threshold):
        xp = ctx.xp
        bx = beta * x
        ctx.save_for_backward(bx)
        ctx.threshold = threshold
        # log(1 + e^z) = max(z, 0) + log(1 + e^-|z|): exp of a non-positive number never overflows.
        smooth = (xp.maximum(bx, 0) + xp.log1p(xp.exp(-xp.abs(bx)))) / beta
        return xp.where(bx > threshold, x, smooth)

    @staticmethod
    def backward(ctx, grad):
        (bx,) = ctx.saved_tensors
        xp = ctx.xp
        return xp.where(bx > ctx.threshold, grad, grad * stable_sigmoid(xp, bx)), None, None


def softplus(input, beta=1.0, threshold=20.0):
    """A smooth ReLU: ``log(1 + exp(beta * x)) / beta``, linear above ``beta * x > threshold``."""
    _check_floating("softplus", input)
    return Softplus.apply(input, beta, threshold)


# ------------------------------------------------------------------------- along one dim
class Softmax(Function):
    """y = exp(x - max) / sum(exp(x - max)) along ``axis`` (subtracting the max changes nothing
    mathematically and keeps exp from overflowing).

    Backward: the Jacobian is diag(y) - y y^T, so dx = y * (dy - sum(dy * y)) along the axis.
    """

    @staticmethod
    def forward(ctx, x, axis):
        xp = ctx.xp
        shifted = x - x.max(axis=axis, keepdims=True)
        e = xp.exp(shifted)
        y = xp.asarray(e / e.sum(axis=axis, keepdims=True))
        ctx.save_for_backward(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return y * (grad - (grad * y).sum(axis=ctx.axis, keepdims=True)), None


class LogSoftmax(Function):
    """y = x - max - log(sum(exp(x - max))) along ``axis``: log(softmax(x)) without ever
    forming a softmax that underflows to 0 (whose log would be -inf).

    Backward: dy_i/dx_j = [i == j] - softmax_j, so dx = dy - softmax * sum(dy) along the axis.
    """

    @staticmethod
    def forward(ctx, x, axis):
        ctx.axis = axis
        ctx.fused = axis is not None and uses_cuda(x) and x.flags.c_contiguous
        if ctx.fused:  # the same formula, one GPU kernel each way (kernels/cuda/activation.py)
            from ..kernels.cuda.activation import log_softmax_forward_cuda
            y = log_softmax_forward_cuda(x, axis)
        else:
            y = log_softmax_array(ctx.xp, x, axis)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        if ctx.fused and grad.flags.c_contiguous and grad.shape == y.shape:
            from ..kernels.cuda.activation import log_softmax_backward_cuda
            return log_softmax_backward_cuda(y, grad, ctx.axis), None
        return grad - ctx.xp.exp(y) * grad.sum(axis=ctx.axis, keepdims=True), None


def _softmax_args(op: str, input, dim, dtype):
    """Check the input, cast it to ``dtype``, and turn ``dim`` into an axis (None for 0-d)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(input).__name__}")
    if dtype is not None:
        input = input.to(dtype)
    _check_floating(op, input)
    if dim is None:
        # PyTorch's legacy implicit choice, with the same deprecation warning.
        dim = 0 if input.ndim in (0, 1, 3) else 1
        warnings.warn(f"Implicit dimension choice for {op} has been deprecated. Change the call to "
                      "include dim=X as an argument.", UserWarning, stacklevel=3)
    axis = normalize_dim(op, dim, input.ndim)
    return input, (axis if input.ndim else None)


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``exp(x) / sum(exp(x))`` along ``dim``: each slice becomes a probability distribution.

    ``dtype``, if given, casts the input first. (``_stacklevel`` only keeps positional arguments
    in PyTorch's order.)
    """
    input, axis = _softmax_args("softmax", input, dim, dtype)
    return Softmax.apply(input, axis)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``log(softmax(x))`` along ``dim``, computed stably (see :class:`LogSoftmax`)."""
    input, axis = _softmax_args("log_softmax", input, dim, dtype)
    return LogSoftmax.apply(input, axis)
