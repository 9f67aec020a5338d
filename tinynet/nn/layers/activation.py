"""Activation layers: each wraps one elementwise nonlinearity from ``nn.functional`` (where
its forward and backward live) so that it can sit in a ``Sequential``.

``inplace=True`` is passed on to the op, which overwrites the input only when no graph is
being recorded for it (inference); during training it computes out of place, since backward
still needs the input.
"""
from __future__ import annotations

from ...creation import empty
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter

__all__ = ["ReLU", "LeakyReLU", "PReLU", "ELU", "GELU", "SiLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax"]


def _inplace_repr(inplace: bool) -> str:
    return "inplace=True" if inplace else ""


class ReLU(Module):
    """``relu(x) = max(0, x)``. Backward: ``dx = dy * (x > 0)``.

    Shape: any; output has the input's shape.

    Example::

        >>> nn.ReLU()(tinynet.tensor([-1.0, 2.0]))
        tensor([0., 2.])
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return F.relu(input, self.inplace)

    def extra_repr(self) -> str:
        return _inplace_repr(self.inplace)


class LeakyReLU(Module):
    """``leaky_relu(x) = x if x >= 0 else negative_slope * x``.
    Backward: ``dx = dy * (1 if x > 0 else negative_slope)``.

    Args:
        negative_slope: slope for negative inputs. Default: 0.01.

    Shape: any; output has the input's shape.
    """

    def __init__(self, negative_slope: float = 1e-2, inplace: bool = False):
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope, self.inplace)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class PReLU(Module):
    """Leaky ReLU whose negative slope ``a`` is learned: ``prelu(x) = max(0, x) + a * min(0, x)``.
    Backward: ``dx = dy * (1 if x > 0 else a)``, ``da = sum(dy * min(0, x))`` (per channel).

    Args:
        num_parameters: 1 (one slope shared by all channels) or the number of channels
            (dimension 1 of the input). Default: 1.
        init: the initial slope. Default: 0.25.

    Shape: any (channels in dimension 1); output has the input's shape.

    Attributes:
        weight: ``(num_parameters,)``, the slopes.
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device=None, dtype=None):
        super().__init__()
        self.num_parameters = num_parameters
        self.init = init
        self.weight = Parameter(empty(num_parameters, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.constant_(self.weight, self.init)

    def forward(self, input):
        return F.prelu(input, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class ELU(Module):
    """``elu(x) = x if x > 0 else alpha * (exp(x) - 1)``.
    Backward: ``dx = dy * (1 if x > 0 else alpha * exp(x))``.

    Args:
        alpha: the value ELU tends to for large negative inputs is ``-alpha``. Default: 1.0.

    Shape: any; output has the input's shape.
    """

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input):
        return F.elu(input, self.alpha, self.inplace)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class GELU(Module):
    """``gelu(x) = x * Phi(x)``, Phi the standard normal CDF (``approximate='tanh'`` uses
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``).
    Backward: ``dx = dy * (Phi(x) + x * phi(x))``, phi the normal density.

    Args:
        approximate: ``'none'`` or ``'tanh'``. Default: ``'none'``.

    Shape: any; output has the input's shape.
    """

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input):
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """``silu(x) = x * sigmoid(x)`` (a.k.a. swish).
    Backward: ``dx = dy * s * (1 + x * (1 - s))`` with ``s = sigmoid(x)``.

    Shape: any; output has the input's shape.
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return F.silu(input, self.inplace)

    def extra_repr(self) -> str:
        return _inplace_repr(self.inplace)


class Sigmoid(Module):
    """``sigmoid(x) = 1 / (1 + exp(-x))``. Backward: ``dx = dy * s * (1 - s)``.

    Shape: any; output has the input's shape.
    """

    def forward(self, input):
        return F.sigmoid(input)


class Tanh(Module):
    """``tanh(x)``. Backward: ``dx = dy * (1 - tanh(x)**2)``.

    Shape: any; output has the input's shape.
    """

    def forward(self, input):
        return F.tanh(input)


class Softmax(Module):
    """``softmax(x)_i = exp(x_i) / sum_j exp(x_j)`` along ``dim``: turns scores into
    probabilities. Backward: ``dx = s * (dy - sum(dy * s, dim))`` with ``s`` the output.

    Args:
        dim: the dimension that sums to 1.

    Shape: any; output has the input's shape.
    """

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return F.softmax(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """``log_softmax(x)_i = x_i - logsumexp(x)`` along ``dim`` (stabler than log(softmax)).
    Backward: ``dx = dy - exp(out) * sum(dy, dim)``.

    Args:
        dim: the dimension to normalise over.

    Shape: any; output has the input's shape.
    """

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return F.log_softmax(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
