"""Dropout: during training, zero each element (or each whole channel) with probability ``p``
and scale the survivors by ``1 / (1 - p)``.

The scaling ("inverted dropout") keeps the expected value of every element unchanged, so at
evaluation time dropout is simply the identity. The random mask comes from the device's seeded
generator (:func:`tinynet.random.generator_for`): ``tinynet.manual_seed`` makes it repeatable.

On a GPU (and on the simulated device, through the CUDA emulator) the mask comes from a counter-based
generator instead (Philox, ``tinynet/kernels/cuda/dropout.py``): one kernel draws it from a
``[seed, offset]`` pair kept in device memory, applies it (dropout and dropout2d alike) and
advances the offset, so drawing a mask never
involves the host and a captured CUDA graph draws a new mask on every replay.
"""
from __future__ import annotations

import warnings
import weakref

from ..autograd import Function
from ..kernels.dispatch import uses_cuda
from .. import random as _random
from ..random import generator_for
from ..tensor import Tensor
from .activation import finish_inplace
from ..recording import recordable

__all__ = ["dropout", "dropout2d"]


class Dropout(Function):
    """y = x * mask, with ``mask`` already holding 0 for dropped elements and 1/(1-p) for kept
    ones (and broadcasting over whole channels for dropout2d).

    Backward: dx = dy * mask, the same mask: dropped elements get no gradient.
    """

    @staticmethod
    def forward(ctx, x, mask):
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


class DropoutDraw(Function):
    """Dropout on a GPU in one kernel: forward draws the mask from ``generator``'s Philox state
    and applies it (``y = x * mask``). ``channel_dims``: None for a value per element (dropout),
    2 (or 1 for an unbatched (C, H, W) input) for a value per channel (dropout2d).

    Backward: dx = dy * mask, as for :class:`Dropout`.
    """

    @staticmethod
    def forward(ctx, x, generator, p, channel_dims=None):
        from ..kernels.cuda.dropout import dropout_cuda
        # The state is looked up here, not by the caller: a replayed step (compile_step) runs
        # forward again, and must see a reseeded generator.
        y, mask = dropout_cuda(_philox_state(generator, ctx.xp), x, p, channel_dims)
        ctx.save_for_backward(mask)
        return y

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None, None, None


@recordable
def _scaled_mask(input: Tensor, p: float, shape):
    """A random mask of ``shape`` on the CPU: 0 with probability p, else 1/(1-p), in the input's dtype."""
    keep = generator_for(input.device).uniform(shape, 0, 1, input.dtype) >= p
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)  # p == 1 drops everything (no 1/0)
    return keep.astype(input.dtype) * scale


# The Philox state ([seed, offset, blocks_done] on the device) of each generator that has drawn a GPU mask,
# with the seeding it was made for: the generator's seed and its ``_rng`` object, which every
# ``manual_seed`` replaces, so that reseeding (even with the same seed) restarts the state.
_philox_states: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _philox_state(generator, xp):
    """The device array ``[seed, offset, blocks_done]`` that ``generator``'s dropout masks come
    from on a GPU: made once per generator, and restarted in place when it is reseeded."""
    from ..kernels.cuda.dropout import philox_state, reseed
    seed, rng = generator.initial_seed(), getattr(generator, "_rng", None)
    entry = _philox_states.get(generator)
    if entry is None:
        entry = _philox_states[generator] = [seed, rng, philox_state(xp, seed)]
    elif entry[0] != seed or entry[1] is not rng:
        reseed(entry[2], seed)
        entry[:2] = seed, rng
    return entry[2]


def _follow_reseed(generator) -> None:
    """Restart ``generator``'s device Philox state as soon as it is reseeded (a CUDA graph
    draws masks from it without running :func:`_philox_state`)."""
    if generator in _philox_states:
        _philox_state(generator, None)


_random._on_manual_seed.append(_follow_reseed)


def _check(op: str, input, p) -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(input).__name__}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got p={p}")
    if input.dtype.kind != "f":
        raise RuntimeError(f"{op}: expected a floating-point input, got dtype {input.dtype}")


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element of ``input`` with probability ``p`` and scale the rest by ``1/(1-p)``.

    The identity when ``training`` is False or ``p == 0``; all zeros when ``p == 1``.
    ``inplace=True`` overwrites ``input`` only when no graph is being recorded (see
    ``activation.py``); always use the return value.
    """
    _check("dropout", input, p)
    if not training or p == 0:
        return input
    if uses_cuda(input.data):  # one kernel draws the mask and applies it
        return finish_inplace(input, DropoutDraw.apply(input, generator_for(input.device), p), inplace)
    mask = _scaled_mask(input, p, input.shape)
    return finish_inplace(input, Dropout.apply(input, mask), inplace)


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels: each (n, c) feature map of an (N, C, H, W) input (or each c of an
    unbatched (C, H, W) input) is dropped with probability ``p``; kept ones are scaled by
    ``1/(1-p)``. Neighbouring pixels are strongly correlated, so dropping single pixels would
    regularise little; dropping a channel removes a whole feature.

    Note: for 3-D inputs PyTorch currently (with a warning) drops along dim 1 as if the input
    were (N, C, L); tinynet follows the documented (C, H, W) meaning. Other ranks warn as in
    PyTorch and use dims 0 and 1 as (N, C).
    """
    op = "dropout2d"
    _check(op, input, p)
    if input.ndim not in (3, 4):
        warnings.warn(f"{op}: Received a {input.ndim}-D input to dropout2d, which is deprecated and will result in "
                      "an error in a future release. To retain the behavior and silence this warning, please use "
                      "dropout instead.", UserWarning, stacklevel=2)
        if input.ndim < 2:
            raise RuntimeError(f"{op}: expected an input with at least 2 dims (N, C, ...), got shape "
                               f"{tuple(input.shape)}")
    if not training or p == 0:
        return input
    # One draw per channel; the 1s broadcast it over the channel's spatial positions.
    channel_dims = 1 if input.ndim == 3 else 2
    if uses_cuda(input.data):  # one kernel draws the channels' mask and applies it
        return finish_inplace(input, DropoutDraw.apply(input, generator_for(input.device), p, channel_dims), inplace)
    mask_shape = tuple(input.shape[:channel_dims]) + (1,) * (input.ndim - channel_dims)
    mask = _scaled_mask(input, p, mask_shape)
    return finish_inplace(input, Dropout.apply(input, mask), inplace)
