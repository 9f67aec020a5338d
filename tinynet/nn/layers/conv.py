"""``Conv2d``: the 2-D convolution layer."""
from __future__ import annotations

import math

from ...creation import empty
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter

__all__ = ["Conv2d"]


def _pair(value) -> tuple:
    """``3`` -> ``(3, 3)``; a pair stays as it is (as a tuple)."""
    if isinstance(value, (tuple, list)):
        return tuple(value)
    return (value, value)


class Conv2d(Module):
    """Applies a 2-D convolution (strictly, a cross-correlation) over a batch of images::

        out[n, o] = bias[o] + sum_c sum_(i,j) weight[o, c, i, j] * input[n, c, y*s + i*d, x*s + j*d]

    Backward (done by ``F.conv2d``): the input gradient is the output gradient convolved with
    the flipped kernel (a transposed convolution); the weight gradient correlates the input
    with the output gradient; the bias gradient sums the output gradient over n, y and x.

    Args:
        in_channels: channels of the input image.
        out_channels: channels produced by the convolution.
        kernel_size: size of the kernel (int or pair).
        stride: step of the kernel. Default: 1.
        padding: zeros added to each side (int, pair, or ``'same'`` / ``'valid'``). Default: 0.
        dilation: spacing between kernel elements. Default: 1.
        groups: split channels into this many independent groups. Default: 1.
        bias: learn an additive bias per output channel. Default: True.
        padding_mode: ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``. Default: ``'zeros'``.

    Shape:
        - Input: ``(N, C_in, H_in, W_in)`` or ``(C_in, H_in, W_in)``.
        - Output: ``(N, C_out, H_out, W_out)``, with
          ``H_out = floor((H_in + 2*padding[0] - dilation[0]*(kernel_size[0]-1) - 1) / stride[0] + 1)``
          and likewise for W.

    Attributes:
        weight: ``(out_channels, in_channels // groups, *kernel_size)``, initialised U(-k, k)
            with k = 1/sqrt(in_channels // groups * kernel_size[0] * kernel_size[1]).
        bias: ``(out_channels,)``, initialised U(-k, k).

    Example::

        >>> conv = nn.Conv2d(3, 16, 3, padding=1)
        >>> conv(tinynet.randn(8, 3, 32, 32)).shape
        (8, 16, 32, 32)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None):
        super().__init__()
        if groups <= 0:
            raise ValueError(f"Conv2d: groups must be a positive integer, got {groups}")
        if in_channels % groups != 0:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) must be divisible by groups ({groups})")
        if out_channels % groups != 0:
            raise ValueError(f"Conv2d: out_channels ({out_channels}) must be divisible by groups ({groups})")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError("Conv2d: padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular', "
                             f"but got padding_mode={padding_mode!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.dilation = _pair(dilation)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Conv2d: invalid padding string {padding!r}, should be 'same' or 'valid'")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError("Conv2d: padding='same' is not supported for strided convolutions")
            self.padding = padding
        else:
            self.padding = _pair(padding)
        self.groups = groups
        self.padding_mode = padding_mode
        self.weight = Parameter(empty((out_channels, in_channels // groups, *self.kernel_size),
                                      device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(empty(out_channels, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same rule as Linear: bound 1/sqrt(fan_in), fan_in = in_channels/groups * kernel area.
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        if input.ndim not in (3, 4) or input.shape[-3] != self.in_channels:
            raise RuntimeError(f"Conv2d: expected input of shape (N, {self.in_channels}, H, W) or "
                               f"({self.in_channels}, H, W), got {tuple(input.shape)}")
        if self.padding_mode != "zeros":
            # Pad explicitly with the chosen mode, then convolve without padding.
            input = F.pad(input, self._explicit_padding(), mode=self.padding_mode)
            return F.conv2d(input, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def _explicit_padding(self) -> tuple:
        """``(left, right, top, bottom)`` for ``F.pad``, from ``padding`` (ints or 'same'/'valid')."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":
            (dh, dw), (kh, kw) = self.dilation, self.kernel_size
            th, tw = dh * (kh - 1), dw * (kw - 1)
            return (tw // 2, tw - tw // 2, th // 2, th - th // 2)
        ph, pw = self.padding
        return (pw, pw, ph, ph)

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode}"
        return text
