"""Adadelta: step sizes from running averages of squared gradients and of squared updates."""
from __future__ import annotations

from ..backend import get_array_module
from ..tensor import Tensor
from .optimizer import Optimizer, accumulate_square_, check_hyperparameters, regularised_grad
from ..recording import recordable

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler, 2012), as ``torch.optim.Adadelta``.

    For each parameter :math:`\theta` with gradient :math:`g`:

    .. code-block:: text

        g   = -g if maximize else g
        g   = g + weight_decay * θ                          (if weight_decay != 0)
        v   = ρ * v + (1 - ρ) * g²                          (running mean of g², 'square_avg')
        Δ   = sqrt(u + eps) / sqrt(v + eps) * g             (the update, in the units of θ)
        u   = ρ * u + (1 - ρ) * Δ²                          (running mean of Δ², 'acc_delta')
        θ   = θ - lr * Δ

    The ratio of the two root-mean-squares gives each parameter a step size that needs no
    tuning, which is why the PyTorch MNIST example runs it with ``lr=1.0``.

    Args:
        params: tensors to optimise, or parameter groups (dicts).
        lr: scales the update. Default: 1.0.
        rho: decay rate of both running averages. Default: 0.9.
        eps: added inside both square roots. Default: 1e-6.
        weight_decay: L2 penalty. Default: 0.
        maximize: maximise the objective instead of minimising it. Default: False.

    State per parameter: ``'step'``, ``'square_avg'``, ``'acc_delta'``.
    """

    def __init__(self, params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0, *,
                 maximize: bool = False):
        check_hyperparameters("Adadelta", lr=lr, eps=eps, weight_decay=weight_decay)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Adadelta: Invalid rho value: {rho}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize))

    @recordable
    def step(self, closure=None):
        """Perform one update of every parameter that has a gradient (see the class docstring).
        On a GPU one kernel updates all of a group's parameters (:func:`_adadelta_multi_tensor`)."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            params = self._multi_tensor_params(group)
            if params is not None:
                _adadelta_multi_tensor(self, params, group)
                continue
            for p in group["params"]:
                if p.grad is not None:
                    state = self.state[p]
                    _init_state(p, state)
                    state["step"] += 1  # a host int, as Adam's (see adam.py)
                    adadelta_step(p.data, p.grad.data, state["square_avg"].data, state["acc_delta"].data,
                                  lr=group["lr"], rho=group["rho"], eps=group["eps"],
                                  weight_decay=group["weight_decay"], maximize=group["maximize"])
        return loss


def _init_state(p: Tensor, state: dict) -> None:
    """Allocate the buffers once, on the first step; every later step updates them in place."""
    if len(state) == 0:
        state.update(step=0, square_avg=Tensor._wrap(p.xp.zeros_like(p.data)),
                     acc_delta=Tensor._wrap(p.xp.zeros_like(p.data)))


def _adadelta_multi_tensor(optimizer: Optimizer, params, group: dict) -> None:
    """:func:`adadelta_step` for all ``params`` (all with gradients, on the GPU) in one kernel
    launch per step count (:meth:`Optimizer._multi_tensor_step`)."""
    from ..kernels.cuda.optim import adadelta_step_cuda
    for p in params:
        _init_state(p, optimizer.state[p])
    optimizer._multi_tensor_step(
        params, group, ("square_avg", "acc_delta"), hyper=lambda step: (group["lr"],),
        launch=lambda rows, hyper: adadelta_step_cuda(rows, hyper=hyper, rho=group["rho"], eps=group["eps"],
                                                      weight_decay=group["weight_decay"],
                                                      maximize=group["maximize"]))


def adadelta_step(param, grad, square_avg, acc_delta, *, lr, rho, eps, weight_decay, maximize) -> None:
    """One Adadelta step on arrays, in place on ``param``, ``square_avg`` and ``acc_delta``, in
    the order of PyTorch's single-tensor implementation (so float32 results agree to rounding).
    ``grad`` is not modified. The GPU kernel ``adadelta_step`` (``kernels/cuda/optim.py``)
    computes the same per element."""
    xp = get_array_module(param)
    grad = regularised_grad(param, grad, weight_decay, maximize)
    # v = ρ·v + (1-ρ)·g·g
    tmp = accumulate_square_(square_avg, grad, rho)
    # Δ = sqrt(u + eps) / sqrt(v + eps) · g
    delta = xp.add(acc_delta, eps, out=xp.empty_like(acc_delta))  # out=: an array even when 0-d
    xp.sqrt(delta, out=delta)
    xp.add(square_avg, eps, out=tmp)
    xp.sqrt(tmp, out=tmp)
    delta /= tmp
    delta *= grad
    # u = ρ·u + (1-ρ)·Δ·Δ
    acc_delta *= rho
    xp.multiply(delta, 1 - rho, out=tmp)
    tmp *= delta
    acc_delta += tmp
    delta *= lr
    param -= delta

