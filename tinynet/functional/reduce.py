"""Reductions: ``sum``, ``mean``, ``var``, ``std``, ``max``/``min``, ``amax``/``amin``,
``argmax``/``argmin``, ``logsumexp``.

A reduction collapses the axes named by ``dim`` (an int, a tuple/list of ints, or None for
all of them; negative dims count from the end). Its backward has one recurring step: the
output gradient has the *reduced* shape, so it is first reshaped to the ``keepdim=True``
shape (reduced axes kept as size 1) and then broadcast back over the input. What each input
element receives on top of that is what tells the reductions apart:

* sum: the output's gradient as it is (every element counted once);
* mean: divided by the number of elements averaged;
* max/min: only the element(s) that were picked.
"""
from __future__ import annotations

import builtins
import math
import numbers
import warnings
from collections import namedtuple

from .. import dtypes as _dt
from ..autograd import Function
from ..tensor import Tensor
from ..recording import recordable

__all__ = ["sum", "mean", "var", "std", "max", "min", "amax", "amin", "argmax", "argmin", "logsumexp"]

# What max(input, dim) and min(input, dim) return, as PyTorch's torch.return_types.max/min.
MaxResult = namedtuple("max", ["values", "indices"])
MinResult = namedtuple("min", ["values", "indices"])


# ------------------------------------------------------------------------------ dim handling
def _check_tensor(op: str, input) -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: expected a Tensor as input, got {type(input).__name__}")


def _is_int(d) -> bool:
    return isinstance(d, numbers.Integral) and not isinstance(d, bool)


def _wrap_dim(op: str, dim: int, ndim: int) -> int:
    """``dim`` as a non-negative axis. A 0-d tensor accepts 0 and -1, as in PyTorch."""
    size = builtins.max(ndim, 1)
    if not -size <= dim < size:
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor with {ndim} dimension(s) "
                         f"(expected to be in range of [{-size}, {size - 1}])")
    return dim % size


def _reduction_axes(op: str, dim, ndim: int) -> tuple:
    """Normalise ``dim`` (None, an int, or a tuple/list of ints) to a sorted tuple of axes.
    None and ``()`` mean every axis, as in PyTorch. A 0-d tensor has no axis to reduce: its
    dims 0 and -1 are accepted and give ``()``."""
    if dim is None:
        dims = ()
    elif _is_int(dim):
        dims = (dim,)
    elif isinstance(dim, (tuple, list)) and builtins.all(_is_int(d) for d in dim):
        dims = tuple(dim)
    else:
        raise TypeError(f"{op}: dim must be an int, a tuple of ints or None, got {dim!r}")
    if not dims:
        return tuple(range(ndim))
    axes = [_wrap_dim(op, d, ndim) for d in dims]
    for a in axes:
        if axes.count(a) > 1:
            raise RuntimeError(f"{op}: dim {a} appears multiple times in the list of dims {dims}")
    return tuple(sorted(axes)) if ndim > 0 else ()


def _single_axis(op: str, dim, ndim: int) -> int:
    """The one axis of ``max(input, dim)``, ``argmax(input, dim)``...; ``dim`` must be an int."""
    if not _is_int(dim):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    return _wrap_dim(op, dim, ndim)


