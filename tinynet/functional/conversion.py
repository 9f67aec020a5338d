"""Ops that change a tensor's dtype or device, or copy it: differentiable, so that gradients
flow back across ``x.double()`` or ``x.to('cuda')``."""
from __future__ import annotations

from .. import backend
from ..autograd import Function

__all__ = ["cast", "to_device", "clone"]


class Cast(Function):
    """y = x converted to ``dtype``.  Backward: dx = dy converted back to x's dtype."""

    @staticmethod
    def forward(ctx, x, dtype):
        ctx.input_dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad.astype(ctx.input_dtype), None


class ToDevice(Function):
    """y = x copied to ``device``.  Backward: dx = dy copied back to x's device."""

    @staticmethod
    def forward(ctx, x, device):
        ctx.input_device = backend.device_of(x)
        return backend.to_device(x, device)

    @staticmethod
    def backward(ctx, grad):
        return backend.to_device(grad, ctx.input_device), None


class Clone(Function):
    """y = a copy of x.  Backward: dx = dy."""

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, grad):
        return grad


def cast(input, dtype):
    """``input`` converted to ``dtype`` (what ``Tensor.to(dtype)`` calls)."""
    return Cast.apply(input, dtype)


def to_device(input, device):
    """``input`` copied to ``device`` (what ``Tensor.to(device)`` calls)."""
    return ToDevice.apply(input, backend.device(device))


def clone(input):
    """A copy of ``input`` that stays in the graph."""
    return Clone.apply(input)
