"""Adagrad: divide each gradient by the root of the sum of all its squares so far."""
from __future__ import annotations

from ..backend import get_array_module
from ..tensor import Tensor
from .optimizer import Optimizer, check_hyperparameters, regularised_grad
from ..recording import recordable

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    r"""Adagrad (Duchi et al., 2011), as ``torch.optim.Adagrad``.

    For each parameter :math:`\theta` with gradient :math:`g`, at step :math:`t = 1, 2, ...`:

    .. code-block:: text

        g   = -g if maximize else g
        g   = g + weight_decay * θ                     (if weight_decay != 0)
        lr_t = lr / (1 + (t - 1) * lr_decay)
        s   = s + g²                                   (starts at initial_accumulator_value, 'sum')
        θ   = θ - lr_t * g / (sqrt(s) + eps)

    Parameters that often get large gradients take ever smaller steps; rare ones keep large steps.

    Args:
        params: tensors to optimise, or parameter groups (dicts).
        lr: learning rate. Default: 1e-2.
        lr_decay: learning-rate decay per step. Default: 0.
        weight_decay: L2 penalty. Default: 0.
        initial_accumulator_value: the starting value of ``s``. Default: 0.
        eps: added to the denominator. Default: 1e-10.
        maximize: maximise the objective instead of minimising it. Default: False.

    State per parameter: ``'step'`` and ``'sum'``, made for every parameter when the optimiser is
    built (as PyTorch does), so that ``initial_accumulator_value`` is in place from the start.
    """

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, *, maximize: bool = False):
        check_hyperparameters("Adagrad", lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                              initial_accumulator_value=initial_accumulator_value, eps=eps)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, maximize=maximize))

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters and make their state at once: a ``'sum'`` filled with the
        group's ``initial_accumulator_value`` (the constructor adds its groups through here too)."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for p in group["params"]:
            self.state[p].update(step=0, sum=Tensor._wrap(p.xp.full_like(p.data, group["initial_accumulator_value"])))

    @recordable
    def step(self, closure=None):
        """Perform one update of every parameter that has a gradient (see the class docstring).
        On a GPU one kernel updates all of a group's parameters (:func:`_adagrad_multi_tensor`)."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            params = self._multi_tensor_params(group)
            if params is not None:
                _adagrad_multi_tensor(self, params, group)
                continue
            for p in group["params"]:
                if p.grad is not None:
                    state = self.state[p]
                    state["step"] += 1  # a host int, so lr_t below is a host float
                    adagrad_step(p.data, p.grad.data, state["sum"].data, step=state["step"], lr=group["lr"],
                                 lr_decay=group["lr_decay"], eps=group["eps"], weight_decay=group["weight_decay"],
                                 maximize=group["maximize"])
        return loss


def _adagrad_multi_tensor(optimizer: Optimizer, params, group: dict) -> None:
    """:func:`adagrad_step` for all ``params`` (all with gradients, on the GPU) in one kernel
    launch per step count (:meth:`Optimizer._multi_tensor_step`): one decayed learning rate each."""
    from ..kernels.cuda.optim import adagrad_step_cuda
    optimizer._multi_tensor_step(
        params, group, ("sum",), hyper=lambda step: (adagrad_lr(group["lr"], group["lr_decay"], step),),
        launch=lambda rows, hyper: adagrad_step_cuda(rows, hyper=hyper, eps=group["eps"],
                                                     weight_decay=group["weight_decay"], maximize=group["maximize"]))


def adagrad_lr(lr: float, lr_decay: float, step: int) -> float:
    """The learning rate of step ``step`` (from 1): ``lr / (1 + (step - 1) * lr_decay)``."""
    return lr / (1 + (step - 1) * lr_decay)


def adagrad_step(param, grad, state_sum, *, step, lr, lr_decay, eps, weight_decay, maximize) -> None:
    """One Adagrad step (``step`` counts from 1) on arrays, in place on ``param`` and
    ``state_sum``, in the order of PyTorch's single-tensor implementation; ``grad`` is not
    modified. The GPU kernel ``adagrad_step`` (``kernels/cuda/optim.py``) computes the same per
    element."""
    xp = get_array_module(param)
    grad = regularised_grad(param, grad, weight_decay, maximize)
    clr = adagrad_lr(lr, lr_decay, step)
    # s = s + g·g
    tmp = xp.multiply(grad, grad, out=xp.empty_like(state_sum))  # out=: an array even when 0-d
    state_sum += tmp
    # θ = θ - lr_t · g / (sqrt(s) + eps)
    xp.sqrt(state_sum, out=tmp)
    tmp += eps
    xp.divide(xp.multiply(grad, clr), tmp, out=tmp)  # (lr_t·g) / ..., the rounding of torch's addcdiv_
    param -= tmp
