"""``tinynet.utils``: PyTorch's ``torch.utils`` names. Only ``data`` is here (``tinynet.utils.data``
is :mod:`tinynet.data`'s datasets, samplers and DataLoader under PyTorch's module path)."""
from . import data

__all__ = ["data"]
