"""``tinynet.nn.init``: fill a weight tensor in place with a chosen initial distribution.

Why the scale matters: a layer computes sums over ``fan_in`` inputs, so with weights of
variance ``v`` its outputs have variance about ``fan_in * v`` times the inputs'. Picking
``v = gain**2 / fan_in`` (Kaiming/He) keeps the signal's size constant through a deep stack,
where ``gain`` makes up for what the nonlinearity removes (ReLU zeroes half: gain sqrt(2)).
Xavier/Glorot averages the forward (fan_in) and backward (fan_out) conditions.

Every function works in place under ``no_grad`` (initialising is not part of the graph),
draws from the tensor's device generator (so ``tinynet.manual_seed`` makes it repeatable),
and returns the tensor. Formulas and fan rules are PyTorch's.
"""
from __future__ import annotations

import math
import warnings

from .. import backend
from ..autograd import no_grad
from ..random import generator_for
from ..tensor import Tensor

__all__ = [
    "calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
]

_LINEAR_FNS = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
               "conv_transpose3d", "sigmoid")


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for a nonlinearity: the factor by which to scale a weight's
    standard deviation so that activations keep their variance through the layer.

    ============  ============================
    nonlinearity  gain
    ============  ============================
    linear/conv   1
    sigmoid       1
    tanh          5/3
    relu          sqrt(2)
    leaky_relu    sqrt(2 / (1 + slope**2)), slope = ``param`` (default 0.01)
    selu          3/4
    ============  ============================
    """
    if nonlinearity in _LINEAR_FNS:
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope {param} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """How many inputs feed each output (fan_in) and how many outputs each input feeds
    (fan_out). For a weight of shape ``(out, in, *kernel)``: ``fan_in = in * prod(kernel)``,
    ``fan_out = out * prod(kernel)``."""
    if tensor.dim() < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions "
                         f"(got shape {tuple(tensor.shape)})")
    receptive_field = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def _calculate_correct_fan(tensor: Tensor, mode: str) -> int:
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of ['fan_in', 'fan_out']")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _is_empty(tensor: Tensor) -> bool:
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op")
        return True
    return False


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator=None) -> Tensor:
    """Fill ``tensor`` with samples of U(a, b)."""
    with no_grad():
        return tensor.uniform_(a, b, generator=generator)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
    """Fill ``tensor`` with samples of N(mean, std**2)."""
    with no_grad():
        return tensor.normal_(mean, std, generator=generator)


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator=None) -> Tensor:
    """Fill ``tensor`` with samples of N(mean, std**2) conditioned on lying in [a, b].

    Drawn by rejection: samples outside [a, b] are redrawn until none are left (fast when the
    interval holds most of the mass, as with the usual ±2 std).
    """
    gen = generator_for(tensor.device, generator)
    values = gen.normal(tensor.shape, mean, std, tensor.dtype)
    outside = (values < a) | (values > b)
    while backend.item(outside.any()):  # an explicit host read per round: fine at init time
        values[outside] = gen.normal((int(backend.item(outside.sum())),), mean, std, tensor.dtype)
        outside = (values < a) | (values > b)
    tensor.data[...] = values
    return tensor


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill ``tensor`` with the value ``val``."""
    with no_grad():
        return tensor.fill_(val)


def ones_(tensor: Tensor) -> Tensor:
    """Fill ``tensor`` with 1."""
    return constant_(tensor, 1.0)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill ``tensor`` with 0."""
    with no_grad():
        return tensor.zero_()


def eye_(tensor: Tensor) -> Tensor:
    """Fill a 2-D ``tensor`` with the identity matrix (ones on the diagonal, zeros elsewhere)."""
    if tensor.dim() != 2:
        raise ValueError(f"eye_: only tensors with 2 dimensions are supported, got shape {tuple(tensor.shape)}")
    with no_grad():
        tensor.data[...] = tensor.xp.eye(*tensor.shape, dtype=tensor.dtype)
    return tensor


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """Xavier/Glorot uniform: U(-bound, bound) with
    ``bound = gain * sqrt(6 / (fan_in + fan_out))`` (std ``gain * sqrt(2 / (fan_in + fan_out))``)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    bound = math.sqrt(3.0) * std  # a uniform on [-b, b] has std b / sqrt(3)
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """Xavier/Glorot normal: N(0, std**2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator=None) -> Tensor:
    """Kaiming/He uniform: U(-bound, bound) with ``bound = gain * sqrt(3 / fan)``.

    Args:
        a: the negative slope of the leaky_relu that follows (only used with ``'leaky_relu'``).
        mode: ``'fan_in'`` keeps the forward activations' variance, ``'fan_out'`` the
            backward gradients'.
        nonlinearity: passed to :func:`calculate_gain`.
    """
    if _is_empty(tensor):
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator=None) -> Tensor:
    """Kaiming/He normal: N(0, std**2) with ``std = gain / sqrt(fan)`` (arguments as
    :func:`kaiming_uniform_`)."""
    if _is_empty(tensor):
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return normal_(tensor, 0.0, std, generator)
