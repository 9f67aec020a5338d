"""Stochastic gradient descent, with optional momentum, Nesterov momentum and weight decay."""
from __future__ import annotations

import numpy as np

from ..kernels.dispatch import uses_numba
from ..kernels.optim import sgd_update_numba
from ..tensor import Tensor
from .optimizer import Optimizer, plain_like
from ..recording import recordable

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Stochastic gradient descent (optionally with momentum), as ``torch.optim.SGD``.

    For each parameter :math:`\theta` with gradient :math:`g`, at step :math:`t`:

    .. code-block:: text

        g   = -g if maximize else g
        g   = g + weight_decay * θ                     (if weight_decay != 0)
        if momentum != 0:
            b = g                                      (first step)
            b = momentum * b + (1 - dampening) * g     (later steps)
            g = g + momentum * b  if nesterov  else  b
        θ   = θ - lr * g

    Args:
        params: tensors to optimise, or parameter groups (dicts).
        lr: learning rate. Default: 1e-3.
        momentum: momentum factor. Default: 0.
        dampening: dampening of the momentum (applied from the second step). Default: 0.
        weight_decay: L2 penalty. Default: 0.
        nesterov: use Nesterov momentum (needs momentum > 0 and dampening = 0). Default: False.
        maximize: maximise the objective instead of minimising it. Default: False.

    State per parameter: ``'momentum_buffer'`` (only when momentum != 0).

    Example:
        >>> optimizer = tinynet.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> optimizer.zero_grad()
        >>> loss_fn(model(input), target).backward()
        >>> optimizer.step()
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False):
        if lr < 0.0:
            raise ValueError(f"SGD: Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"SGD: Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"SGD: Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    @recordable
    def step(self, closure=None):
        """Perform one update of every parameter that has a gradient (see the class docstring)."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            params = self._multi_tensor_params(group)
            if params is not None:
                _sgd_multi_tensor(params, self.state, group)
                continue
            for p in group["params"]:
                if p.grad is not None and not _sgd_update_compiled(p, self.state[p], group):
                    _sgd_update(p, self.state[p], group)
        return loss


def _sgd_multi_tensor(params, state: dict, group: dict) -> None:
    """The SGD step of all ``params`` (all with gradients, on the GPU) in one kernel launch, or
    two when some take their first momentum step and others do not: the kernel sets a first
    step's buffer to the gradient (allocated here, once) and folds the gradient into the others."""
    from ..kernels.cuda.optim import fusable, sgd_step_cuda
    from ..kernels.cuda.scalars import device_scalars
    momentum = group["momentum"]
    rows = {True: [], False: []}   # first step?
    for p in params:
        buf = state[p].get("momentum_buffer") if momentum != 0 else None
        first_step = momentum != 0 and buf is None
        if first_step:
            buf = state[p]["momentum_buffer"] = Tensor._wrap(p.xp.empty_like(p.data))
        elif buf is not None and not fusable(p.data, buf.data):  # a loaded buffer of another layout
            buf.data = p.xp.ascontiguousarray(buf.data, dtype=p.data.dtype)
        rows[first_step].append((p.data, p.grad.data, None if buf is None else buf.data))
    for first_step, group_rows in rows.items():
        if group_rows:
            # The learning rate: an argument, or in a CUDA graph read from device memory (scalars.py).
            hyper = device_scalars(("sgd", id(group)), lambda: (group["lr"],), like=group_rows[0][0])
            sgd_step_cuda(group_rows, hyper=hyper, momentum=momentum, dampening=group["dampening"],
                          weight_decay=group["weight_decay"], nesterov=group["nesterov"],
                          maximize=group["maximize"], first_step=first_step)


def _sgd_update_compiled(p: Tensor, state: dict, group: dict) -> bool:
    """:func:`_sgd_update` as one compiled loop (``tinynet/kernels/optim.py``: one pass over
    memory instead of one per operation, identical results) for float32/float64 NumPy
    parameters with gradients and buffers of the same layout. Returns False, having done
    nothing, for anything else."""
    data, grad = p.data, p.grad.data
    if not (uses_numba(data) and data.flags.c_contiguous and plain_like(grad, data)):
        return False
    momentum = group["momentum"]
    buf = state.get("momentum_buffer") if momentum != 0 else None
    if buf is not None and not plain_like(buf.data, data):
        return False
    first_step = momentum != 0 and buf is None
    if first_step:
        buf = state["momentum_buffer"] = Tensor._wrap(np.empty_like(data))
    sgd_update_numba(data, grad, None if buf is None else buf.data, lr=group["lr"], momentum=momentum,
                     dampening=group["dampening"], weight_decay=group["weight_decay"], nesterov=group["nesterov"],
                     maximize=group["maximize"], first_step=first_step)
    return True


def _sgd_update(p: Tensor, state: dict, group: dict) -> None:
    """One SGD step for one parameter, in place on ``p.data`` and the momentum buffer.
    ``p.grad`` is left as it is; the temporaries below exist only when their option is on.
    This is the readable version: on a GPU one kernel updates all parameters at once instead
    (:func:`_sgd_multi_tensor`), and on the CPU float32/float64 arrays take the same arithmetic
    as one compiled loop (:func:`_sgd_update_compiled`)."""
    lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
    weight_decay, nesterov = group["weight_decay"], group["nesterov"]
    grad = p.grad.data
    if group["maximize"]:
        grad = -grad
    if weight_decay != 0:
        grad = grad + weight_decay * p.data
    if momentum != 0:
        buf = state.get("momentum_buffer")
        if buf is None:  # the first step: the buffer starts as the gradient itself, undamped
            buf = state["momentum_buffer"] = Tensor._wrap(grad.copy())
        else:
            buf.data *= momentum
            buf.data += grad if dampening == 0 else (1 - dampening) * grad
        grad = grad + momentum * buf.data if nesterov else buf.data
    p.data -= lr * grad
