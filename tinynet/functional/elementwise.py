"""Elementwise ops: arithmetic, unary math, clamping, ``where``, comparisons and logic.

Binary ops broadcast as NumPy/PyTorch do; their backward returns gradients of the broadcast
shape and the engine sums them back to each input's shape (``autograd.unbroadcast``).
Operands go through :func:`as_operands`, the one place that applies PyTorch's type promotion
and raises the broadcasting error. Unary math ops that only make sense on reals (``exp``,
``log``, ``sin``, ...) turn integer tensors into the default float dtype first, as PyTorch does.

Each op is a ``Function`` (forward and backward on raw arrays, the gradient formula in its
docstring) followed by its lowercase wrapper with PyTorch's name and arguments.

Note: ``abs``, ``pow`` and ``clamp``'s ``min``/``max`` arguments shadow Python builtins in this
module, so the code below never calls those builtins.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import dtypes as _dt
from ..autograd import Function, is_grad_enabled
from ..kernels import activation as activation_kernels
from ..kernels.dispatch import uses_cuda
from ..recording import recordable
from ..tensor import Tensor

__all__ = [
    "add", "sub", "mul", "div", "true_divide", "neg", "pow", "exp", "log", "sqrt", "rsqrt", "abs",
    "square", "sign", "sin", "cos", "tanh", "sigmoid", "relu", "clamp", "clip", "maximum", "minimum",
    "where", "eq", "ne", "lt", "le", "gt", "ge", "logical_not", "logical_and", "logical_or",
]


# ------------------------------------------------------------------------------------ operands
def _broadcast_check(op: str, *shapes) -> None:
    try:
        np.broadcast_shapes(*shapes)  # shapes only: host-side metadata, no tensor data
    except ValueError:
        listed = " and ".join(str(tuple(s)) for s in shapes)
        raise RuntimeError(f"{op}: shapes {listed} cannot be broadcast together") from None


def _category(dtype) -> int:
    """PyTorch's dtype categories, lowest first: bool < integer < floating point."""
    return {"b": 0, "u": 1, "i": 1}.get(dtype.kind, 2)


def _promote_tensors(a: Tensor, b: Tensor):
    """PyTorch's result dtype of two tensors. A 0-d tensor (a loss, a learning rate) next to a
    tensor with dimensions acts like a Python number: it sets the dtype only when it is of a
    higher category, so ``float32 matrix * float64 0-d tensor`` stays float32."""
    if (a.ndim == 0) == (b.ndim == 0):
        return _dt.promote_types(a.dtype, b.dtype)
    dims, zero_d = (a, b) if b.ndim == 0 else (b, a)
    return zero_d.dtype if _category(zero_d.dtype) > _category(dims.dtype) else dims.dtype


def as_operands(op: str, a, b, floating: bool = False):
    """Make ``a`` and ``b`` ready for a binary op: at least one Tensor; Python numbers stay
    numbers (NumPy treats them as weakly typed); dtypes promoted as PyTorch does, casting the
    tensor that must change; shapes checked for broadcasting. ``floating=True`` (true division)
    also promotes integer results to the default float dtype."""
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError(f"{op}: expected at least one Tensor, got {type(a).__name__} and {type(b).__name__}")
    a, b = _as_tensor_or_number(op, a, b), _as_tensor_or_number(op, b, a)
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        dtype = _promote_tensors(a, b)
        if a.shape != b.shape:
            _broadcast_check(op, a.shape, b.shape)
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


def _tensor_input(op: str, x) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")
    return x


def _floating_input(op: str, x) -> Tensor:
    """``x`` as a floating-point tensor: integer and bool tensors become the default float dtype
    (``exp(int tensor)`` is float32 in PyTorch)."""
    x = _tensor_input(op, x)
    return x if x.dtype.kind == "f" else x.to(_dt.get_default_dtype())


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


def add(input, other, *, alpha=1):
    """``input + alpha * other`` with broadcasting."""
    a, b = as_operands("add", input, other)
    return Add.apply(a, b, alpha=alpha)


class Sub(Function):
    """z = a - alpha*b.  Backward: da = dz, db = -alpha*dz."""

    @staticmethod
    def forward(ctx, a, b, alpha=1):
        ctx.alpha = alpha
        return a - b if alpha == 1 else a - alpha * b

    @staticmethod
    def backward(ctx, grad):
        return grad, -grad if ctx.alpha == 1 else -ctx.alpha * grad


