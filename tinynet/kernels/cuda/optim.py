"""Fused optimiser updates on the GPU: one kernel per parameter per step, in place.

The formulas, and the order of their operations, are those of :mod:`tinynet.optim.sgd` and
:mod:`tinynet.optim.adam` (PyTorch's single-tensor order), so results agree to rounding.
Written as array expressions, an Adam step is about a dozen kernels, each reading and writing
whole parameter-sized arrays; fused, every element is read once and written once.

Parallel decomposition: one thread per parameter element (a grid-stride loop). Each thread
reads its element of the parameter, the gradient and the state buffers, computes the update in
registers and writes the parameter and the buffers back in place. Elements never interact.

Every array is updated in place and no array is allocated: the state buffers are made once
by the optimiser, so a step can be captured in a CUDA graph. The hyper-parameters (lr, the bias
corrections of Adam) are passed as scalars, which a captured graph would freeze at their
values at capture time; to follow a learning-rate schedule or Adam's step count under graph
replay they will have to live in a small device array that a kernel updates.
"""
from __future__ import annotations

import math

from numba import cuda

from ._numba_launch import THREADS, blocks_for, launch

__all__ = ["fusable", "sgd_step_cuda", "adam_step_cuda"]


@cuda.jit(cache=True)
def _sgd_kernel(param, grad, buf, lr, weight_decay, momentum, one_minus_dampening,
                maximize, nesterov, first_step):
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        g = -grad[i] if maximize else grad[i]
        if weight_decay != 0:
            g = g + weight_decay * param[i]
        if momentum != 0:
            b = g if first_step else buf[i] * momentum + one_minus_dampening * g
            buf[i] = b
            g = g + momentum * b if nesterov else b
        param[i] = param[i] - lr * g


@cuda.jit(cache=True)
def _adam_kernel(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, weight_decay, decay, one_minus_beta1,
                 beta2, one_minus_beta2, eps, step_size, bias_correction2_sqrt, maximize, decoupled, amsgrad):
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        g = -grad[i] if maximize else grad[i]
        p = param[i]
        if weight_decay != 0:
            if decoupled:
                p = p * decay                       # AdamW: shrink the weight itself
            else:
                g = g + weight_decay * p            # Adam: L2 penalty in the gradient
        m = exp_avg[i] + (g - exp_avg[i]) * one_minus_beta1
        v = exp_avg_sq[i] * beta2 + (g * one_minus_beta2) * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if amsgrad:
            old = max_exp_avg_sq[i]
            v = v if (v >= old or v != v) else old  # the maximum, NaN if either is (as np.maximum)
            max_exp_avg_sq[i] = v
        denom = math.sqrt(v) / bias_correction2_sqrt + eps
        param[i] = p - (m / denom) * step_size


def fusable(*arrays) -> bool:
    """Whether the fused kernels can update these arrays in place: all C-contiguous, one dtype."""
    return all(a.flags.c_contiguous and a.dtype == arrays[0].dtype for a in arrays)


def sgd_step_cuda(param, grad, momentum_buffer, *, lr, momentum, dampening, weight_decay, nesterov, maximize,
                  first_step):
    """One SGD step (see :class:`tinynet.optim.SGD`) on ``param`` in place, and on
    ``momentum_buffer`` (used when momentum != 0; on the ``first_step`` it is set to the
    gradient). All arrays C-contiguous, of one dtype and shape. (An absent buffer is replaced
    by ``grad``, which the kernel then neither reads as a buffer nor writes.)"""
    dtype = param.dtype.type
    flat = param.reshape(-1)
    launch(_sgd_kernel, blocks_for(flat.size), THREADS, param,
           flat, grad.reshape(-1), (grad if momentum_buffer is None else momentum_buffer).reshape(-1),
           dtype(lr), dtype(weight_decay), dtype(momentum), dtype(1 - dampening),
           bool(maximize), bool(nesterov), bool(first_step))


def adam_step_cuda(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, lr, beta1, beta2, eps, weight_decay,
                   step, maximize, decoupled_weight_decay, amsgrad):
    """One Adam/AdamW step (see :class:`tinynet.optim.Adam`) at step number ``step`` (1 for the
    first), on ``param`` and the state buffers in place. ``max_exp_avg_sq``: with amsgrad only
    (else None). All arrays C-contiguous, of one dtype and shape."""
    dtype = param.dtype.type
    flat = param.reshape(-1)
    launch(_adam_kernel, blocks_for(flat.size), THREADS, param,
           flat, grad.reshape(-1), exp_avg.reshape(-1), exp_avg_sq.reshape(-1),
           (grad if max_exp_avg_sq is None else max_exp_avg_sq).reshape(-1),
           dtype(weight_decay), dtype(1 - lr * weight_decay), dtype(1 - beta1), dtype(beta2), dtype(1 - beta2),
           dtype(eps), dtype(lr / (1 - beta1 ** step)), dtype((1 - beta2 ** step) ** 0.5),
           bool(maximize), bool(decoupled_weight_decay), bool(amsgrad))
