"""The SGD and Adam updates on the CPU as compiled loops: each element of the parameter, its
gradient and its state is read once and written once.

The readable versions are ``_sgd_update`` in :mod:`tinynet.optim.sgd` and ``_adam_update`` in
:mod:`tinynet.optim.adam`: array expressions, one pass over memory per operation and a
temporary for some. For the MLP of the reports (5.5M parameters) SGD's passes took 7.9 ms of a
50 ms step on one core; Adam's took 157 ms of vgg_bn's 380 ms step at two threads. Here the
same arithmetic runs element by element, in the parameter's dtype and in the same order
(hyperparameters are passed in that dtype, rounded from the Python floats as the array code
rounds them, so a float32 model is updated exactly as the array code does: the results are
identical), on numba's threads when the parameter is large enough
(:mod:`tinynet.kernels.threads`). The GPU has its own multi-tensor kernels
(:mod:`tinynet.kernels.cuda.optim`).
"""
from __future__ import annotations

import numba
import numpy as np

from .threads import Loops

__all__ = ["sgd_update_numba", "adam_update_numba"]


def _sgd_driver(parallel: bool):
    loop = numba.prange if parallel else range  # see im2col._im2col_driver

    @numba.njit(parallel=parallel, cache=True)
    def sgd_loops(param, grad, buf, lr, momentum, keep, weight_decay, nesterov, maximize, first_step):
        # ``lr``, ``momentum``, ``keep`` (1 - dampening) and ``weight_decay``: scalars of param's
        # dtype, rounded from the Python floats as the array code rounds them.
        for i in loop(param.size):
            g = -grad[i] if maximize else grad[i]
            if weight_decay != 0:
                g = g + weight_decay * param[i]
            if momentum != 0:
                if first_step:          # the buffer starts as the gradient itself, undamped
                    b = g
                else:
                    b = buf[i] * momentum
                    b = b + (g if keep == 1 else keep * g)
                buf[i] = b
                g = g + momentum * b if nesterov else b
            param[i] = param[i] - lr * g
    return sgd_loops


_sgd_loops = Loops(_sgd_driver)


def sgd_update_numba(param, grad, buf, *, lr, momentum, dampening, weight_decay, nesterov, maximize,
                     first_step) -> None:
    """One SGD step in place on ``param`` and ``buf`` (C-contiguous arrays of one float dtype and
    shape; ``buf`` is written, not read, on the ``first_step`` of momentum, and unused without
    momentum). The same update as :func:`tinynet.optim.sgd._sgd_update`."""
    scalar = param.dtype.type
    flat = param.reshape(-1)
    _sgd_loops(param.size, flat, grad.reshape(-1), flat if buf is None else buf.reshape(-1), scalar(lr),
               scalar(momentum), scalar(1 - dampening), scalar(weight_decay), bool(nesterov), bool(maximize),
               bool(first_step))


def _adam_driver(parallel: bool):
    loop = numba.prange if parallel else range  # see im2col._im2col_driver

    @numba.njit(parallel=parallel, cache=True)
    def adam_loops(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, weight_decay, decay, one_minus_beta1, beta2,
                   one_minus_beta2, bias_correction2_sqrt, eps, step_size, maximize, decoupled, amsgrad):
        # Every scalar is of param's dtype (see sgd_loops); the steps are _adam_update's, in order.
        for i in loop(param.size):
            g = -grad[i] if maximize else grad[i]
            p = param[i]
            if weight_decay != 0:
                if decoupled:
                    p = p * decay
                else:
                    g = g + weight_decay * p
            m = exp_avg[i] + (g - exp_avg[i]) * one_minus_beta1
            v = exp_avg_sq[i] * beta2 + (g * one_minus_beta2) * g
            exp_avg[i] = m
            exp_avg_sq[i] = v
            if amsgrad:  # numpy.maximum(max_v, v): NaN wins
                top = max_exp_avg_sq[i]
                v = top if (top > v) | (top != top) else v
                max_exp_avg_sq[i] = v
            denominator = np.sqrt(v) / bias_correction2_sqrt + eps
            param[i] = p - (m / denominator) * step_size
    return adam_loops


_adam_loops = Loops(_adam_driver)


def adam_update_numba(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, step, lr, beta1, beta2, eps,
                      weight_decay, maximize, decoupled_weight_decay) -> None:
    """One Adam (or AdamW, ``decoupled_weight_decay``) step at step count ``step`` (1 for the
    first), in place on ``param`` and the state arrays (C-contiguous, one float dtype and
    shape; ``max_exp_avg_sq`` None without amsgrad). The same update as
    :func:`tinynet.optim.adam._adam_update`."""
    scalar = param.dtype.type
    flat = param.reshape(-1)
    amsgrad = max_exp_avg_sq is not None
    _adam_loops(param.size, flat, grad.reshape(-1), exp_avg.reshape(-1), exp_avg_sq.reshape(-1),
                (max_exp_avg_sq if amsgrad else exp_avg).reshape(-1), scalar(weight_decay),
                scalar(1 - lr * weight_decay), scalar(1 - beta1), scalar(beta2), scalar(1 - beta2),
                scalar((1 - beta2 ** step) ** 0.5), scalar(eps), scalar(lr / (1 - beta1 ** step)), bool(maximize),
                bool(decoupled_weight_decay), amsgrad)
