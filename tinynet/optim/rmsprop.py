"""RMSprop: divide each gradient by a running root-mean-square of its recent values."""
from __future__ import annotations

from ..backend import get_array_module
from ..tensor import Tensor
from .optimizer import Optimizer, accumulate_square_, check_hyperparameters, regularised_grad
from ..recording import recordable

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop (Hinton's lecture 6e; centered: Graves, 2013), as ``torch.optim.RMSprop``.

    For each parameter :math:`\theta` with gradient :math:`g`:

    .. code-block:: text

        g   = -g if maximize else g
        g   = g + weight_decay * θ                  (if weight_decay != 0)
        v   = α * v + (1 - α) * g²                  (running mean of g², 'square_avg')
        if centered:
            m = α * m + (1 - α) * g                 (running mean of g, 'grad_avg')
            d = sqrt(v - m²) + eps                  (an estimate of g's standard deviation)
        else:
            d = sqrt(v) + eps
        if momentum > 0:
            b = momentum * b + g / d                ('momentum_buffer')
            θ = θ - lr * b
        else:
            θ = θ - lr * g / d

    Args:
        params: tensors to optimise, or parameter groups (dicts).
        lr: learning rate. Default: 1e-2.
        alpha: decay rate of the running averages. Default: 0.99.
        eps: added to the denominator. Default: 1e-8.
        weight_decay: L2 penalty. Default: 0.
        momentum: momentum factor. Default: 0.
        centered: divide by the gradient's estimated standard deviation instead of its RMS.
            Default: False.
        maximize: maximise the objective instead of minimising it. Default: False.

    State per parameter: ``'step'``, ``'square_avg'``, and ``'momentum_buffer'`` (momentum > 0)
    and ``'grad_avg'`` (centered).
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0,
                 momentum: float = 0, centered: bool = False, *, maximize: bool = False):
        check_hyperparameters("RMSprop", lr=lr, eps=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha)
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    @recordable
    def step(self, closure=None):
        """Perform one update of every parameter that has a gradient (see the class docstring).
        On a GPU one kernel updates all of a group's parameters (:func:`_rmsprop_multi_tensor`)."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            params = self._multi_tensor_params(group)
            if params is not None:
                _rmsprop_multi_tensor(self, params, group)
                continue
            for p in group["params"]:
                if p.grad is not None:
                    state = self.state[p]
                    _init_state(p, state, group)
                    state["step"] += 1  # a host int, as Adam's (see adam.py)
                    buf, grad_avg = state.get("momentum_buffer"), state.get("grad_avg")
                    rmsprop_step(p.data, p.grad.data, state["square_avg"].data,
                                 None if buf is None else buf.data, None if grad_avg is None else grad_avg.data,
                                 lr=group["lr"], alpha=group["alpha"], eps=group["eps"],
                                 weight_decay=group["weight_decay"], momentum=group["momentum"],
                                 maximize=group["maximize"])
        return loss


def _init_state(p: Tensor, state: dict, group: dict) -> None:
    """Allocate the buffers once, on the first step; every later step updates them in place."""
    if len(state) == 0:
        zeros = p.xp.zeros_like
        state.update(step=0, square_avg=Tensor._wrap(zeros(p.data)))
        if group["momentum"] > 0:
            state["momentum_buffer"] = Tensor._wrap(zeros(p.data))
        if group["centered"]:
            state["grad_avg"] = Tensor._wrap(zeros(p.data))


def _rmsprop_multi_tensor(optimizer: Optimizer, params, group: dict) -> None:
    """:func:`rmsprop_step` for all ``params`` (all with gradients, on the GPU) in one kernel
    launch per step count (:meth:`Optimizer._multi_tensor_step`)."""
    from ..kernels.cuda.optim import rmsprop_step_cuda
    for p in params:
        _init_state(p, optimizer.state[p], group)
    momentum, centered = group["momentum"], group["centered"]
    optimizer._multi_tensor_step(
        params, group, ("square_avg", "momentum_buffer" if momentum > 0 else None, "grad_avg" if centered else None),
        hyper=lambda step: (group["lr"],),
        launch=lambda rows, hyper: rmsprop_step_cuda(rows, hyper=hyper, alpha=group["alpha"], eps=group["eps"],
                                                     weight_decay=group["weight_decay"], momentum=momentum,
                                                     centered=centered, maximize=group["maximize"]))


def rmsprop_step(param, grad, square_avg, momentum_buffer, grad_avg, *, lr, alpha, eps, weight_decay, momentum,
                 maximize) -> None:
    """One RMSprop step on arrays, in place on ``param`` and the state arrays, in the order of
    PyTorch's single-tensor implementation. ``momentum_buffer`` is used when ``momentum > 0``
    and ``grad_avg`` (centered) when it is not None; ``grad`` is not modified. The GPU kernel
    ``rmsprop_step`` (``kernels/cuda/optim.py``) computes the same per element."""
    xp = get_array_module(param)
    grad = regularised_grad(param, grad, weight_decay, maximize)
    # v = α·v + (1-α)·g·g
    tmp = accumulate_square_(square_avg, grad, alpha)
    if grad_avg is not None:
        # m = α·m + (1-α)·g, in the two forms of torch's lerp_ (each exact at its own end)
        weight = 1 - alpha
        xp.subtract(grad, grad_avg, out=tmp)
        if weight < 0.5:
            tmp *= weight
            grad_avg += tmp
        else:
            tmp *= 1 - weight
            xp.subtract(grad, tmp, out=grad_avg)
        # d = sqrt(v - m·m) + eps
        xp.multiply(grad_avg, grad_avg, out=tmp)
        xp.subtract(square_avg, tmp, out=tmp)
        xp.sqrt(tmp, out=tmp)
    else:
        xp.sqrt(square_avg, out=tmp)
    tmp += eps
    if momentum > 0:
        # b = momentum·b + g / d;  θ = θ - lr·b
        momentum_buffer *= momentum
        xp.divide(grad, tmp, out=tmp)
        momentum_buffer += tmp
        xp.multiply(momentum_buffer, lr, out=tmp)
    else:
        # θ = θ - (lr·g) / d: the product first, as torch's addcdiv_ rounds it
        xp.divide(xp.multiply(grad, lr), tmp, out=tmp)
    param -= tmp
