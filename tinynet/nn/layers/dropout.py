"""Dropout layers: in training, zero random elements (``Dropout``) or whole channels
(``Dropout2d``) with probability ``p`` and scale the rest by ``1/(1-p)``, so that the expected
value is unchanged; in evaluation, pass the input through."""
from __future__ import annotations

from .. import functional as F
from ..module import Module

__all__ = ["Dropout", "Dropout2d"]


class _DropoutNd(Module):
    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError(f"{type(self).__name__}: dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """In training, zeroes each element independently with probability ``p`` and multiplies
    the kept ones by ``1/(1-p)``; in evaluation, returns the input unchanged.

    Backward (done by ``F.dropout``): the same mask and scale applied to the gradient.

    Args:
        p: probability of zeroing an element. Default: 0.5.
        inplace: overwrite the input when no graph is recorded for it. Default: False.

    Shape:
        - Input: any shape. Output: same shape.

    Example::

        >>> drop = nn.Dropout(0.2)
        >>> drop(tinynet.randn(20, 16)).shape
        (20, 16)
    """

    def forward(self, input):
        return F.dropout(input, self.p, self.training, self.inplace)


class Dropout2d(_DropoutNd):
    """In training, zeroes whole channels (an entire ``H x W`` map) with probability ``p``
    and scales the kept ones by ``1/(1-p)``; in evaluation, returns the input unchanged.
    Neighbouring pixels are strongly correlated, so dropping single pixels regularises little.

    Backward (done by ``F.dropout2d``): the same channel mask and scale applied to the gradient.

    Args:
        p: probability of zeroing a channel. Default: 0.5.
        inplace: overwrite the input when no graph is recorded for it. Default: False.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``. Output: same shape.

    Example::

        >>> nn.Dropout2d(0.2)(tinynet.randn(20, 16, 32, 32)).shape
        (20, 16, 32, 32)
    """

    def forward(self, input):
        return F.dropout2d(input, self.p, self.training, self.inplace)
