"""Pooling layers: ``MaxPool2d``, ``AvgPool2d``, ``AdaptiveAvgPool2d``. They have no
parameters; each stores its arguments and calls the matching op in ``nn.functional``."""
from __future__ import annotations

from .. import functional as F
from ..module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


def _check_image_batch(layer: str, input) -> None:
    if input.ndim not in (3, 4):
        raise RuntimeError(f"{layer}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, "
                           f"got shape {tuple(input.shape)}")


class MaxPool2d(Module):
    """Takes the maximum over each ``kernel_size`` window of every channel.

    Backward (done by ``F.max_pool2d``): each window's gradient goes entirely to the position
    that held the maximum; the other positions get zero.

    Args:
        kernel_size: the window size (int or pair).
        stride: the window step. Default: ``kernel_size`` (non-overlapping windows).
        padding: implicit -inf padding on each side. Default: 0.
        dilation: spacing between window elements. Default: 1.
        return_indices: also return the argmax positions. Default: False.
        ceil_mode: round the output size up instead of down. Default: False.

    Shape:
        - Input: ``(N, C, H_in, W_in)`` or ``(C, H_in, W_in)``.
        - Output: ``(N, C, H_out, W_out)``, with
          ``H_out = floor((H_in + 2*padding - dilation*(kernel_size-1) - 1) / stride + 1)``.

    Example::

        >>> nn.MaxPool2d(2)(tinynet.randn(1, 3, 8, 8)).shape
        (1, 3, 4, 4)
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input):
        _check_image_batch("MaxPool2d", input)
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """Averages each ``kernel_size`` window of every channel.

    Backward (done by ``F.avg_pool2d``): each window's gradient is shared equally among the
    window's positions (divided by the window size).

    Args:
        kernel_size: the window size (int or pair).
        stride: the window step. Default: ``kernel_size``.
        padding: implicit zero padding on each side. Default: 0.
        ceil_mode: round the output size up instead of down. Default: False.
        count_include_pad: count padded zeros in the average's divisor. Default: True.
        divisor_override: divide by this instead of the window size. Default: None.

    Shape:
        - Input: ``(N, C, H_in, W_in)`` or ``(C, H_in, W_in)``.
        - Output: ``(N, C, H_out, W_out)``, with
          ``H_out = floor((H_in + 2*padding - kernel_size) / stride + 1)``.

    Example::

        >>> nn.AvgPool2d(2)(tinynet.randn(1, 3, 8, 8)).shape
        (1, 3, 4, 4)
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input):
        _check_image_batch("AvgPool2d", input)
        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Averages over windows chosen so that the output has size ``output_size``, whatever the
    input size (e.g. ``AdaptiveAvgPool2d(1)`` is global average pooling).

    Backward (done by ``F.adaptive_avg_pool2d``): each output's gradient is shared equally
    among the positions of its window.

    Args:
        output_size: target ``(H_out, W_out)``, or one int for a square; None in a position
            keeps the input's size there.

    Shape:
        - Input: ``(N, C, H_in, W_in)`` or ``(C, H_in, W_in)``.
        - Output: ``(N, C, H_out, W_out)``.

    Example::

        >>> nn.AdaptiveAvgPool2d((1, 1))(tinynet.randn(2, 64, 7, 7)).shape
        (2, 64, 1, 1)
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        _check_image_batch("AdaptiveAvgPool2d", input)
        return F.adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
