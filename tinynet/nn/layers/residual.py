"""``BasicBlock``: the residual block of ResNet-18/34 (He et al., 2015).

The block learns a *correction* ``F(x)`` to its input rather than a whole new mapping:
``out = relu(F(x) + shortcut(x))``. Because the shortcut passes gradients straight through
(its derivative is the identity), very deep stacks of blocks still train.
"""
from __future__ import annotations

from ..containers import Sequential
from ..module import Module
from .activation import ReLU
from .conv import Conv2d
from .normalization import BatchNorm2d

__all__ = ["BasicBlock"]


class BasicBlock(Module):
    """conv3x3 - BN - ReLU - conv3x3 - BN, plus a shortcut, then ReLU::

        out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))

    The shortcut is the identity when shapes allow; when the block changes the channel count
    or downsamples (``stride != 1``), it is ``downsample = Sequential(conv1x1(stride), BN)``,
    which projects ``x`` to the output's shape. Convolutions have no bias: the BatchNorm that
    follows each one would cancel it.

    Attribute names are torchvision's (``conv1``, ``bn1``, ``relu``, ``conv2``, ``bn2``,
    ``downsample``), so ``state_dict`` keys match torchvision's ``BasicBlock``.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        stride: stride of the first convolution (2 halves the height and width). Default: 1.

    Shape:
        - Input: ``(N, in_channels, H, W)``.
        - Output: ``(N, out_channels, H_out, W_out)``, ``H_out = ceil(H / stride)``.

    Example::

        >>> block = nn.BasicBlock(64, 128, stride=2)
        >>> block(tinynet.randn(2, 64, 16, 16)).shape
        (2, 128, 8, 8)
    """

    expansion = 1  # output channels / out_channels (4 for ResNet-50's Bottleneck)

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(out_channels)
        self.relu = ReLU(inplace=True)
        self.conv2 = Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.downsample = Sequential(
                Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                BatchNorm2d(out_channels),
            )
        else:
            self.downsample = None
        self.stride = stride

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)
