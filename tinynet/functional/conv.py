"""2-d convolution as im2col + one matrix product.

``im2col`` (``tinynet/kernels/im2col.py``) copies every window of the padded input into a column
of ``cols`` (C*kh*kw, N*OH*OW); the filters, flattened to ``W`` (C_out, C*kh*kw), then give
every output of the whole batch at once::

    Y = W @ cols                          (C_out, N*OH*OW), reshaped to (N, C_out, OH, OW)

and the backward pass is two more matrix products plus the transpose of im2col::

    dW    = dY @ cols.T                   every window, weighted by its output's gradient
    dcols = W.T @ dY                      each window's share of the input gradient
    dx    = col2im(dcols)                 added back to the pixels the windows came from
    db    = dY summed over batch and positions

With ``groups`` G the channels split into G independent convolutions: the rows of ``cols`` and
of ``W`` split into G blocks and the products above become one batched product over groups.

On a GPU the layout changes around the product are fused with the bias: the forward adds the
bias while copying to NCHW, the backward sums db while copying dY to channel-major, one kernel
each (``tinynet/kernels/cuda/conv.py``). On a GPU a batch whose cols would pass
``GPU_WORKSPACE_BYTES`` runs in batch slices, and backward unfolds its input again (below).
"""
from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Function
from ..kernels import gemm
from ..kernels.conv import bias_to_nchw_numba, nchw_to_channels_numba
from ..kernels.dispatch import uses_cuda, uses_numba
from ..kernels.im2col import col2im, im2col, output_size
from ..tensor import Tensor

__all__ = ["conv2d"]


# A convolution's cols matrix is C*kh*kw times its input. On a GPU, when a batch's cols would take
# more than this many bytes, im2col runs over slices of the batch whose cols fit in it (or in the
# size of the layer's input or output if larger: those are held anyway), and Conv2d saves its
# input instead of cols, unfolding the slices again in backward for dW. Every slice costs its own
# launches, so the budget sits where memory matters more than launches (`python
# benchmarks/memory.py`, simulated GPU, report batch sizes): cnn5's large layers (58 MB of cols
# each) are sliced, 415 MB at 118 launches per step instead of 499 MB at 79 (PyTorch: 377 MB),
# while LeNet (15 MB of cols) and the other small report models run unsliced, their steps bound
# by launches rather than by a few MB. A 4 MiB budget brought LeNet to PyTorch's 14 MB but
# doubled its launches (44 -> 93). A batch whose cols fit runs as one slice, saving cols (no
# second im2col). On the CPU the whole batch is one slice: host memory is plentiful and the
# second im2col would cost time.
GPU_WORKSPACE_BYTES = 32 * 2 ** 20


