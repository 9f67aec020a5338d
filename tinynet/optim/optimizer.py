"""The Optimizer base class: parameter groups, per-parameter state, ``zero_grad`` and
``state_dict``, shared by every optimiser (SGD, Adam, ...).

An optimiser holds its parameters in *groups*: ``param_groups`` is a list of dicts, each with
a ``'params'`` list and every hyper-parameter (``'lr'``, ``'momentum'``, ...), so that one model
can train its parts with different settings, and a scheduler (or the user) can change
``group['lr']`` between steps. ``state`` maps each parameter to a dict of what the update
remembers between steps (a momentum buffer, Adam's moving averages, a step counter).

Subclasses implement ``step()``: for each group, for each parameter with a gradient, update
``p.data`` in place from ``p.grad.data`` and the parameter's state.
"""
from __future__ import annotations

import copy
from collections import defaultdict
from itertools import chain

import numpy as np

from .. import backend
from ..autograd import enable_grad, reserve_grad
from ..kernels.dispatch import uses_cuda
from ..backend import get_array_module
from ..tensor import Tensor
from ..recording import recordable

__all__ = ["Optimizer", "check_hyperparameters"]


class Optimizer:
    """Base class of all optimisers.

    Args:
        params: an iterable of tensors to optimise, or of dicts (parameter groups), each with a
            ``'params'`` entry and any options that override ``defaults`` for that group.
            ``(name, tensor)`` pairs, as from ``named_parameters()``, are accepted too.
        defaults: the optimiser's options, used by every group that does not set its own.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = defaults
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or "
                            "dicts, but got a Tensor")
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict] = []
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines) + "\n)"

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters, with its own options, e.g. to train layers that were frozen."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            # A set's order changes between runs, and state_dict() refers to parameters by position.
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the "
                            "ordering of tensors in sets will change between runs. Please use a list "
                            "instead.")
        params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        if names:
            if len(names) != len(params):
                raise ValueError("all optimizer params should be with/without names. Some param names are "
                                 "missing")
            param_group["param_names"] = names
        param_group["params"] = params

        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is "
                                f"{type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            param_group.setdefault(name, default)

        # Identity, not ==: a tensor's == is elementwise.
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    # ------------------------------------------------------------------ gradients and steps
    @recordable
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all parameters: to ``None`` (the default, frees the memory), or
        to zeros in place (``set_to_none=False``: the grad arrays stay the same objects)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad.data.fill(0)

    def step(self, closure=None):
        """Update every parameter that has a gradient. ``closure``, if given, re-evaluates the
        model and returns the loss (it runs with gradients enabled); ``step`` returns that loss."""
        raise NotImplementedError

    @staticmethod
    def _multi_tensor_params(group: dict):
        """The parameters of ``group`` that have a gradient, when one multi-tensor kernel can
        update them all (``tinynet/kernels/cuda/optim.py``): on one GPU, C-contiguous, one
        dtype. Else None (the per-parameter array code runs).

        Their gradient arrays are reserved (``autograd.reserve_grad``): after
        ``zero_grad(set_to_none=True)`` backward writes the next gradient into the same memory,
        so the kernels' pointer table is built once, not at every step."""
        params = [p for p in group["params"] if p.grad is not None]
        if not params or not uses_cuda(params[0].data):
            return None
        dtype, device = params[0].data.dtype, params[0].data.device
        for p in params:
            data, grad = p.data, p.grad.data
            if not (uses_cuda(data) and data.dtype == dtype and grad.dtype == dtype and data.flags.c_contiguous
                    and grad.flags.c_contiguous and type(grad) is type(data) and data.device == device
                    and grad.device == device):
                return None
        for p in params:
            reserve_grad(p, p.grad.data)
        return params

    def _multi_tensor_step(self, params, group: dict, buffers, hyper, launch) -> None:
        """The step of ``params`` (from :meth:`_multi_tensor_params`, their state made) by a
        multi-tensor kernel: one launch per step count (one, unless some parameters joined later).

        ``buffers``: the state names of the arrays in each parameter's table row after the
        parameter and its gradient (None: an absent one, 0 in the table). ``hyper(step)``: the
        numbers that change between steps (the learning rate, ...) at step count ``step`` (1 for
        the first). ``launch(rows, hyper)`` runs the kernel on ``rows``, ``(param, grad, *buffers)``
        arrays each. The step counts advance, and ``hyper`` is called, in the ``values`` of
        :func:`~tinynet.kernels.cuda.scalars.device_scalars`: the host part of the step, which
        runs before every launch of a CUDA graph that captured this step."""
        from ..kernels.cuda.optim import fusable
        from ..kernels.cuda.scalars import device_scalars
        by_step: dict = {}   # step count so far -> (params, rows)
        for p in params:
            state = self.state[p]
            for name in filter(None, buffers):
                if not fusable(p.data, state[name].data):  # a loaded buffer of another layout
                    state[name].data = p.xp.ascontiguousarray(state[name].data, dtype=p.data.dtype)
            ps, rows = by_step.setdefault(state["step"], ([], []))
            ps.append(p)
            rows.append((p.data, p.grad.data, *(None if name is None else state[name].data for name in buffers)))
        for index, (ps, rows) in enumerate(by_step.values()):
            def values(ps=ps):
                for p in ps:
                    self.state[p]["step"] += 1
                return hyper(self.state[ps[0]]["step"])
            launch(rows, device_scalars((type(self).__name__, id(group), index), values, like=rows[0][0]))

    @staticmethod
    def _run_closure(closure):
        if closure is None:
            return None
        with enable_grad():
            return closure()

    # ------------------------------------------------------------------ saving and loading
    def state_dict(self) -> dict:
        """The optimiser's state in PyTorch's format::

            {'state': {0: {'step': tensor(3.), 'exp_avg': tensor(...), ...}, 1: {...}},
             'param_groups': [{'lr': 0.01, ..., 'params': [0, 1]}, ...]}

        Parameters are named by their position across all groups (the parameters themselves are
        not saved). State tensors are returned as they are, not copied, as in PyTorch.
        """
        index: dict[int, int] = {}
        groups, start = [], 0
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for i, p in enumerate(group["params"], start):
                index.setdefault(id(p), i)
            packed["params"] = [index[id(p)] for p in group["params"]]
            start += len(packed["params"])
            groups.append(packed)
        state = {index[id(p)] if isinstance(p, Tensor) else p: {k: _pack(k, v) for k, v in s.items()}
                 for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state from :meth:`state_dict`. Saved buffers are copied onto each parameter's
        device (and dtype, for floating parameters); options come from the saved groups.
        Construct any scheduler *before* loading, since a scheduler resets ``group['lr']``."""
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(self.param_groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(self.param_groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                             "optimizer's group")
        params_by_index = dict(zip(chain.from_iterable(g["params"] for g in saved_groups),
                                   chain.from_iterable(g["params"] for g in self.param_groups)))
        state = defaultdict(dict)
        for index, saved in state_dict["state"].items():
            if index in params_by_index:
                p = params_by_index[index]
                state[p] = {k: _unpack(k, v, p) for k, v in saved.items()}
            else:
                state[index] = saved
        for group, saved in zip(self.param_groups, saved_groups):
            saved["params"] = group["params"]
            if "param_names" in group and "param_names" not in saved:
                saved["param_names"] = group["param_names"]
        self.state, self.param_groups = state, saved_groups


def check_hyperparameters(optimizer: str, **values) -> None:
    """Raise PyTorch's ValueError for a negative hyper-parameter, naming the optimiser, e.g.
    ``check_hyperparameters("RMSprop", lr=lr, eps=eps)``."""
    labels = {"lr": "learning rate", "eps": "epsilon value"}
    for key, value in values.items():
        if not 0.0 <= value:
            raise ValueError(f"{optimizer}: Invalid {labels.get(key, key + ' value')}: {value}")


def plain_like(array, like) -> bool:
    """Whether ``array`` is a C-contiguous NumPy array of ``like``'s shape and dtype: what the
    compiled CPU updates (``tinynet/kernels/optim.py``) take for a gradient or a state buffer."""
    return type(array) is np.ndarray and array.dtype == like.dtype and array.shape == like.shape \
        and array.flags.c_contiguous


def regularised_grad(param, grad, weight_decay: float, maximize: bool):
    """The gradient an update uses: negated for ``maximize``, plus the L2 penalty's
    ``weight_decay * param``; a new array when either applies, ``grad`` itself otherwise (which
    the caller must then not modify)."""
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad + weight_decay * param
    return grad


def accumulate_square_(square_avg, grad, decay: float):
    """``square_avg = decay * square_avg + (1 - decay) * grad * grad`` in place, in PyTorch's
    order of operations; returns the scratch array it used (grad's shape), free for reuse."""
    xp = get_array_module(square_avg)
    square_avg *= decay
    tmp = xp.multiply(grad, 1 - decay, out=xp.empty_like(square_avg))  # out=: an array even when 0-d
    tmp *= grad
    square_avg += tmp
    return tmp


# The step counter lives on the host as a Python int while training (see adam.py for why); in a
# state dict it is a float32 scalar tensor, as PyTorch saves it.
def _pack(key, value):
    if key == "step" and isinstance(value, (int, float)):
        return Tensor._wrap(np.asarray(float(value), dtype=np.float32))
    return value


def _unpack(key, value, param: Tensor):
    """A saved state value, ready for ``param``: tensors copied onto its device (and floating
    ones cast to its dtype, as PyTorch does); the step counter back to a host number."""
    if key == "step":
        # Reading a tensor here may wait for the device; that is fine once, at load time.
        return int(value.item()) if isinstance(value, Tensor) else int(value)
    if isinstance(value, Tensor):
        array = backend.to_device(value.data, param.device)
        dtype = param.dtype if param.is_floating_point() and value.is_floating_point() else array.dtype
        return Tensor._wrap(array.astype(dtype, copy=True))  # our own copy, updated in place later
    return copy.deepcopy(value)
