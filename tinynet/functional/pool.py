"""2-d pooling: max, average, and adaptive average.

* ``max_pool2d`` keeps the largest value of each window and remembers where it was (the
  argmax, ``tinynet/kernels/pool.py``); the backward pass sends each output's gradient to that
  one input element.
* ``avg_pool2d`` is a convolution with a constant kernel: im2col, then the mean of each
  column; its backward spreads each output's gradient evenly over its window with col2im.
* ``adaptive_avg_pool2d`` picks the windows from the output size; each output row averages a
  range of input rows and each output column a range of input columns, so the whole op is two
  small matrix products ``A_h @ x @ A_w.T``; its backward is ``A_h.T @ dY @ A_w``.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Function
from ..kernels import gemm
from ..kernels.im2col import col2im, im2col
from ..kernels.pool import max_pool2d_backward, max_pool2d_forward
from ..tensor import Tensor
from .conv import _pair

__all__ = ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"]


def _batched(x):
    """Pooling works on (N, C, H, W); an unbatched (C, H, W) input becomes a batch of one."""
    return (x[None], True) if x.ndim == 3 else (x, False)


# ------------------------------------------------------------------------------------ functions
class MaxPool2d(Function):
    """y[n, c, oh, ow] = max of the window of x at (oh, ow) (padding counts as -inf).

    Backward: dx is zero except at each window's argmax, which receives dy of that window;
    an element that is the maximum of several overlapping windows receives the sum.
    Returns ``(y, argmax)``; ``argmax`` is an integer output and carries no gradient."""

    @staticmethod
    def forward(ctx, x, *, kernel_size, stride, padding, dilation):
        x, ctx.unbatched = _batched(x)
        out, argmax = max_pool2d_forward(x, kernel_size, stride, padding, dilation)
        ctx.save_for_backward(argmax)
        ctx.x_shape, ctx.geometry = x.shape, (kernel_size, stride, padding, dilation)
        return (out[0], argmax[0]) if ctx.unbatched else (out, argmax)

    @staticmethod
    def backward(ctx, grad, _grad_argmax):
        (argmax,) = ctx.saved_tensors
        if ctx.unbatched:
            grad = grad[None]
        grad_x = max_pool2d_backward(grad, argmax, ctx.x_shape, *ctx.geometry)
        return grad_x[0] if ctx.unbatched else grad_x


class AvgPool2d(Function):
    """y[n, c, oh, ow] = (sum of the window of x at (oh, ow)) / divisor[oh, ow].

    Backward: every element of a window receives dy / divisor of that window (col2im adds the
    shares of overlapping windows)."""

    @staticmethod
    def forward(ctx, x, *, kernel_size, stride, padding, divisor):
        x, ctx.unbatched = _batched(x)
        n, c, height, width = x.shape
        planes_shape = (n * c, 1, height, width)  # pool each channel plane on its own
        cols = im2col(x.reshape(planes_shape), kernel_size, stride, padding, (1, 1))  # (kh*kw, N*C*OH*OW)
        out = cols.sum(axis=0).reshape(n, c, *divisor.shape) / divisor
        ctx.save_for_backward(divisor)
        ctx.geometry = (kernel_size, stride, padding, (1, 1))
        ctx.planes_shape, ctx.x_shape = planes_shape, x.shape
        return out[0] if ctx.unbatched else out

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        (divisor,) = ctx.saved_tensors
        share = (grad / divisor).reshape(1, -1)
        window = ctx.geometry[0][0] * ctx.geometry[0][1]
        grad_cols = xp.broadcast_to(share, (window, share.shape[1]))
        grad_x = col2im(grad_cols, ctx.planes_shape, *ctx.geometry).reshape(ctx.x_shape)
        return grad_x[0] if ctx.unbatched else grad_x


class AdaptiveAvgPool2d(Function):
    """y = A_h @ x @ A_w.T over the last two axes, where row i of A_h (OH, H) holds
    1/(end_i - start_i) on the input rows [start_i, end_i) of output row i (A_w likewise).

    Backward: dx = A_h.T @ dy @ A_w."""

    @staticmethod
    def forward(ctx, x, *, output_size):
        xp = ctx.xp
        rows = xp.asarray(_averaging_matrix(x.shape[-2], output_size[0]), dtype=x.dtype)
        columns = xp.asarray(_averaging_matrix(x.shape[-1], output_size[1]), dtype=x.dtype)
        ctx.save_for_backward(rows, columns)
        return gemm.matmul(xp, gemm.matmul(xp, rows, x), columns.T)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        rows, columns = ctx.saved_tensors
        return gemm.matmul(xp, gemm.matmul(xp, rows.T, grad), columns)


def _averaging_matrix(size: int, out: int) -> np.ndarray:
    """(out, size) matrix whose row i averages input indices ``[floor(i*size/out),
    ceil((i+1)*size/out))``: PyTorch's adaptive pooling windows (they may overlap)."""
    i = np.arange(out)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)  # ceil division
    index = np.arange(size)
    inside = (index >= start[:, None]) & (index < end[:, None])
    return inside / (end - start)[:, None]