def batch_slices(xp, x_shape, cols_rows: int, out_shape, itemsize: int) -> tuple:
    """The ``(start, stop)`` batch slices a convolution's im2col runs over (see
    ``GPU_WORKSPACE_BYTES``): one slice on the CPU or when the whole batch fits."""
    n = x_shape[0]
    if xp is np:
        return ((0, n),)
    per_image = cols_rows * out_shape[2] * out_shape[3] * itemsize  # bytes of cols per image
    if n * per_image <= GPU_WORKSPACE_BYTES:
        return ((0, n),)
    budget = max(GPU_WORKSPACE_BYTES, _prod(x_shape) * itemsize, _prod(out_shape) * itemsize)
    step = max(1, budget // max(per_image, 1))
    return tuple((start, min(start + step, n)) for start in range(0, n, step))


def _prod(shape) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


class Conv2d(Function):
    """y[n, o] = b[o] + sum_{c,i,j} w[o, c, i, j] * x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw].

    Backward (per group, with cols = im2col(x) and dY (C_out, N*OH*OW)):
    dW = dY @ cols.T;  dx = col2im(W.T @ dY);  db = sum of dY over batch and positions.

    Memory: with one batch slice (see ``batch_slices``) forward saves cols for dW. With several
    (a large batch on a GPU) it saves x, and backward unfolds each slice again: dW is the sum
    over slices of dY_slice @ cols_slice.T, dx slice by slice; the slices cost a few more
    launches (im2col again, the sums) for a workspace bounded by the layer's own size.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, *, stride, padding, dilation, groups):
        xp = ctx.xp
        unbatched = x.ndim == 3  # (C, H, W): work on a batch of one
        if unbatched:
            x = x[None]
        n = x.shape[0]
        c_out, _, kh, kw = weight.shape
        geometry = ((kh, kw), stride, padding, dilation)
        out_h = output_size(x.shape[2], kh, stride[0], *padding[0], dilation[0])
        out_w = output_size(x.shape[3], kw, stride[1], *padding[1], dilation[1])
        weight_by_group = weight.reshape(groups, c_out // groups, -1)  # (G, C_out/G, C/G*kh*kw)
        slices = batch_slices(xp, x.shape, x.shape[1] * kh * kw, (n, c_out, out_h, out_w), x.dtype.itemsize)
        out = xp.empty((n, c_out, out_h, out_w), dtype=x.dtype) if len(slices) > 1 else None
        saved = x  # with several slices backward unfolds x again; with one it keeps cols
        for start, stop in slices:
            cols = im2col(x[start:stop], *geometry)                     # (C*kh*kw, n*OH*OW)
            cols_by_group = cols.reshape(groups, -1, cols.shape[1])     # (G, C/G*kh*kw, n*OH*OW)
            y = gemm.matmul(xp, weight_by_group, cols_by_group).reshape(c_out, stop - start, out_h, out_w)
            y = _to_nchw(xp, y, bias, None if out is None else out[start:stop])
            if out is None:
                out, saved = y, cols_by_group
            del cols, cols_by_group, y  # before the next slice's: one slice's workspace at a time

        # cols is only needed for dW: keep nothing for it when W needs no grad.
        ctx.save_for_backward(saved if ctx.needs_input_grad[1] else None, weight_by_group)
        ctx.geometry, ctx.groups, ctx.unbatched, ctx.slices = geometry, groups, unbatched, slices
        ctx.x_shape, ctx.weight_shape = x.shape, weight.shape
        return out[0] if unbatched else out

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        saved, weight_by_group = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad
        if ctx.unbatched:
            grad = grad[None]
        groups, c_out, slices = ctx.groups, grad.shape[1], ctx.slices
        out_weight, out_bias = (ctx.grad_out[1], ctx.grad_out[2]) if ctx.grad_out else (None, None)
        grad_x = grad_weight = grad_bias = None
        if need_x and len(slices) > 1:
            grad_x = xp.empty(ctx.x_shape, dtype=grad.dtype)
        for start, stop in slices:
            # dY as (G, C_out/G, n*OH*OW): the same layout as the forward's output matrix.
            grad_by_group, bias_part = _to_channels(xp, grad[start:stop], need_bias,
                                                    out_bias if grad_bias is None else None)
            grad_by_group = grad_by_group.reshape(groups, c_out // groups, -1)
            if grad_bias is None:
                grad_bias = bias_part
            else:  # only reached when need_bias: the per-slice sums add up to db
                grad_bias += bias_part
            if need_x:
                grad_cols = gemm.matmul(xp, weight_by_group.transpose(0, 2, 1), grad_by_group)
                part = col2im(grad_cols.reshape(-1, grad_cols.shape[2]), (stop - start,) + ctx.x_shape[1:],
                              *ctx.geometry)
                del grad_cols  # before the next slice's: one slice's workspace at a time
                if len(slices) == 1:
                    grad_x = part
                else:
                    grad_x[start:stop] = part
            if need_weight:
                cols_by_group = saved if len(slices) == 1 else \
                    im2col(saved[start:stop], *ctx.geometry).reshape(groups, -1, grad_by_group.shape[2])
                if grad_weight is None:
                    # out=: straight into the weight's reserved .grad storage when the engine offers it
                    by_group = None if out_weight is None else out_weight.reshape(groups, c_out // groups, -1)
                    grad_weight = gemm.matmul(xp, grad_by_group, cols_by_group.transpose(0, 2, 1), out=by_group)
                else:
                    grad_weight += gemm.matmul(xp, grad_by_group, cols_by_group.transpose(0, 2, 1))
                del cols_by_group
        if grad_x is not None and ctx.unbatched:
            grad_x = grad_x[0]
        if grad_weight is not None:
            grad_weight = grad_weight.reshape(ctx.weight_shape) if out_weight is None else out_weight
        return grad_x, grad_weight, grad_bias


def _to_nchw(xp, y, bias, out=None):
    """The GEMM's (C_out, n, OH, OW) plus the bias as NCHW: a new array, or written into ``out``."""
    if uses_cuda(y) and (bias is None or (bias.dtype == y.dtype and bias.flags.c_contiguous)):
        from ..kernels.cuda.conv import bias_to_nchw_cuda
        return bias_to_nchw_cuda(y, bias, out)  # the lines below in one GPU kernel
    if uses_numba(y) and (bias is None or bias.dtype == y.dtype) and (out is None or out.flags.c_contiguous):
        return bias_to_nchw_numba(y, bias, out)  # the same, one compiled pass on the CPU's threads
    if bias is not None:
        y += bias.reshape(-1, 1, 1, 1)
    if out is None:
        return xp.ascontiguousarray(y.transpose(1, 0, 2, 3))  # (C_out, N, ...) -> NCHW
    out[...] = y.transpose(1, 0, 2, 3)
    return out


def _to_channels(xp, grad, need_bias: bool, out_bias=None) -> tuple:
    """dY (n, C_out, OH, OW) as channel-major (C_out, n*OH*OW), and its per-channel sum when
    ``need_bias`` (into ``out_bias`` on the GPU kernel's path when given; else None)."""
    if uses_cuda(grad) and grad.flags.c_contiguous:  # the layout change and db in one GPU kernel
        from ..kernels.cuda.conv import nchw_to_channels_cuda
        return nchw_to_channels_cuda(grad, need_bias, out_bias)
    if uses_numba(grad):  # the same, one compiled pass on the CPU's threads (the sum in float64)
        return nchw_to_channels_numba(grad, need_bias, out_bias)
    channels = xp.ascontiguousarray(grad.transpose(1, 0, 2, 3)).reshape(grad.shape[1], -1)
    return channels, grad.sum(axis=(0, 2, 3)) if need_bias else None


# ---------------------------------------------------------------------------- argument checks
def _pair(op: str, name: str, value) -> tuple:
    """An int or a sequence of one or two ints as ``(height, width)``; anything else is an error."""
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        return value  # the common case, checked without the slower ABC tests below
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) in (1, 2) \
            and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value):
        return (int(value[0]),) * 2 if len(value) == 1 else (int(value[0]), int(value[1]))
    raise RuntimeError(f"{op}: expected {name} to be a single int or a tuple of two ints, but got "
                       f"{name}={value!r}")


