"""``Linear`` and ``Identity``: the fully connected layer, and the layer that does nothing."""
from __future__ import annotations

import math

from ...creation import empty
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter

__all__ = ["Linear", "Identity"]


class Identity(Module):
    """Returns its input unchanged; arguments are accepted and ignored. Useful as a placeholder
    (e.g. to remove a classifier head: ``model.fc = nn.Identity()``)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """Applies an affine map: ``y = x @ weight.T + bias``.

    Backward (done by ``F.linear``): ``dx = dy @ weight``, ``dweight = dy.T @ x`` summed over
    the batch, ``dbias = dy`` summed over the batch.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: if False, the layer learns no additive bias. Default: True.

    Shape:
        - Input: ``(*, in_features)``, any number of leading dimensions.
        - Output: ``(*, out_features)``.

    Attributes:
        weight: ``(out_features, in_features)``, initialised U(-k, k), k = 1/sqrt(in_features).
        bias: ``(out_features,)``, initialised U(-k, k).

    Example::

        >>> fc = nn.Linear(20, 30)
        >>> fc(tinynet.randn(128, 20)).shape
        (128, 30)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(empty((out_features, in_features), device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(empty(out_features, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # kaiming_uniform_ with a=sqrt(5) gives bound = sqrt(6 / ((1 + 5) * fan_in)) = 1/sqrt(fan_in):
        # PyTorch's historical default, kept so that tinynet models start where PyTorch's do.
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        if input.ndim == 0 or input.shape[-1] != self.in_features:
            raise RuntimeError(f"Linear: expected input with last dimension {self.in_features} (in_features), "
                               f"got input of shape {tuple(input.shape)}")
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