def sub(input, other, *, alpha=1):
    """``input - alpha * other`` with broadcasting."""
    a, b = as_operands("sub", input, other)
    return Sub.apply(a, b, alpha=alpha)


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


def mul(input, other):
    """``input * other`` with broadcasting."""
    a, b = as_operands("mul", input, other)
    return Mul.apply(a, b)


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


def div(input, other):
    """True division ``input / other``; integer inputs give a float result, as in PyTorch."""
    a, b = as_operands("div", input, other, floating=True)
    return Div.apply(a, b)


true_divide = div


class Neg(Function):
    """y = -x.  Backward: dx = -dy."""

    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, grad):
        return -grad


def neg(input):
    """``-input``."""
    return Neg.apply(_tensor_input("neg", input))


class Pow(Function):
    """z = a ** b.  Backward: da = dz * b * a**(b-1), exactly 0 where b == 0 (even at a == 0,
    where a**-1 = inf would give 0 * inf = NaN); db = dz * a**b * log(a), taken as 0 where a == 0
    (the limit for b > 0, as in PyTorch, instead of 0 * -inf = NaN)."""

    @staticmethod
    def forward(ctx, a, b):
        z = a ** b
        ctx.save_for_backward(a, b, z)
        return z

    @staticmethod
    def backward(ctx, grad):
        a, b, z = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        xp = ctx.xp
        grad_a = grad_b = None
        if need_a:
            if isinstance(b, numbers.Number):  # a Python exponent: decide on the host
                grad_a = xp.zeros_like(grad) if b == 0 else grad * b * a ** (b - 1)
            else:  # where b == 0 use a**1 instead of a**-1: b * a is then 0 even at a == 0
                grad_a = grad * b * a ** xp.where(b == 0, 1, b - 1)
        if need_b:
            a = xp.asarray(a, dtype=z.dtype)  # a Python base becomes an array, for where below
            log_a = xp.log(xp.where(a == 0, 1, a))  # log(1) = 0 stands in for the a == 0 limit
            grad_b = grad * z * log_a
        return grad_a, grad_b


def pow(input, exponent):
    """``input ** exponent``; either may be a tensor or a number."""
    a, b = as_operands("pow", input, exponent)
    if isinstance(a, Tensor) and a.dtype.kind in "iub" and isinstance(b, numbers.Integral) and b < 0:
        raise RuntimeError(f"pow: integers to negative integer powers are not allowed (exponent {b} "
                           f"with a {a.dtype} tensor)")
    return Pow.apply(a, b)


# ---------------------------------------------------------------------------------- unary math
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


def exp(input):
    """``e ** input``."""
    return Exp.apply(_floating_input("exp", input))


class Log(Function):
    """y = ln(x).  Backward: dx = dy / x."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.log(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / x


def log(input):
    """Natural logarithm (``-inf`` at 0, NaN below 0)."""
    return Log.apply(_floating_input("log", input))


class Sqrt(Function):
    """y = sqrt(x).  Backward: dx = dy / (2 * y)."""

    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad / (2 * y)


def sqrt(input):
    """Square root."""
    return Sqrt.apply(_floating_input("sqrt", input))


class Rsqrt(Function):
    """y = 1 / sqrt(x) = x**(-1/2).  Backward: dx = dy * (-1/2) x**(-3/2) = -dy * y**3 / 2."""

    @staticmethod
    def forward(ctx, x):
        y = 1 / ctx.xp.sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return -0.5 * grad * y * y * y


def rsqrt(input):
    """Reciprocal square root ``1 / sqrt(input)``."""
    return Rsqrt.apply(_floating_input("rsqrt", input))


class Abs(Function):
    """y = |x|.  Backward: dx = dy * sign(x); at the kink x = 0 the gradient is 0, as in PyTorch."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.abs(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.xp.sign(x)


def abs(input):
    """Absolute value (keeps integer dtypes)."""
    return Abs.apply(_tensor_input("abs", input))


