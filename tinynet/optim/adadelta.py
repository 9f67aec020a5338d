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
        """Perform one update of every parameter that has a gradient (see the class docstring)."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    state = self.state[p]
                    if len(state) == 0:  # buffers allocated once, updated in place from then on
                        state.update(step=0, square_avg=Tensor._wrap(p.xp.zeros_like(p.data)),
                                     acc_delta=Tensor._wrap(p.xp.zeros_like(p.data)))
                    state["step"] += 1  # a host int, as Adam's (see adam.py)
                    adadelta_step(p.data, p.grad.data, state["square_avg"].data, state["acc_delta"].data,
                                  lr=group["lr"], rho=group["rho"], eps=group["eps"],
                                  weight_decay=group["weight_decay"], maximize=group["maximize"])
        return loss


def adadelta_step(param, grad, square_avg, acc_delta, *, lr, rho, eps, weight_decay, maximize) -> None:
    """One Adadelta step on arrays, in place on ``param``, ``square_avg`` and ``acc_delta``, in
    the order of PyTorch's single-tensor implementation (so float32 results agree to rounding).
    ``grad`` is not modified. A fused GPU kernel would compute the same per element."""
    xp = get_array_module(param)
    grad = regularised_grad(param, grad, weight_decay, maximize)
    # v = ρ·v + (1-ρ)·g·g
    tmp = accumulate_square_(square_avg, grad, rho)
    # Δ = sqrt(u + eps) / sqrt(v + eps) · g
    delta = xp.add(acc_delta, eps)
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

