"""``Flatten``: merge a range of dimensions into one (typically before a Linear layer)."""
from __future__ import annotations

from ..module import Module

__all__ = ["Flatten"]


class Flatten(Module):
    """Flattens dimensions ``start_dim`` to ``end_dim`` into one. Backward: reshape the
    gradient back to the input's shape.

    Args:
        start_dim: first dimension to flatten. Default: 1 (keep the batch dimension).
        end_dim: last dimension to flatten. Default: -1.

    Shape:
        - Input: ``(*, S_start, ..., S_end, *)``.
        - Output: ``(*, S_start * ... * S_end, *)``.

    Example::

        >>> nn.Flatten()(tinynet.randn(32, 1, 5, 5)).shape
        (32, 25)
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input):
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
