"""``Parameter``: a tensor that a Module registers as one of its learnable weights.

A Parameter is an ordinary leaf Tensor with ``requires_grad=True`` by default. The only thing
that makes it special is what happens when you assign one to a Module attribute
(``self.weight = Parameter(...)``): the Module records it, so that ``parameters()`` hands it
to the optimiser and ``state_dict()`` saves it.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..tensor import Tensor

__all__ = ["Parameter"]


class Parameter(Tensor):
    """A Tensor that is a Module's learnable weight.

    Args:
        data: the initial values (a Tensor or an array; its memory is shared, not copied).
            ``None`` gives an empty float tensor.
        requires_grad: whether the optimiser should get a gradient for it. Default: True.

    Example::

        >>> w = Parameter(tinynet.zeros(3))
        >>> w.requires_grad
        True
    """

    __slots__ = ()  # Tensor uses __slots__; keep Parameters just as small

    def __init__(self, data=None, requires_grad: bool = True):
        if data is None:
            data = np.empty((0,), dtype=_dt.get_default_dtype())
        elif isinstance(data, Tensor):
            data = data.data  # share the array, as torch.nn.Parameter shares storage
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