# ---------------------------------------------------------------------------- argument checks
def _check_input(op: str, input) -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: expected input to be a Tensor, got {type(input).__name__}")
    if input.ndim not in (3, 4) or 0 in input.shape[-3:]:
        raise RuntimeError(f"{op}: expected a 3D (C, H, W) or 4D (N, C, H, W) input with non-zero sizes "
                           f"except the batch dimension, but got input of size {list(input.shape)}")
    if input.dtype.kind != "f":
        raise RuntimeError(f"{op}: expected a floating-point input, but got dtype {input.dtype}")


def _pool_output_size(size, kernel, stride, pad, dilation, ceil_mode) -> int:
    """PyTorch's pooling output size: floor (or ceil) of ``(size + 2*pad - span)/stride`` + 1, where
    ``span = dilation*(kernel-1) + 1``; with ceil_mode the last window must start inside the
    input or the left padding, never in the right padding."""
    span = dilation * (kernel - 1) + 1
    numerator = size + 2 * pad - span + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _pool_geometry(op, input, kernel_size, stride, padding, dilation, ceil_mode):
    """Check the pooling arguments as PyTorch does and return ``(kernel, stride, padding,
    dilation, (OH, OW))`` with ``padding`` as ``((top, bottom), (left, right))``: ceil_mode's
    extra last window is covered by extra padding at the bottom/right."""
    kernel = _pair(op, "kernel_size", kernel_size)
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
        else _pair(op, "stride", stride)
    pad = _pair(op, "padding", padding)
    dilation = _pair(op, "dilation", dilation)
    if min(kernel) <= 0:
        raise RuntimeError(f"{op}: kernel size should be greater than zero, but got kernel_size={kernel}")
    if min(stride) <= 0:
        raise RuntimeError(f"{op}: stride should be greater than zero, but got stride={stride}")
    if min(dilation) <= 0:
        raise RuntimeError(f"{op}: dilation should be greater than zero, but got dilation={dilation}")
    if min(pad) < 0:
        raise RuntimeError(f"{op}: pad must be non-negative, but got padding={pad}")
    if pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:
        raise RuntimeError(f"{op}: pad should be at most half of kernel size, but got padding={pad} and "
                           f"kernel_size={kernel}")
    size = input.shape[-2:]
    out = tuple(_pool_output_size(*args, ceil_mode) for args in zip(size, kernel, stride, pad, dilation))
    if min(out) < 1:
        planes = input.shape[-3]
        raise RuntimeError(f"{op}: given input size ({planes}x{size[0]}x{size[1]}), calculated output size "
                           f"({planes}x{out[0]}x{out[1]}) is too small (kernel_size={kernel}, stride={stride}, "
                           f"padding={pad}, dilation={dilation})")
    # Padding at the bottom/right: p, or more when ceil_mode adds a window that needs it.
    after = [max(p, (o - 1) * s + d * (k - 1) + 1 - n - p)
             for n, k, s, p, d, o in zip(size, kernel, stride, pad, dilation, out)]
    padding_pairs = ((pad[0], after[0]), (pad[1], after[1]))
    return kernel, stride, padding_pairs, dilation, out