def _shape(t) -> str:
    return str(list(t.shape))


def _conv_padding(padding, kernel_size, stride, dilation):
    """``padding`` as ``((top, bottom), (left, right))``; ``'valid'`` is no padding, ``'same'``
    pads ``dilation*(k-1)`` in total, the odd one out at the bottom/right (as PyTorch)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise RuntimeError(f"conv2d: padding='same' is not supported for strided convolutions, "
                                   f"got stride={stride}")
            totals = [d * (k - 1) for d, k in zip(dilation, kernel_size)]
            return tuple((total // 2, total - total // 2) for total in totals)
        raise RuntimeError(f"conv2d: invalid padding string {padding!r}; expected 'valid', 'same', "
                           "an int or a pair of ints")
    ph, pw = _pair("conv2d", "padding", padding)
    if ph < 0 or pw < 0:
        raise RuntimeError(f"conv2d: negative padding is not supported, got padding={padding!r}")
    return (ph, ph), (pw, pw)


def _check_conv2d(input, weight, bias, stride, dilation, groups) -> None:
    """Raise PyTorch's errors, prefixed with ``conv2d:``, for inputs that cannot be convolved."""
    for name, t in (("input", input), ("weight", weight)):
        if not isinstance(t, Tensor):
            raise TypeError(f"conv2d: expected {name} to be a Tensor, got {type(t).__name__}")
    if bias is not None and not isinstance(bias, Tensor):
        raise TypeError(f"conv2d: expected bias to be a Tensor or None, got {type(bias).__name__}")
    if input.ndim not in (3, 4):
        raise RuntimeError(f"conv2d: expected 3D (unbatched) or 4D (batched) input, but got input of size: "
                           f"{_shape(input)}")
    if weight.ndim != 4:
        raise RuntimeError(f"conv2d: expected a 4D weight (out_channels, in_channels/groups, kH, kW), but got "
                           f"weight of size {_shape(weight)}")
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups <= 0:
        raise RuntimeError(f"conv2d: non-positive groups is not supported; expected a positive int, got "
                           f"groups={groups!r}")
    if min(stride) <= 0:
        raise RuntimeError(f"conv2d: non-positive stride is not supported, got stride={stride}")
    if min(dilation) <= 0:
        raise RuntimeError(f"conv2d: non-positive dilation is not supported, got dilation={dilation}")
    tensors = [("input", input), ("weight", weight)] + ([("bias", bias)] if bias is not None else [])
    if any(t.dtype.kind != "f" for _, t in tensors) or len({t.dtype for _, t in tensors}) > 1:
        got = ", ".join(f"{name} {t.dtype}" for name, t in tensors)
        raise RuntimeError(f"conv2d: expected floating-point input, weight and bias of the same dtype, but got {got}")
    c_out, c_per_group = weight.shape[:2]
    if c_out % groups:
        raise RuntimeError(f"conv2d: given groups={groups}, expected weight to be divisible by {groups} at "
                           f"dimension 0, but got weight of size {_shape(weight)} instead")
    channels = input.shape[-3]
    if channels != c_per_group * groups:
        raise RuntimeError(f"conv2d: given groups={groups}, weight of size {_shape(weight)}, expected "
                           f"input{_shape(input)} to have {c_per_group * groups} channels, but got "
                           f"{channels} channels instead")
    if bias is not None and (bias.ndim != 1 or bias.shape[0] != c_out):
        raise RuntimeError(f"conv2d: given weight of size {_shape(weight)}, expected bias to be 1-dimensional "
                           f"with {c_out} elements, but got bias of size {_shape(bias)} instead")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-d convolution (really cross-correlation, as in PyTorch) of ``input`` with ``weight``.

    Args:
        input: (N, C_in, H, W), or (C_in, H, W) unbatched.
        weight: (C_out, C_in/groups, kH, kW).
        bias: (C_out,) or None.
        stride, dilation: int or (sH, sW).
        padding: int, (pH, pW), ``'valid'`` (none) or ``'same'`` (output size = input size;
            stride 1 only; with an even span the extra row/column goes at the bottom/right).
        groups: split the channels into this many independent convolutions.

    Returns:
        (N, C_out, OH, OW) with ``OH = (H + 2*pH - dH*(kH-1) - 1) // sH + 1`` (same for OW).

    Backward: dW = dY @ cols.T, dx = col2im(W.T @ dY), db = dY summed over batch and positions
    (see the module docstring).
    """
    stride = _pair("conv2d", "stride", stride)
    dilation = _pair("conv2d", "dilation", dilation)
    _check_conv2d(input, weight, bias, stride, dilation, groups)
    kernel_size = tuple(weight.shape[2:])
    padding = _conv_padding(padding, kernel_size, stride, dilation)
    padded = [input.shape[-2] + sum(padding[0]), input.shape[-1] + sum(padding[1])]
    span = [d * (k - 1) + 1 for d, k in zip(dilation, kernel_size)]
    if padded[0] < span[0] or padded[1] < span[1]:
        raise RuntimeError(f"conv2d: calculated padded input size per channel: ({padded[0]} x {padded[1]}). "
                           f"Kernel size: ({span[0]} x {span[1]}). Kernel size can't be greater than actual "
                           f"input size (input {_shape(input)}, weight {_shape(weight)}, dilation={dilation})")
    return Conv2d.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=int(groups))
