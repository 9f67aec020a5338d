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

On a GPU the same three products run as implicit GEMMs (``tinynet/kernels/cuda/conv.py``): the
kernels read the entries of ``cols`` where they lie in x, so no cols matrix is made, the output
comes out in NCHW order with its bias added, and a convolution is one launch forward and two
backward (dx; dW with db).
"""
from __future__ import annotations

import functools
import numbers

from ..autograd import Function
from ..kernels import direct_conv, gemm, shallow_conv
from ..kernels.conv import bias_to_nchw_numba, nchw_to_channels_numba
from ..kernels.dispatch import uses_cuda, uses_numba
from ..kernels.im2col import col2im, im2col, output_size
from ..tensor import Tensor

__all__ = ["conv2d"]


class Conv2d(Function):
    """y[n, o] = b[o] + sum_{c,i,j} w[o, c, i, j] * x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw].

    Backward (per group, with cols = im2col(x) and dY (C_out, N*OH*OW)):
    dW = dY @ cols.T;  dx = col2im(W.T @ dY);  db = sum of dY over batch and positions.

    Memory: on the CPU forward saves cols for dW; on a GPU, for a shallow layer on the CPU
    (``kernels/shallow_conv.py``) and for a float32 layer with few filters on the CPU
    (``kernels/direct_conv.py``: vector tiles that read the windows in x), it saves x and reads
    it again. Either is kept only when W needs a gradient.

    On the CPU's im2col path, kernel taps that read nothing but padding are cut off first
    (:func:`_taps_reading_input`): they add zeros to y, and their part of dW is 0.

    On the CPU, dx of a float32 stride-1 layer with few channels is the forward pass of another
    convolution, ``conv2d(dY, flip(W).transpose(1, 0, 2, 3), padding=d*(k-1) - padding)``, run
    on the vector tiles (:func:`~tinynet.kernels.direct_conv.direct_conv_input_grad_numba`),
    where that costs little more than ``W.T @ dY`` and col2im (``direct_conv.fits_input_grad``).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, *, stride, padding, dilation, groups):
        xp = ctx.xp
        unbatched = x.ndim == 3  # (C, H, W): work on a batch of one
        if unbatched:
            x = x[None]
        c_out, _, kh, kw = weight.shape
        out_h = output_size(x.shape[2], kh, stride[0], *padding[0], dilation[0])
        out_w = output_size(x.shape[3], kw, stride[1], *padding[1], dilation[1])
        ctx.direct = uses_cuda(x)
        ctx.per_image = uses_numba(x) and shallow_conv.fits(weight, groups)
        ctx.tiled = uses_numba(x) and not ctx.per_image and direct_conv.fits(x, weight, groups, out_h * out_w)
        ctx.taps, ctx.weight_shape = None, weight.shape
        if ctx.direct:  # one implicit-GEMM kernel: no cols (see the module docstring)
            from ..kernels.cuda.conv import conv2d_forward_cuda
            x, weight = xp.ascontiguousarray(x), xp.ascontiguousarray(weight)
            bias = None if bias is None else xp.ascontiguousarray(bias)
            out = conv2d_forward_cuda(x, weight, bias, (out_h, out_w), stride, padding, dilation, groups)
            saved = x
        elif ctx.per_image:  # a shallow first layer on the CPU: image by image, no batch cols
            out = shallow_conv.shallow_conv_forward_numba(x, weight, bias, (out_h, out_w), stride, padding, dilation)
            saved = x
        elif ctx.tiled:  # few filters on the CPU: vector tiles read the windows in x, no cols
            out = direct_conv.direct_conv_forward_numba(x, weight, bias, (out_h, out_w), stride, padding, dilation)
            saved = x
        else:
            ctx.taps = _taps_reading_input(x.shape[2:], (kh, kw), stride, padding, dilation, (out_h, out_w))
            if ctx.taps is not None:  # a kernel partly over padding alone: convolve with the rest of it
                (rows, columns), padding = ctx.taps
                weight = xp.ascontiguousarray(weight[:, :, rows, columns])
                kh, kw = weight.shape[2:]
            geometry = ((kh, kw), stride, padding, dilation)
            cols = im2col(x, *geometry)                                  # (C*kh*kw, N*OH*OW)
            saved = cols.reshape(groups, cols.shape[0] // groups, cols.shape[1])  # (G, C/G*kh*kw, N*OH*OW); N may be 0
            weight_by_group = weight.reshape(groups, c_out // groups, -1)  # (G, C_out/G, C/G*kh*kw)
            y = gemm.matmul(xp, weight_by_group, saved).reshape(c_out, x.shape[0], out_h, out_w)
            out = _to_nchw(xp, y, bias)
        # x or cols is only needed for dW: keep nothing for it when W needs no grad.
        ctx.save_for_backward(saved if ctx.needs_input_grad[1] else None, weight)
        ctx.geometry, ctx.groups, ctx.unbatched = (stride, padding, dilation), groups, unbatched
        ctx.x_shape, ctx.kernel_size = x.shape, (kh, kw)
        return out[0] if unbatched else out

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        saved, weight = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad
        if ctx.unbatched:
            grad = grad[None]
        out_weight, out_bias = (ctx.grad_out[1], ctx.grad_out[2]) if ctx.grad_out else (None, None)
        stride, padding, dilation = ctx.geometry
        groups, c_out = ctx.groups, grad.shape[1]
        grad_x = grad_weight = grad_bias = None
        if ctx.direct:  # two implicit-GEMM kernels
            from ..kernels.cuda.conv import conv2d_backward_input_cuda, conv2d_backward_weight_cuda
            grad = xp.ascontiguousarray(grad)
            if need_x:
                grad_x = conv2d_backward_input_cuda(grad, weight, ctx.x_shape, stride, padding, dilation, groups)
            if need_weight or need_bias:
                grad_weight, grad_bias = conv2d_backward_weight_cuda(
                    grad, saved, ctx.x_shape, weight.shape, stride, padding, dilation, groups,
                    need_weight, need_bias, out_weight, out_bias)
        else:
            weight_by_group = weight.reshape(groups, c_out // groups, -1)  # (G, C_out/G, C/G*kh*kw)
            geometry = (ctx.kernel_size, stride, padding, dilation)
            # dx as the forward pass of another convolution, on vector tiles: no dcols, no col2im
            tiled_input_grad = need_x and uses_numba(grad) and direct_conv.fits_input_grad(
                grad, weight, groups, stride, padding, dilation, ctx.x_shape[2:])
            # dY channel-major, for the products below (not needed by the tiles)
            need_channels = (need_x and not tiled_input_grad) or (need_weight and not ctx.tiled and not ctx.per_image)
            if ctx.per_image:  # dW and db image by image, unfolding the saved x again
                if need_weight or need_bias:
                    grad_weight, grad_bias = shallow_conv.shallow_conv_weight_grad_numba(grad, saved, *geometry,
                                                                                          need_weight=need_weight)
                    grad_weight = None if grad_weight is None else grad_weight.reshape(weight.shape)
                    grad_bias = grad_bias if need_bias else None
                grad_by_group = _to_channels(xp, grad, False)[0] if need_channels else None
            elif need_channels or need_bias:
                grad_by_group, grad_bias = _to_channels(xp, grad, need_bias, out_bias)
            else:
                grad_by_group = None
            # dY as (G, C_out/G, N*OH*OW): the same layout as the forward's output matrix.
            if grad_by_group is not None:
                grad_by_group = grad_by_group.reshape(groups, c_out // groups, grad_by_group.shape[1])
            if tiled_input_grad:
                grad_x = direct_conv.direct_conv_input_grad_numba(grad, weight, ctx.x_shape[2:], padding, dilation)
            elif need_x:
                grad_cols = gemm.matmul(xp, weight_by_group.transpose(0, 2, 1), grad_by_group)
                rows, columns = grad_cols.shape[0] * grad_cols.shape[1], grad_cols.shape[2]  # sizes: N may be 0
                grad_x = col2im(grad_cols.reshape(rows, columns), ctx.x_shape, *geometry)
            if need_weight and ctx.tiled:  # dW from x again, tile by tile (kernels/direct_conv.py)
                grad_weight = direct_conv.direct_conv_weight_grad_numba(grad, saved, ctx.kernel_size, stride, padding,
                                                                        dilation)
            elif need_weight and not ctx.per_image:
                if ctx.taps is None:
                    grad_weight = _weight_grad(xp, grad_by_group, saved, weight.shape, out_weight)
                else:  # the unused taps' gradient is 0
                    grad_weight = xp.empty(ctx.weight_shape, weight.dtype) if out_weight is None else out_weight
                    grad_weight[...] = 0
                    (rows, columns), _ = ctx.taps
                    grad_weight[:, :, rows, columns] = _weight_grad(xp, grad_by_group, saved, weight.shape, None)
        if grad_x is not None and ctx.unbatched:
            grad_x = grad_x[0]
        return grad_x, grad_weight, grad_bias


@functools.lru_cache(maxsize=256)  # a few layer shapes per model, asked at every step
def _taps_reading_input(size, kernel, stride, padding, dilation, out_size):
    """The kernel taps that read at least one input pixel, as ``((rows, columns), padding)``:
    two slices of the kernel and the padding that keeps the output size for the kernel cut to
    them; None when every tap does (the usual case) or when the cut would need negative padding.

    A tap that reads padding at every output position adds only zeros to the output, and its
    weight's gradient is 0: on a 1x1 map a 3x3 kernel with padding 1 uses its centre alone
    (lenet_resnet's residual block after fc1), so the products shrink 9 times."""
    slices, pads = [], []
    for n, k, s, (before, after), d, o in zip(size, kernel, stride, padding, dilation, out_size):
        # tap i reads rows o_*s + i*d - before, for o_ in [0, o): some lie in [0, n)
        used = [i for i in range(k) if i * d - before < n and (o - 1) * s + i * d - before >= 0]
        if not used:
            return None
        first, stop = used[0], used[-1] + 1
        slices.append(slice(first, stop))
        pads.append((before - first * d, after - (k - stop) * d))
    if all(cut == slice(0, k) for cut, k in zip(slices, kernel)) or min(min(pair) for pair in pads) < 0:
        return None
    return tuple(slices), tuple(pads)


# Up to this many filters per group, dW is computed transposed (see _weight_grad).
FEW_FILTERS = 128


def _weight_grad(xp, grad_by_group, cols, weight_shape, out_weight):
    """dW = dY @ cols.T per group, (G, C_out/G, N*OH*OW) @ (G, N*OH*OW, C/G*kh*kw), as
    ``weight_shape``; into ``out_weight`` (the weight's reserved .grad storage) when given.

    With few filters OpenBLAS is faster on the transposed product cols @ dY.T (its long inner
    dimension against 150 rows, not 16), and the small result is then copied back transposed:
    LeNet's second layer 1.36 -> 0.81 ms on two threads, 1.98 -> 1.23 ms on one. With many
    filters the plain product is faster (cnn5's 1024 filters: 65 against 95 ms)."""
    if grad_by_group.shape[1] <= FEW_FILTERS:
        transposed = gemm.matmul(xp, cols, grad_by_group.transpose(0, 2, 1))  # (G, C/G*kh*kw, C_out/G)
        if out_weight is None:
            return xp.ascontiguousarray(transposed.transpose(0, 2, 1)).reshape(weight_shape)
        out_weight.reshape(transposed.shape[0], transposed.shape[2], -1)[...] = transposed.transpose(0, 2, 1)
        return out_weight
    by_group = None if out_weight is None else out_weight.reshape(grad_by_group.shape[0], grad_by_group.shape[1], -1)
    grad_weight = gemm.matmul(xp, grad_by_group, cols.transpose(0, 2, 1), out=by_group)
    return grad_weight.reshape(weight_shape) if out_weight is None else out_weight


def _to_nchw(xp, y, bias):
    """The GEMM's (C_out, N, OH, OW) plus the bias as a new NCHW array."""
    if uses_numba(y) and (bias is None or bias.dtype == y.dtype):
        return bias_to_nchw_numba(y, bias)  # the lines below as one compiled pass on the CPU's threads
    if bias is not None:
        y += bias.reshape(-1, 1, 1, 1)
    return xp.ascontiguousarray(y.transpose(1, 0, 2, 3))  # (C_out, N, ...) -> NCHW


def _to_channels(xp, grad, need_bias: bool, out_bias=None) -> tuple:
    """dY (n, C_out, OH, OW) as channel-major (C_out, n*OH*OW), and its per-channel sum when
    ``need_bias`` (into ``out_bias`` on the compiled path when given; else None)."""
    if uses_numba(grad):  # one compiled pass on the CPU's threads (the sum in float64)
        return nchw_to_channels_numba(grad, need_bias, out_bias)
    n, c_out, out_h, out_w = grad.shape  # sizes, not -1: the batch may be empty
    channels = xp.ascontiguousarray(grad.transpose(1, 0, 2, 3)).reshape(c_out, n * out_h * out_w)
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