# ------------------------------------------------------------------------------------- wrappers
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """2-d max pooling over an (N, C, H, W) or (C, H, W) input.

    Args:
        kernel_size: int or (kH, kW).
        stride: int or (sH, sW); defaults to ``kernel_size``.
        padding: int or (pH, pW), at most half the kernel size; padded positions count as -inf.
        dilation: spacing between window elements.
        ceil_mode: round the output size up, adding a last, partial window.
        return_indices: also return the argmax of each window, as the flat index ``h*W + w``
            into its input plane (int64), like PyTorch.

    Returns:
        (N, C, OH, OW), or ``(output, indices)`` with ``return_indices=True``.

    Backward: each output's gradient goes to its window's first maximum; an element that is
    the maximum of several overlapping windows receives the sum of their gradients.
    """
    _check_input("max_pool2d", input)
    kernel, stride, padding, dilation, _ = _pool_geometry("max_pool2d", input, kernel_size, stride, padding,
                                                          dilation, ceil_mode)
    out, indices = MaxPool2d.apply(input, kernel_size=kernel, stride=stride, padding=padding, dilation=dilation)
    return (out, indices) if return_indices else out


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """2-d average pooling over an (N, C, H, W) or (C, H, W) input.

    Args:
        kernel_size, stride, padding, ceil_mode: as in :func:`max_pool2d` (padding is zeros).
        count_include_pad: divide by the window size including padding (but not the part of a
            ceil_mode window beyond the padding), else by the number of input elements in it.
        divisor_override: divide every window's sum by this number instead.

    Returns:
        (N, C, OH, OW): each window's sum divided by its divisor.

    Backward: each element of a window receives the window's gradient divided by its divisor,
    summed over the windows that contain it.
    """
    _check_input("avg_pool2d", input)
    if divisor_override is not None and (not isinstance(divisor_override, numbers.Number) or divisor_override == 0):
        raise RuntimeError(f"avg_pool2d: divisor must be a non-zero number, but got divisor_override="
                           f"{divisor_override!r}")
    kernel, stride, padding, _, out = _pool_geometry("avg_pool2d", input, kernel_size, stride, padding, 1,
                                                     ceil_mode)
    if divisor_override is not None:
        divisor = np.full(out, divisor_override, dtype=np.float64)
    else:
        per_axis = [_window_counts(n, k, s, p[0], o, count_include_pad)
                    for n, k, s, p, o in zip(input.shape[-2:], kernel, stride, padding, out)]
        divisor = np.outer(*per_axis)
    divisor = input.xp.asarray(divisor, dtype=input.dtype)
    return AvgPool2d.apply(input, kernel_size=kernel, stride=stride, padding=padding, divisor=divisor)


def _window_counts(size, kernel, stride, pad, out, count_include_pad) -> np.ndarray:
    """Per output position along one axis: how many elements the average divides by. Windows
    are clipped to the padded input ``[-pad, size + pad)``; without ``count_include_pad`` also to
    the input ``[0, size)``. (Host-side, from shapes only.)"""
    start = np.arange(out) * stride - pad
    end = np.minimum(start + kernel, size + pad)
    if count_include_pad:
        return end - start
    return np.minimum(end, size) - np.maximum(start, 0)


def adaptive_avg_pool2d(input, output_size):
    """2-d average pooling to a fixed output size, over an (N, C, H, W) or (C, H, W) input.

    Output row i averages input rows ``[floor(i*H/OH), ceil((i+1)*H/OH))`` (columns likewise),
    as in PyTorch.

    Args:
        output_size: int or (OH, OW); a ``None`` entry keeps that input size.

    Backward: each output's gradient is spread evenly over its window (``A_h.T @ dY @ A_w``).
    """
    _check_input("adaptive_avg_pool2d", input)
    sizes = (output_size, output_size) if isinstance(output_size, numbers.Integral) or output_size is None \
        else tuple(output_size)
    if len(sizes) != 2 or not all(s is None or (isinstance(s, numbers.Integral) and s >= 0) for s in sizes):
        raise RuntimeError(f"adaptive_avg_pool2d: output_size must be an int >= 0 or a pair of them (None keeps "
                           f"the input size), but got output_size={output_size!r}")
    sizes = tuple(int(n if s is None else s) for s, n in zip(sizes, input.shape[-2:]))
    return AdaptiveAvgPool2d.apply(input, output_size=sizes)