class Square(Function):
    """y = x * x.  Backward: dx = 2 * x * dy."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * x * grad


def square(input):
    """``input * input`` (keeps integer dtypes)."""
    return Square.apply(_tensor_input("square", input))


class Sign(Function):
    """y = -1, 0 or +1 by the sign of x.  Backward: dx = 0 (y is piecewise constant; PyTorch
    also returns a zero gradient rather than none)."""

    @staticmethod
    def forward(ctx, x):
        return ctx.xp.sign(x)

    @staticmethod
    def backward(ctx, grad):
        return ctx.xp.zeros_like(grad)


def sign(input):
    """-1 for negative, 0 for zero, +1 for positive elements (same dtype as ``input``)."""
    return Sign.apply(_tensor_input("sign", input))


class Sin(Function):
    """y = sin(x).  Backward: dx = dy * cos(x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.sin(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.xp.cos(x)


def sin(input):
    """Sine (radians)."""
    return Sin.apply(_floating_input("sin", input))


class Cos(Function):
    """y = cos(x).  Backward: dx = -dy * sin(x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.cos(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return -grad * ctx.xp.sin(x)


def cos(input):
    """Cosine (radians)."""
    return Cos.apply(_floating_input("cos", input))


# ---------------------------------------------------------------------------------- activations
def _fused(*arrays) -> bool:
    """Whether an activation runs as one GPU kernel: float arrays on the CUDA path, C-contiguous,
    of one shape and dtype (a broadcast gradient, say, takes the array code)."""
    if not uses_cuda(arrays[0]):
        return False
    from ..kernels.cuda.activation import fusable
    return fusable(*arrays)


class Tanh(Function):
    """y = tanh(x).  Backward: dx = dy * (1 - y**2), from the output alone."""

    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        if _fused(y, grad):  # the same formula, one GPU kernel (kernels/cuda/activation.py)
            from ..kernels.cuda.activation import tanh_backward_cuda
            return tanh_backward_cuda(y, grad)
        if activation_kernels.fits(y, grad):  # the same formula as one compiled CPU loop
            return activation_kernels.tanh_backward_numba(y, grad)
        return grad * (1 - y * y)


def tanh(input):
    """Hyperbolic tangent, in (-1, 1)."""
    return Tanh.apply(_floating_input("tanh", input))


class Sigmoid(Function):
    """y = 1 / (1 + exp(-x)).  Backward: dx = dy * y * (1 - y), from the output alone.

    Computed as written, in place on one buffer (four passes, one allocation): for very
    negative x, exp(-x) overflows to inf and y becomes 1 / inf = 0, the right limit (in float32
    below x = -88, where the true value is under 1e-38), so the overflow warning is silenced.
    float32 on the CPU runs the same formula as one compiled loop with its own vectorised exp
    (``kernels/activation.py``; within a few units in the last place of this one).
    """

    @staticmethod
    def forward(ctx, x):
        xp = ctx.xp
        if _fused(x):  # the same four steps, one GPU kernel (kernels/cuda/activation.py)
            from ..kernels.cuda.activation import sigmoid_forward_cuda
            y = sigmoid_forward_cuda(x)
            ctx.save_for_backward(y)
            return y
        if activation_kernels.fits_sigmoid_forward(x):  # float32 on the CPU: one compiled loop
            y = activation_kernels.sigmoid_forward_numba(x)
            ctx.save_for_backward(y)
            return y
        y = xp.negative(x, out=xp.empty_like(x))  # out=: an array even for 0-d input
        with np.errstate(over="ignore"):
            xp.exp(y, out=y)
        y += 1
        xp.reciprocal(y, out=y)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        if _fused(y, grad):
            from ..kernels.cuda.activation import sigmoid_backward_cuda
            return sigmoid_backward_cuda(y, grad)
        if activation_kernels.fits(y, grad):  # the same three steps as one compiled CPU loop
            return activation_kernels.sigmoid_backward_numba(y, grad)
        dx = 1 - y
        dx *= y
        dx *= grad
        return dx


def sigmoid(input):
    """The logistic function ``1 / (1 + exp(-input))``, in (0, 1), stable for large ``|input|``."""
    return Sigmoid.apply(_floating_input("sigmoid", input))


class Relu(Function):
    """y = max(x, 0).  Backward: dx = dy where y > 0, else 0 (so relu'(0) = 0, as in PyTorch)."""

    @staticmethod
    def forward(ctx, x):
        if activation_kernels.fits(x):  # the same maximum as one compiled CPU loop, on all cores
            y = activation_kernels.relu_forward_numba(x)
        else:
            y = ctx.xp.maximum(x, 0)  # maximum, not where: NaN inputs stay NaN
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        if _fused(y, grad):  # compare and select in one GPU kernel (kernels/cuda/activation.py)
            from ..kernels.cuda.activation import relu_backward_cuda
            return relu_backward_cuda(y, grad)
        if activation_kernels.fits(y, grad):
            return activation_kernels.relu_backward_numba(y, grad)
        return ctx.xp.where(y > 0, grad, 0)


def relu(input, inplace=False):
    """``max(input, 0)`` elementwise (keeps integer dtypes).

    ``inplace=True`` overwrites ``input`` when no graph is being recorded for it; when one is,
    the result is computed out of place, since backward needs a tensor the graph still owns.
    """
    input = _tensor_input("relu", input)
    if inplace and not (input.requires_grad and is_grad_enabled()):
        _relu_in_place(input)
        return input
    return Relu.apply(input)


@recordable
def _relu_in_place(input: Tensor) -> None:
    """max(input, 0) written over ``input`` (recordable: compile_step replays the write)."""
    input.xp.maximum(input.data, 0, out=input.data)


# ---------------------------------------------------------------------------------- clamping
class Clamp(Function):
    """y = min(max(x, low), high), with ``low`` or ``high`` None for no bound.

    Backward: dx = dy where low <= x <= high (both ends included, as in PyTorch), else 0.
    Tensor bounds receive the rest: dlow = dy where x < low < high; dhigh = dy where x > high,
    or everywhere high < low (then y = high whatever x is).
    """

    @staticmethod
    def forward(ctx, x, low, high):
        xp = ctx.xp
        y = x
        if low is not None:
            y = xp.maximum(y, low)
        if high is not None:
            y = xp.minimum(y, high)
        ctx.save_for_backward(x, low, high)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, low, high = ctx.saved_tensors
        need_x, need_low, need_high = ctx.needs_input_grad
        xp = ctx.xp
        grad_x = grad_low = grad_high = None
        if need_x:
            inside = True  # & with a bool array broadcasts; at least one bound is given
            if low is not None:
                inside = inside & (x >= low)
            if high is not None:
                inside = inside & (x <= high)
            grad_x = xp.where(inside, grad, 0)
        if need_low:
            below = x < low
            if high is not None:
                below = below & (low < high)
            grad_low = xp.where(below, grad, 0)
        if need_high:
            above = x > high
            if low is not None:
                above = above | (high < low)
            grad_high = xp.where(above, grad, 0)
        return grad_x, grad_low, grad_high


def clamp(input, min=None, max=None):
    """Limit ``input`` to ``[min, max]``: ``minimum(maximum(input, min), max)``. Each bound is a
    number, a tensor (broadcast against ``input``) or None; if ``min > max`` the result is ``max``.
    """
    x = _tensor_input("clamp", input)
    if min is None and max is None:
        raise RuntimeError("clamp: at least one of 'min' or 'max' must not be None")
    # The result dtype comes from all three operands (clamp(int tensor, min=0.5) is float32):
    # promote x against each bound, then cast tensor bounds to x's final dtype.
    for bound in (min, max):
        if bound is not None:
            x, _ = as_operands("clamp", x, bound)
    low = None if min is None else as_operands("clamp", x, min)[1]
    high = None if max is None else as_operands("clamp", x, max)[1]
    return Clamp.apply(x, low, high)


clip = clamp


def _two_tensors(op: str, input, other):
    """``maximum``/``minimum`` take two tensors (not numbers), as in PyTorch."""
    for name, x in (("input", input), ("other", other)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{op}: expected {name} to be a Tensor, got {type(x).__name__}")
    return as_operands(op, input, other)


class Maximum(Function):
    """z = max(a, b) elementwise.  Backward: the larger input gets dz; at ties each gets dz / 2,
    as in PyTorch (the kink's gradient is split evenly)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return ctx.xp.maximum(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        xp = ctx.xp
        shared = xp.where(a == b, grad / 2, grad)
        return xp.where(a < b, 0, shared), xp.where(a > b, 0, shared)


def maximum(input, other):
    """Elementwise maximum of two tensors, with broadcasting (NaN if either is NaN)."""
    a, b = _two_tensors("maximum", input, other)
    return Maximum.apply(a, b)


class Minimum(Function):
    """z = min(a, b) elementwise.  Backward: the smaller input gets dz; at ties each gets dz / 2."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return ctx.xp.minimum(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        xp = ctx.xp
        shared = xp.where(a == b, grad / 2, grad)
        return xp.where(a > b, 0, shared), xp.where(a < b, 0, shared)


def minimum(input, other):
    """Elementwise minimum of two tensors, with broadcasting (NaN if either is NaN)."""
    a, b = _two_tensors("minimum", input, other)
    return Minimum.apply(a, b)


# ---------------------------------------------------------------------------------- selection
class Where(Function):
    """z = a where c is True, else b.  Backward: da = dz where c, else 0; db = dz where not c.

    The gradients are selected with ``where``, not multiplied by a 0/1 mask: a mask would turn an
    inf or NaN gradient in the unselected branch into 0 * inf = NaN.
    """

    @staticmethod
    def forward(ctx, condition, a, b):
        ctx.save_for_backward(condition)
        return ctx.xp.where(condition, a, b)

    @staticmethod
    def backward(ctx, grad):
        (condition,) = ctx.saved_tensors
        _, need_a, need_b = ctx.needs_input_grad
        xp = ctx.xp
        grad_a = xp.where(condition, grad, 0) if need_a else None
        grad_b = xp.where(condition, 0, grad) if need_b else None
        return None, grad_a, grad_b


def where(condition, input, other):
    """Elements of ``input`` where ``condition`` is True, of ``other`` elsewhere; all three
    broadcast together. ``input`` and ``other`` may be tensors or numbers."""
    if not isinstance(condition, Tensor):
        raise TypeError(f"where: expected condition to be a Tensor, got {type(condition).__name__}")
    if condition.dtype != _dt.bool_:
        raise RuntimeError(f"where: expected condition to be a bool tensor, got dtype {condition.dtype}")
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        # Two numbers: the first becomes a 0-d tensor, whose dtype follows tinynet.tensor's
        # rules (float32 for floats, int64 for ints, bool), then promotes with the second.
        from ..creation import tensor
        input = tensor(_as_tensor_or_number("where", input, condition), device=condition.device)
    a, b = as_operands("where", input, other)
    shapes = [condition.shape] + [x.shape for x in (a, b) if isinstance(x, Tensor)]
    if len(set(shapes)) > 1:
        _broadcast_check("where", *shapes)
    return Where.apply(condition, a, b)


# ---------------------------------------------------------------------------------- comparisons
class BoolOp(Function):
    """z = xp.<ufunc>(*inputs): a comparison (``less``, ``equal``, ...) or a logical op, giving a
    bool tensor. No backward: these are piecewise constant, and the engine never records bool
    outputs (PyTorch's comparisons do not require grad either)."""

    @staticmethod
    def forward(ctx, *inputs, ufunc):
        return getattr(ctx.xp, ufunc)(*inputs)


def _bool_op(op: str, ufunc: str, input, other):
    a, b = as_operands(op, input, other)  # compare in the promoted dtype, as PyTorch does
    return BoolOp.apply(a, b, ufunc=ufunc)


def eq(input, other):
    """``input == other`` elementwise, as a bool tensor (``other`` may be a number)."""
    return _bool_op("eq", "equal", input, other)


def ne(input, other):
    """``input != other`` elementwise, as a bool tensor."""
    return _bool_op("ne", "not_equal", input, other)


def lt(input, other):
    """``input < other`` elementwise, as a bool tensor."""
    return _bool_op("lt", "less", input, other)


def le(input, other):
    """``input <= other`` elementwise, as a bool tensor."""
    return _bool_op("le", "less_equal", input, other)


def gt(input, other):
    """``input > other`` elementwise, as a bool tensor."""
    return _bool_op("gt", "greater", input, other)


def ge(input, other):
    """``input >= other`` elementwise, as a bool tensor."""
    return _bool_op("ge", "greater_equal", input, other)


def logical_not(input):
    """True where ``input`` is zero (or False), as a bool tensor."""
    return BoolOp.apply(_tensor_input("logical_not", input), ufunc="logical_not")


def logical_and(input, other):
    """True where both are nonzero, as a bool tensor (``other`` may also be a number)."""
    return _bool_op("logical_and", "logical_and", input, other)


def logical_or(input, other):
    """True where either is nonzero, as a bool tensor (``other`` may also be a number)."""
    return _bool_op("logical_or", "logical_or", input, other)
