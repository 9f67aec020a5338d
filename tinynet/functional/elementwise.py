"""Elementwise ops: arithmetic, unary math, comparisons, ``where``.

Binary ops broadcast as NumPy/PyTorch do; their backward returns gradients of the broadcast
shape and the engine sums them back to each input's shape (``autograd.unbroadcast``).
Operands go through :func:`as_operands`, the one place that applies PyTorch's type promotion
and raises the broadcasting error.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import dtypes as _dt
from ..autograd import Function
from ..tensor import Tensor

__all__ = ["add", "sub", "mul", "div", "true_divide", "neg", "pow", "exp"]


def _broadcast_check(op: str, a: Tensor, b: Tensor) -> None:
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise RuntimeError(f"{op}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be broadcast "
                           "together") from None


def as_operands(op: str, a, b, floating: bool = False):
    """Make ``a`` and ``b`` ready for a binary op: at least one Tensor; Python numbers stay
    numbers (NumPy treats them as weakly typed); dtypes promoted as PyTorch does, casting the
    tensor that must change; shapes checked for broadcasting. ``floating=True`` (true division)
    also promotes integer results to the default float dtype."""
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError(f"{op}: expected at least one Tensor, got {type(a).__name__} and {type(b).__name__}")
    a, b = _as_tensor_or_number(op, a, b), _as_tensor_or_number(op, b, a)
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        dtype = _dt.promote_types(a.dtype, b.dtype)
        if a.shape != b.shape:
            _broadcast_check(op, a, b)
    else:
        t, s = (a, b) if isinstance(a, Tensor) else (b, a)
        dtype = _dt.scalar_result_dtype(t.dtype, s)
    if floating and dtype.kind != "f":
        dtype = _dt.get_default_dtype()
    if isinstance(a, Tensor) and a.dtype != dtype:
        a = a.to(dtype)
    if isinstance(b, Tensor) and b.dtype != dtype:
        b = b.to(dtype)
    return a, b


def _as_tensor_or_number(op: str, x, other):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (numbers.Number, np.bool_)) and not isinstance(x, complex):
        return x
    if isinstance(x, np.ndarray):
        from ..creation import tensor
        return tensor(x, device=other.device)
    raise TypeError(f"{op}: expected a Tensor or a number, got {type(x).__name__}")


# ---------------------------------------------------------------------------------- arithmetic
class Add(Function):
    """z = a + alpha*b.  Backward: da = dz, db = alpha*dz (summed over broadcast dims)."""

    @staticmethod
    def forward(ctx, a, b, alpha=1):
        ctx.alpha = alpha
        return a + b if alpha == 1 else a + alpha * b

    @staticmethod
    def backward(ctx, grad):
        return grad, (grad if ctx.alpha == 1 else ctx.alpha * grad)


class Sub(Function):
    """z = a - alpha*b.  Backward: da = dz, db = -alpha*dz."""

    @staticmethod
    def forward(ctx, a, b, alpha=1):
        ctx.alpha = alpha
        return a - b if alpha == 1 else a - alpha * b

    @staticmethod
    def backward(ctx, grad):
        return grad, -grad if ctx.alpha == 1 else -ctx.alpha * grad


class Mul(Function):
    """z = a * b.  Backward: da = dz * b, db = dz * a."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        return (grad * b if need_a else None), (grad * a if need_b else None)


class Div(Function):
    """z = a / b.  Backward: da = dz / b, db = -dz * a / b**2."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        return (grad / b if need_a else None), (-grad * a / (b * b) if need_b else None)


class Neg(Function):
    """y = -x.  Backward: dx = -dy."""

    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, grad):
        return -grad


class Pow(Function):
    """z = a ** b.  Backward: da = dz * b * a**(b-1); db = dz * a**b * log(a), taken as 0 where
    a == 0 (the limit PyTorch uses, instead of 0 * -inf = NaN)."""

    @staticmethod
    def forward(ctx, a, b):
        z = a ** b
        ctx.save_for_backward(a, b, z)
        return z

    @staticmethod
    def backward(ctx, grad):
        a, b, z = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        grad_a = grad_b = None
        if need_a:
            grad_a = grad * b * a ** (b - 1) if not isinstance(b, numbers.Number) or b != 0 else grad * 0
        if need_b:
            xp = ctx.xp
            safe_log = xp.log(xp.where(a == 0, 1, a))
            grad_b = grad * z * safe_log
        return grad_a, grad_b


class Exp(Function):
    """y = exp(x).  Backward: dx = dy * y (exp is its own derivative)."""

    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y


def add(input, other, *, alpha=1):
    """``input + alpha * other`` with broadcasting."""
    a, b = as_operands("add", input, other)
    return Add.apply(a, b, alpha=alpha)


def sub(input, other, *, alpha=1):
    """``input - alpha * other`` with broadcasting."""
    a, b = as_operands("sub", input, other)
    return Sub.apply(a, b, alpha=alpha)


def mul(input, other):
    """``input * other`` with broadcasting."""
    a, b = as_operands("mul", input, other)
    return Mul.apply(a, b)


def div(input, other):
    """True division ``input / other``; integer inputs give a float result, as in PyTorch."""
    a, b = as_operands("div", input, other, floating=True)
    return Div.apply(a, b)


true_divide = div


def neg(input):
    """``-input``."""
    return Neg.apply(input)


def pow(input, exponent):
    """``input ** exponent``; either may be a tensor or a number."""
    a, b = as_operands("pow", input, exponent)
    return Pow.apply(a, b)


def exp(input):
    """``e ** input``."""
    return Exp.apply(input)
