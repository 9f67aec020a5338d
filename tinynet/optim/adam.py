"""Adam and AdamW: per-parameter step sizes from running averages of the gradient and of its square."""
from __future__ import annotations

from ..kernels.dispatch import uses_numba
from ..kernels.optim import adam_update_numba
from ..tensor import Tensor
from .optimizer import Optimizer, plain_like
from ..recording import recordable

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015), as ``torch.optim.Adam``.

    For each parameter :math:`\theta` with gradient :math:`g`, at step :math:`t = 1, 2, ...`:

    .. code-block:: text

        g   = -g if maximize else g
        g   = g + weight_decay * θ           (Adam: L2 penalty, if weight_decay != 0)
        θ   = θ * (1 - lr * weight_decay)    (AdamW instead: decoupled weight decay)
        m   = β1 * m + (1 - β1) * g          (running mean of the gradient, 'exp_avg')
        v   = β2 * v + (1 - β2) * g²         (running mean of its square, 'exp_avg_sq')
        v   = v_max = max(v_max, v)          (if amsgrad: 'max_exp_avg_sq')
        m̂   = m / (1 - β1^t)                 (bias corrections: m and v start at 0)
        v̂   = v / (1 - β2^t)
        θ   = θ - lr * m̂ / (sqrt(v̂) + eps)

    Args:
        params: tensors to optimise, or parameter groups (dicts).
        lr: learning rate. Default: 1e-3.
        betas: (β1, β2), the decay rates of the two running averages. Default: (0.9, 0.999).
        eps: added to the denominator for numerical stability. Default: 1e-8.
        weight_decay: L2 penalty. Default: 0.
        amsgrad: use the maximum of all v so far (AMSGrad). Default: False.
        maximize: maximise the objective instead of minimising it. Default: False.
        decoupled_weight_decay: decay the weights directly, as AdamW does. Default: False.

    State per parameter: ``'step'``, ``'exp_avg'``, ``'exp_avg_sq'`` and, with amsgrad,
    ``'max_exp_avg_sq'``.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False):
        name = type(self).__name__
        if not 0.0 <= lr:
            raise ValueError(f"{name}: Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"{name}: Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"{name}: Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"{name}: Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"{name}: Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    @recordable
    def step(self, closure=None):
        """Perform one update of every parameter that has a gradient (see the class docstring)."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            params = self._multi_tensor_params(group)
            if params is not None:
                _adam_multi_tensor(self, params, group)
                continue
            for p in group["params"]:
                if p.grad is not None and not _adam_update_compiled(p, self.state[p], group):
                    _adam_update(p, self.state[p], group)
        return loss


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``.

    The same update as :class:`Adam`, except that weight decay shrinks the weights directly,
    ``θ = θ * (1 - lr * weight_decay)``, instead of adding ``weight_decay * θ`` to the gradient
    (where Adam's normalisation would scale it down for parameters with large gradients).

    Args:
        params, lr, betas, eps, amsgrad, maximize: as :class:`Adam`.
        weight_decay: decoupled weight decay coefficient. Default: 1e-2.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)


def _init_state(p: Tensor, state: dict, group: dict) -> None:
    """Allocate the buffers once, on the first step; every later step updates them in place."""
    if len(state) == 0:
        state["step"] = 0
        state["exp_avg"] = Tensor._wrap(p.xp.zeros_like(p.data))
        state["exp_avg_sq"] = Tensor._wrap(p.xp.zeros_like(p.data))
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = Tensor._wrap(p.xp.zeros_like(p.data))


def _adam_multi_tensor(optimizer: Optimizer, params, group: dict) -> None:
    """The Adam step of all ``params`` (all with gradients, on the GPU) in one kernel launch
    per step count (:meth:`Optimizer._multi_tensor_step`), the bias corrections computed from
    the step count on the host."""
    from ..kernels.cuda.optim import adam_hyper, adam_step_cuda
    for p in params:
        _init_state(p, optimizer.state[p], group)
    beta1, beta2 = group["betas"]
    optimizer._multi_tensor_step(
        params, group, ("exp_avg", "exp_avg_sq", "max_exp_avg_sq" if group["amsgrad"] else None),
        hyper=lambda step: adam_hyper(group["lr"], beta1, beta2, group["weight_decay"], step),
        launch=lambda rows, hyper: adam_step_cuda(
            rows, hyper=hyper, beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
            maximize=group["maximize"], decoupled_weight_decay=group["decoupled_weight_decay"],
            amsgrad=group["amsgrad"]))


def _adam_update_compiled(p: Tensor, state: dict, group: dict) -> bool:
    """:func:`_adam_update` as one compiled loop (``tinynet/kernels/optim.py``: one pass over
    memory instead of about a dozen, identical results) for float32/float64 NumPy parameters
    whose gradient and state have the same layout. Returns False, having done nothing, for
    anything else."""
    data, grad = p.data, p.grad.data
    if not (uses_numba(data) and data.flags.c_contiguous and plain_like(grad, data)):
        return False
    _init_state(p, state, group)
    names = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())
    if not all(plain_like(state[name].data, data) for name in names):
        return False
    state["step"] += 1
    beta1, beta2 = group["betas"]
    adam_update_numba(data, grad, state["exp_avg"].data, state["exp_avg_sq"].data,
                      state["max_exp_avg_sq"].data if group["amsgrad"] else None, step=state["step"],
                      lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                      maximize=group["maximize"], decoupled_weight_decay=group["decoupled_weight_decay"])
    return True


def _adam_update(p: Tensor, state: dict, group: dict) -> None:
    """One Adam step for one parameter, in place on ``p.data`` and the state buffers, with one
    parameter-sized temporary (``tmp``). The order of operations is that of PyTorch's default
    (single-tensor) implementation, so results agree to rounding. This is the readable version:
    on a GPU one kernel updates all parameters at once instead (:func:`_adam_multi_tensor`), and
    on the CPU float32/float64 arrays take the same steps as one compiled loop
    (:func:`_adam_update_compiled`)."""
    xp = p.xp
    lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    _init_state(p, state, group)
    # PyTorch keeps the step count in a tensor; here it is a Python int on the host, so the bias
    # corrections below are host floats, computed without ever waiting for the GPU.
    state["step"] += 1
    step = state["step"]
    exp_avg, exp_avg_sq = state["exp_avg"].data, state["exp_avg_sq"].data

    grad = p.grad.data
    max_exp_avg_sq = state["max_exp_avg_sq"].data if group["amsgrad"] else None
    if group["maximize"]:
        grad = -grad
    if weight_decay != 0:
        if group["decoupled_weight_decay"]:
            p.data *= 1 - lr * weight_decay
        else:
            grad = grad + weight_decay * p.data

    # m = β1·m + (1-β1)·g, computed as m + (1-β1)·(g - m), the form of torch's lerp_.
    tmp = xp.subtract(grad, exp_avg, out=xp.empty_like(exp_avg))  # out=: an array even for a 0-d parameter
    tmp *= 1 - beta1
    exp_avg += tmp
    # v = β2·v + (1-β2)·g·g
    exp_avg_sq *= beta2
    xp.multiply(grad, 1 - beta2, out=tmp)
    tmp *= grad
    exp_avg_sq += tmp
    if group["amsgrad"]:
        xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        exp_avg_sq = max_exp_avg_sq

    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    step_size = lr / bias_correction1
    # denominator: sqrt(v̂) + eps, with v̂'s bias correction applied after the sqrt, as torch does
    xp.sqrt(exp_avg_sq, out=tmp)
    tmp /= bias_correction2 ** 0.5
    tmp += eps
    # θ = θ - (lr / (1 - β1^t)) · m / denominator
    xp.divide(exp_avg, tmp, out=tmp)
    tmp *= step_size
    p.data -= tmp