def _kept_shape(shape: tuple, axes: tuple) -> tuple:
    """The output shape with ``keepdim=True``: reduced axes kept with size 1. A gradient of
    this shape broadcasts back over the input."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _reduced_count(shape: tuple, axes: tuple) -> int:
    """How many input elements are reduced into each output element."""
    return math.prod(shape[a] for a in axes)


def _check_not_empty(op: str, shape: tuple, axes: tuple, dim_given: bool) -> None:
    """max/min and friends have no value over zero elements: raise as PyTorch does."""
    if not dim_given and math.prod(shape) == 0:
        raise RuntimeError(f"{op}: expected a reduction dim to be specified for an empty tensor of "
                           f"shape {tuple(shape)}")
    for a in axes:
        if shape[a] == 0:
            raise IndexError(f"{op}: expected reduction dim {a} to have non-zero size, got a tensor "
                             f"of shape {tuple(shape)}")


# ------------------------------------------------------------------------------ sum and mean
class Sum(Function):
    """y = sum of x over ``axes``.  Backward: each x contributed once to its sum, so
    dx = dy, broadcast back over the reduced axes."""

    @staticmethod
    def forward(ctx, x, axes, keepdim, dtype):
        ctx.in_shape, ctx.kept_shape = x.shape, _kept_shape(x.shape, axes)
        return x.astype(dtype, copy=False).sum(axis=axes, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        return ctx.xp.broadcast_to(grad.reshape(ctx.kept_shape), ctx.in_shape)


class Mean(Function):
    """y = sum of x over ``axes`` / n, n the number of elements averaged.
    Backward: dx = dy / n, broadcast back over the reduced axes."""

    @staticmethod
    def forward(ctx, x, axes, keepdim, dtype):
        ctx.in_shape, ctx.kept_shape = x.shape, _kept_shape(x.shape, axes)
        ctx.count = _reduced_count(x.shape, axes)
        return x.astype(dtype, copy=False).mean(axis=axes, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        # Broadcast first, divide second: an empty input then divides an empty array by 0.
        return ctx.xp.broadcast_to(grad.reshape(ctx.kept_shape), ctx.in_shape) / ctx.count


def sum(input, dim=None, keepdim=False, *, dtype=None):
    """Sum of ``input`` over ``dim`` (an int, a tuple of ints, or None for all dims).

    Integer and bool inputs sum to int64, as in PyTorch; ``dtype`` casts the input before
    summing. Backward: the output's gradient is copied to every element that was summed.
    """
    _check_tensor("sum", input)
    axes = _reduction_axes("sum", dim, input.ndim)
    if dtype is None:
        dtype = input.dtype if input.dtype.kind in "fc" else _dt.int64
    return Sum.apply(input, axes=axes, keepdim=keepdim, dtype=_dt.to_dtype(dtype))


def mean(input, dim=None, keepdim=False, *, dtype=None):
    """Mean of ``input`` over ``dim`` (an int, a tuple of ints, or None for all dims).

    The input (or ``dtype``, which casts it first) must be floating point, as in PyTorch.
    Backward: each averaged element receives the output's gradient divided by their count.
    """
    _check_tensor("mean", input)
    dtype = input.dtype if dtype is None else _dt.to_dtype(dtype)
    if dtype.kind not in "fc":
        which = "input" if dtype == input.dtype else "the dtype argument"
        raise RuntimeError(f"mean: could not infer output dtype: {which} must be a floating point "
                           f"dtype, got {dtype} (pass dtype=tinynet.float32, or call .float() first)")
    axes = _reduction_axes("mean", dim, input.ndim)
    return Mean.apply(input, axes=axes, keepdim=keepdim, dtype=dtype)


# ------------------------------------------------------------------------------ var and std
def _centered_and_variance(op: str, x, axes, correction):
    """Shared forward of var and std: x - mean, the variance (with kept dims), and the
    divisor n - correction (clamped at 0, where the variance becomes inf or nan)."""
    n = _reduced_count(x.shape, axes)
    if n - correction <= 0:
        warnings.warn(f"{op}: degrees of freedom is <= 0 (reducing {n} element(s) with correction="
                      f"{correction}); the result is inf or nan", stacklevel=5)
    dof = builtins.max(0, n - correction)
    centered = x - x.mean(axis=axes, keepdims=True)
    variance = (centered * centered).sum(axis=axes, keepdims=True) / dof
    return centered, variance, dof


def _variance_input_grad(grad_var, centered, dof):
    """d var / dx = 2 (x - mean) / dof, times the incoming gradient (with kept dims). The
    terms through the mean cancel because the deviations sum to zero. With dof = 0 the
    variance is inf (nan for a constant input), and so is its gradient, as in PyTorch."""
    scale = 2.0 / dof if dof > 0 else math.inf
    return grad_var * centered * scale


class Var(Function):
    """y = sum((x - mean)^2) / (n - correction) over ``axes``.
    Backward: dx = dy * 2 (x - mean) / (n - correction)."""

    @staticmethod
    def forward(ctx, x, axes, keepdim, correction):
        centered, variance, ctx.dof = _centered_and_variance("var", x, axes, correction)
        ctx.save_for_backward(centered)
        ctx.kept_shape = variance.shape
        return variance if keepdim else ctx.xp.squeeze(variance, axis=axes)

    @staticmethod
    def backward(ctx, grad):
        (centered,) = ctx.saved_tensors
        return _variance_input_grad(grad.reshape(ctx.kept_shape), centered, ctx.dof)


class Std(Function):
    """y = sqrt(var(x)).  Backward: dvar = dy / (2 y), then var's backward:
    dx = dy * (x - mean) / ((n - correction) * y). Where y == 0 (all elements equal) the
    gradient is taken as 0, as in PyTorch, instead of 0/0."""

    @staticmethod
    def forward(ctx, x, axes, keepdim, correction):
        xp = ctx.xp
        centered, variance, ctx.dof = _centered_and_variance("std", x, axes, correction)
        std = xp.sqrt(variance)
        ctx.save_for_backward(centered, std)
        return std if keepdim else xp.squeeze(std, axis=axes)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        centered, std = ctx.saved_tensors
        zero = std == 0
        grad_var = xp.where(zero, 0, grad.reshape(std.shape) / (2 * xp.where(zero, 1, std)))
        return _variance_input_grad(grad_var, centered, ctx.dof)


def _var_args(op: str, input, dim, unbiased, correction):
    _check_tensor(op, input)
    if input.dtype.kind not in "fc":
        raise RuntimeError(f"{op}: only floating point dtypes are supported, got {input.dtype}")
    if correction is None:
        correction = 1 if unbiased else 0
    return _reduction_axes(op, dim, input.ndim), correction


def var(input, dim=None, unbiased=True, keepdim=False, *, correction=None):
    """Variance of ``input`` over ``dim``: ``sum((x - mean)^2) / (n - correction)``.

    ``correction`` defaults to 1 (Bessel's unbiased estimate), or 0 with ``unbiased=False``;
    when given, it wins over ``unbiased``. Backward: dx = dy * 2 (x - mean) / (n - correction).
    """
    axes, correction = _var_args("var", input, dim, unbiased, correction)
    return Var.apply(input, axes=axes, keepdim=keepdim, correction=correction)


def std(input, dim=None, unbiased=True, keepdim=False, *, correction=None):
    """Standard deviation of ``input`` over ``dim``: ``sqrt(var(input, ...))``; arguments as
    in :func:`var`. Backward: dx = dy * (x - mean) / ((n - correction) * std), 0 where std is 0.
    """
    axes, correction = _var_args("std", input, dim, unbiased, correction)
    return Std.apply(input, axes=axes, keepdim=keepdim, correction=correction)


# ------------------------------------------------------------------------------ amax and amin
def _split_among_ties(grad, ties, axes):
    """Spread each output's gradient evenly over the input positions that hold the extremum
    (``ties``), so that a max over k equal values sends dy / k to each of them."""
    return grad * ties / ties.sum(axis=axes, keepdims=True)


class Amax(Function):
    """y = max of x over ``axes``.  Backward: dy goes to the positions that hold the max,
    split evenly among ties: dx = dy * [x == y] / count(x == y)."""

    reduction = "max"  # the array method this op applies; Amin reuses everything else

    @staticmethod
    def forward(ctx, x, axes, keepdim):
        y = getattr(x, ctx.fn_cls.reduction)(axis=axes, keepdims=True)
        ctx.save_for_backward(x, y)
        ctx.axes = axes
        return y if keepdim else ctx.xp.squeeze(y, axis=axes)

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        return _split_among_ties(grad.reshape(y.shape), x == y, ctx.axes)


class Amin(Amax):
    """y = min of x over ``axes``.  Backward: dy goes to the positions that hold the min,
    split evenly among ties: dx = dy * [x == y] / count(x == y)."""

    reduction = "min"


def amax(input, dim=(), keepdim=False):
    """Maximum of ``input`` over ``dim`` (an int or a tuple of ints; ``()`` means all dims).

    Backward: the gradient is split evenly among the elements equal to the maximum.
    """
    _check_tensor("amax", input)
    axes = _reduction_axes("amax", dim, input.ndim)
    _check_not_empty("amax", input.shape, axes, dim_given=bool(dim))
    return Amax.apply(input, axes=axes, keepdim=keepdim)


def amin(input, dim=(), keepdim=False):
    """Minimum of ``input`` over ``dim`` (an int or a tuple of ints; ``()`` means all dims).

    Backward: the gradient is split evenly among the elements equal to the minimum.
    """
    _check_tensor("amin", input)
    axes = _reduction_axes("amin", dim, input.ndim)
    _check_not_empty("amin", input.shape, axes, dim_given=bool(dim))
    return Amin.apply(input, axes=axes, keepdim=keepdim)


# ------------------------------------------------------------------------------ max and min along a dim
def _pick_along(ctx, x, axis, keepdim, arg_fn):
    """Forward of max/min along one axis: (values, int64 indices), ``arg_fn`` (argmax or
    argmin) choosing the first occurrence among ties."""
    xp = ctx.xp
    x1 = x.reshape(x.shape or (1,))  # a 0-d tensor is picked from like a 1-element vector
    indices = xp.expand_dims(arg_fn(x1, axis=axis), axis).astype(_dt.int64, copy=False)
    values = xp.take_along_axis(x1, indices, axis=axis)
    ctx.save_for_backward(indices)
    ctx.axis, ctx.in_shape = axis, x.shape
    if not keepdim or x.ndim == 0:
        values, indices = xp.squeeze(values, axis=axis), xp.squeeze(indices, axis=axis)
    return values, indices


def _grad_to_indices(ctx, grad):
    """Backward of picking ``x[..., index, ...]`` along an axis: the whole gradient lands at
    the picked index, zero elsewhere."""
    xp = ctx.xp
    (indices,) = ctx.saved_tensors  # keepdim shape: size 1 along the axis
    length = ctx.in_shape[ctx.axis] if ctx.in_shape else 1
    positions = xp.arange(length).reshape([-1 if a == ctx.axis else 1 for a in range(indices.ndim)])
    picked = positions == indices  # one True per output, along the axis
    return xp.where(picked, grad.reshape(indices.shape), 0).reshape(ctx.in_shape)


class MaxAlongDim(Function):
    """(values, indices) = max of x along one axis and where it is (first one among ties).
    Backward: dx = dy at the returned index, 0 elsewhere (as in PyTorch: not split)."""

    @staticmethod
    def forward(ctx, x, axis, keepdim):
        return _pick_along(ctx, x, axis, keepdim, ctx.xp.argmax)

    @staticmethod
    def backward(ctx, grad_values, grad_indices):
        return _grad_to_indices(ctx, grad_values)


class MinAlongDim(Function):
    """(values, indices) = min of x along one axis and where it is (first one among ties).
    Backward: dx = dy at the returned index, 0 elsewhere (as in PyTorch: not split)."""

    @staticmethod
    def forward(ctx, x, axis, keepdim):
        return _pick_along(ctx, x, axis, keepdim, ctx.xp.argmin)

    @staticmethod
    def backward(ctx, grad_values, grad_indices):
        return _grad_to_indices(ctx, grad_values)


def max(input, dim=None, keepdim=False):
    """Three forms, as in PyTorch:

    * ``max(input)``: the largest element (a 0-d tensor); backward splits the gradient evenly
      among ties, like :func:`amax`.
    * ``max(input, dim, keepdim=False)``: a namedtuple ``(values, indices)`` along ``dim``
      (an int); indices are int64, first occurrence among ties; backward sends the gradient
      to the returned index only.
    * ``max(input, other)`` with a Tensor ``other``: the elementwise ``maximum``.
    """
    return _extreme("max", "maximum", Amax, MaxAlongDim, MaxResult, input, dim, keepdim)


def min(input, dim=None, keepdim=False):
    """Three forms, as in PyTorch:

    * ``min(input)``: the smallest element (a 0-d tensor); backward splits the gradient
      evenly among ties, like :func:`amin`.
    * ``min(input, dim, keepdim=False)``: a namedtuple ``(values, indices)`` along ``dim``
      (an int); indices are int64, first occurrence among ties; backward sends the gradient
      to the returned index only.
    * ``min(input, other)`` with a Tensor ``other``: the elementwise ``minimum``.
    """
    return _extreme("min", "minimum", Amin, MinAlongDim, MinResult, input, dim, keepdim)


def _extreme(op, elementwise, over_all, along_dim, result, input, dim, keepdim):
    """The shared body of :func:`max` and :func:`min` (``op`` names the error messages)."""
    _check_tensor(op, input)
    if isinstance(dim, Tensor):
        from .. import functional  # the elementwise op; looked up here, when the package is complete
        return getattr(functional, elementwise)(input, dim)
    if dim is None:
        if keepdim:
            raise TypeError(f"{op}: keepdim=True needs a dim")
        _check_not_empty(op, input.shape, tuple(range(input.ndim)), dim_given=False)
        return over_all.apply(input, axes=tuple(range(input.ndim)), keepdim=False)
    axis = _single_axis(op, dim, input.ndim)
    _check_not_empty(op, input.shape, (axis,) if input.ndim else (), dim_given=True)
    return result(*along_dim.apply(input, axis=axis, keepdim=keepdim))


# ------------------------------------------------------------------------------ argmax and argmin
@recordable
def _arg_extremum(op: str, input, dim, keepdim):
    """Index (int64) of the first max/min: of the flattened tensor when ``dim`` is None
    (with ``keepdim`` giving shape (1, ..., 1)), else along ``dim``. Not differentiable."""
    _check_tensor(op, input)
    x, xp = input.data, input.xp
    arg_fn = getattr(xp, op)  # op is "argmax" or "argmin", named as in NumPy/CuPy
    if dim is None:
        _check_not_empty(op, x.shape, tuple(range(x.ndim)), dim_given=True)
        index = arg_fn(x.reshape(-1))
        out_shape = (1,) * x.ndim if keepdim else ()
    else:
        axis = _single_axis(op, dim, x.ndim)
        _check_not_empty(op, x.shape, (axis,) if x.ndim else (), dim_given=True)
        index = arg_fn(x.reshape(x.shape or (1,)), axis=axis)
        out_shape = _kept_shape(x.shape, (axis,)) if keepdim else index.shape
    return Tensor._wrap(xp.asarray(index).astype(_dt.int64, copy=False).reshape(out_shape))


def argmax(input, dim=None, keepdim=False):
    """Index (int64) of the first maximum of ``input``, flattened when ``dim`` is None, else
    along ``dim``. Indices are not differentiable, so there is no backward."""
    return _arg_extremum("argmax", input, dim, keepdim)


def argmin(input, dim=None, keepdim=False):
    """Index (int64) of the first minimum of ``input``, flattened when ``dim`` is None, else
    along ``dim``. Indices are not differentiable, so there is no backward."""
    return _arg_extremum("argmin", input, dim, keepdim)


# ------------------------------------------------------------------------------ logsumexp
class Logsumexp(Function):
    """y = log(sum(exp(x))) over ``axes``, computed as m + log(sum(exp(x - m))) with m the
    max of x (taken as 0 where it is infinite), so exp never overflows and rows of -inf give
    -inf. Backward: dx = dy * exp(x - y), the softmax of x over the reduced axes."""

    @staticmethod
    def forward(ctx, x, axes, keepdim):
        xp = ctx.xp
        if x.size == 0:  # max has no value over nothing; log(sum of nothing) = -inf anyway
            shift = xp.zeros(_kept_shape(x.shape, axes), x.dtype)
        else:
            shift = x.max(axis=axes, keepdims=True)
            shift = xp.where(xp.isinf(shift), 0, shift)  # inf - inf would be nan
        y = xp.log(xp.exp(x - shift).sum(axis=axes, keepdims=True)) + shift
        ctx.save_for_backward(x, y)
        return y if keepdim else xp.squeeze(y, axis=axes)

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        return grad.reshape(y.shape) * ctx.xp.exp(x - y)


def logsumexp(input, dim, keepdim=False):
    """``log(sum(exp(input)))`` over ``dim`` (an int or a tuple of ints), computed stably.

    Integer inputs give the default float dtype. Backward: dx = dy * softmax(x) over ``dim``.
    """
    _check_tensor("logsumexp", input)
    if dim is None:
        raise TypeError("logsumexp: dim must be an int or a tuple of ints, got None")
    axes = _reduction_axes("logsumexp", dim, input.ndim)
    if input.dtype.kind not in "fc":
        input = Tensor._wrap(input.data.astype(_dt.get_default_dtype()))  # ints carry no gradient
    return Logsumexp.apply(input, axes=axes, keepdim=keepdim)
