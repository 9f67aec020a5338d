"""The SGD update on the CPU as one compiled loop: each element of the parameter, its gradient
and its momentum buffer is read once and written once.

The readable version is ``_sgd_update`` in :mod:`tinynet.optim.sgd`: array expressions, one
pass over memory per operation (the weight decay, the buffer's decay and its update, the step)
and a temporary for each. For the MLP of the reports (5.5M parameters) those passes took 7.9 ms
of a 50 ms step on one core. Here the same arithmetic runs element by element, in the
parameter's dtype and in the same order (hyperparameters are passed in that dtype, so a
float32 model is updated in float32 exactly as the array code does: the results are identical),
on numba's threads when the parameter is large enough (:mod:`tinynet.kernels.threads`).
The GPU has its own multi-tensor kernel (:mod:`tinynet.kernels.cuda.optim`).
"""
from __future__ import annotations

import numba

from .threads import Loops

__all__ = ["sgd_update_numba"]


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
