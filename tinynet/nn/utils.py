"""Gradient clipping, as ``torch.nn.utils``: ``clip_grad_norm_`` and ``clip_grad_value_``
(with the two halves of the first, ``get_total_norm`` and ``clip_grads_with_norm_``).

Clipping runs between ``loss.backward()`` and ``optimizer.step()``, in place on ``p.grad``.
The norm stays on the device: the scale factor ``min(1, max_norm / (norm + 1e-6))`` is computed
there and multiplied in without an ``if norm > max_norm`` test, which would have to wait for
the GPU to send the norm back to Python. On the GPU the norm of all gradients is one launch and
the scaling another (multi-tensor kernels, ``tinynet/kernels/cuda/optim.py``).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..kernels.dispatch import uses_cuda
from ..tensor import Tensor
from ..recording import recordable

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_"]


def _vector_norm(array, norm_type: float):
    """The p-norm of all elements of ``array``, as a 0-d array on its device."""
    xp = backend.get_array_module(array)
    if array.size == 0:
        return xp.zeros((), array.dtype)
    if norm_type == math.inf:
        return xp.abs(array).max()
    if norm_type == -math.inf:
        return xp.abs(array).min()
    if norm_type == 0:
        return (array != 0).sum(dtype=array.dtype)
    if norm_type == 1:
        return xp.abs(array).sum()
    if norm_type == 2:
        return xp.sqrt(xp.vdot(array.ravel(), array.ravel()))
    return (xp.abs(array) ** norm_type).sum() ** (1.0 / norm_type)


@recordable
def get_total_norm(tensors, norm_type: float = 2.0, error_if_nonfinite: bool = False, foreach=None) -> Tensor:
    """The norm of all ``tensors`` together, as if they were one flat vector: the norm of their
    norms. A 0-d tensor on the first tensor's device (0.0 on the CPU when there are none).

    ``error_if_nonfinite=True`` raises a RuntimeError when the norm is nan or inf; checking
    needs the value on the host, so only that option waits for the GPU.
    """
    tensors = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    norm_type = float(norm_type)
    if not tensors:
        return Tensor._wrap(np.zeros((), np.float32))
    arrays = [t.data for t in tensors]
    if _multi_tensor(arrays) and (norm_type > 0 or norm_type == math.inf):
        # On the GPU: one launch over all the arrays (kernels/cuda/optim.py), the same p-norm.
        from ..kernels.cuda.optim import total_norm_cuda
        total = total_norm_cuda(arrays, norm_type)
        xp = backend.get_array_module(total)
    else:
        first_device = tensors[0].device
        norms = [backend.to_device(_as_array(_vector_norm(a, norm_type)), first_device) for a in arrays]
        xp = backend.get_array_module(norms[0])
        total = _as_array(_vector_norm(xp.stack(norms), norm_type))
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is "
                           "non-finite, so it cannot be clipped. To disable this error and scale the "
                           "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`")
    return Tensor._wrap(total)


@recordable
def clip_grads_with_norm_(parameters, max_norm: float, total_norm: Tensor, foreach=None) -> None:
    """Scale every ``p.grad`` in place by ``min(1, max_norm / (total_norm + 1e-6))``."""
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad.data for p in parameters if p.grad is not None]
    if not grads:
        return
    total = total_norm.data if isinstance(total_norm, Tensor) else total_norm
    if (_multi_tensor(grads) and type(total) is type(grads[0]) and total.dtype == grads[0].dtype
            and backend.device_of(total) == backend.device_of(grads[0])):
        from ..kernels.cuda.optim import clip_scale_cuda
        clip_scale_cuda(grads, total, max_norm)  # the lines below for all gradients in one launch
        return
    xp = backend.get_array_module(total)
    # The clamp to 1 means gradients are never scaled up; multiplying by 1 costs less than the
    # host sync an `if` would need.
    coef = xp.minimum(float(max_norm) / (total + 1e-6), 1.0)
    for grad in grads:
        grad *= backend.to_device(_as_array(coef), backend.device_of(grad)).astype(grad.dtype, copy=False)


@recordable
def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach=None) -> Tensor:
    r"""Rescale the gradients of ``parameters`` in place so that their total norm (all gradients
    seen as one vector) is at most ``max_norm``:

    .. code-block:: text

        total_norm = ||(||g_1||, ||g_2||, ...)||           (p-norm, p = norm_type; 'inf' for max |g|)
        g_i       *= min(1, max_norm / (total_norm + 1e-6))

    Args:
        parameters: a tensor or an iterable of tensors (those without ``.grad`` are skipped).
        max_norm: the largest total norm allowed.
        norm_type: the p of the p-norm; ``float('inf')`` for the largest absolute value. Default: 2.
        error_if_nonfinite: raise a RuntimeError if the total norm is nan or inf (this check
            waits for the GPU). Default: False.
        foreach: accepted for PyTorch compatibility; ignored.

    Returns:
        The total norm of the gradients before clipping, as a 0-d tensor (on the device: read it
        with ``.item()`` only when you need the number, since that waits for the GPU).
    """
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    total_norm = get_total_norm(grads, norm_type, error_if_nonfinite)
    clip_grads_with_norm_(parameters, max_norm, total_norm)
    return total_norm


@recordable
def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clamp every gradient in place to ``[-clip_value, clip_value]``.

    Args:
        parameters: a tensor or an iterable of tensors (those without ``.grad`` are skipped).
        clip_value: the largest absolute value allowed.
        foreach: accepted for PyTorch compatibility; ignored.
    """
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    clip_value = float(clip_value)
    for p in parameters:
        if p.grad is not None:
            p.grad.xp.clip(p.grad.data, -clip_value, clip_value, out=p.grad.data)


def _multi_tensor(arrays) -> bool:
    """Whether one GPU kernel can take all ``arrays``: on the CUDA path, C-contiguous, of one
    dtype and device (see ``tinynet/kernels/cuda/optim.py``)."""
    first = arrays[0]
    if not uses_cuda(first):
        return False
    device = backend.device_of(first)
    return all(type(a) is type(first) and a.dtype == first.dtype and a.flags.c_contiguous
               and backend.device_of(a) == device for a in arrays)


def _as_array(value):
    """NumPy reductions return scalars (``np.float32``), not 0-d arrays; make them arrays again."""
    return value if backend.get_array_module(value) is not np else np.asarray(value)
