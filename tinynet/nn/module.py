"""``Module``: the base class of every layer and model.

A Module is a tree. Each node holds three ordered dictionaries, filled by plain attribute
assignment in ``__init__``:

* ``_parameters``  learnable tensors (``self.weight = Parameter(...)``);
* ``_buffers``     state that is saved but not learned (``self.register_buffer('running_mean', t)``);
* ``_modules``     child Modules (``self.conv1 = Conv2d(...)``).

Everything else is a walk over that tree: ``parameters()`` for the optimiser, ``state_dict()``
for checkpoints (keys are the dotted paths, ``'layer1.0.conv1.weight'``, in PyTorch's order),
``train()/eval()`` to flip the ``training`` flag everywhere, ``to()`` to move every tensor.
"""
from __future__ import annotations

import itertools
from collections import OrderedDict, namedtuple
from collections.abc import Mapping

import numpy as np

from .. import backend
from .. import dtypes as _dt
from ..autograd import no_grad
from ..tensor import Tensor, parse_to_arguments
from .parameter import Parameter
from ..recording import recordable

__all__ = ["Module"]


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict`` returns: the keys the module expected but did not get, and the
    keys it got but does not have."""

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


class RemovableHandle:
    """Returned by ``register_forward_hook``; ``handle.remove()`` unregisters the hook."""

    _next_id = itertools.count()

    def __init__(self, hooks: dict):
        self._hooks = hooks
        self.id = next(RemovableHandle._next_id)

    def remove(self) -> None:
        self._hooks.pop(self.id, None)


def _addindent(text: str, spaces: int) -> str:
    """Indent every line but the first (how PyTorch nests child reprs)."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


class Module:
    """Base class for all layers and models.

    Subclasses call ``super().__init__()`` first, assign their Parameters, buffers and child
    Modules as attributes, and define ``forward``. Calling the module runs ``forward`` (plus
    any hooks).

    Example::

        >>> class TwoLayer(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc1 = nn.Linear(4, 8)
        ...         self.fc2 = nn.Linear(8, 2)
        ...     def forward(self, x):
        ...         return self.fc2(self.fc1(x).relu())
        >>> [name for name, _ in TwoLayer().named_parameters()]
        ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']
    """

    training: bool

    def __init__(self):
        # object.__setattr__: our own __setattr__ needs these dictionaries to exist already.
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers_set", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    # ------------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    def __call__(self, *args, **kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    def register_forward_pre_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, args)`` before each forward; a non-None result replaces the args."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, args, output)`` after each forward; a non-None result replaces
        the output (e.g. to record activations)."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # ------------------------------------------------------------------ registration
    def _check_new_name(self, kind: str, name) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {kind} before Module.__init__() call")
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
        if name == "" or "." in name:
            raise KeyError(f"{kind} name can't be empty or contain \".\", got {name!r}")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add ``param`` (a Parameter, or None for an absent optional weight such as
        ``bias=False``) under ``name``."""
        self._check_new_name("parameter", name)
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                            "(tinynet.nn.Parameter or None required)")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add a buffer: a tensor that is part of the module's state but not learned (e.g.
        BatchNorm's running mean). ``persistent=False`` keeps it out of ``state_dict``."""
        self._check_new_name("buffer", name)
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' "
                            "(tinynet.Tensor or None required)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name: str, module: "Module | None") -> None:
        """Add a child module under ``name`` (what ``self.name = module`` does)."""
        self._check_new_name("module", name)
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name: str, value) -> None:
        params = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            self._forget(name, keep="_parameters")
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                "(tinynet.nn.Parameter or None expected)")
            params[name] = None
        elif isinstance(value, Module):
            if params is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            self._forget(name, keep="_modules")
            self._modules[name] = value
        elif params is not None and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' "
                                "(tinynet.nn.Module or None expected)")
            self._modules[name] = None
        elif params is not None and name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                                "(tinynet.Tensor or None expected)")
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str, keep: str) -> None:
        """Remove ``name`` from the registries other than ``keep`` (and from plain attributes),
        before it is registered in ``keep``; replacing an entry in ``keep`` keeps its position."""
        self.__dict__.pop(name, None)
        for table in ("_parameters", "_buffers", "_modules"):
            if table != keep:
                getattr(self, table).pop(name, None)
        self._non_persistent_buffers_set.discard(name)

    def __getattr__(self, name: str):
        # Only called when normal lookup fails: look in the three registries.
        d = self.__dict__
        for table in ("_parameters", "_buffers", "_modules"):
            if table in d and name in d[table]:
                return d[table][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                self._non_persistent_buffers_set.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))

    # ------------------------------------------------------------------ walking the tree
    def named_modules(self, memo: set | None = None, prefix: str = "", remove_duplicate: bool = True):
        """Yield ``(dotted_name, module)`` for this module and every descendant, parents before
        children (pre-order); a module reachable twice is yielded once."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if self in memo:
                return
            memo.add(self)
        yield prefix, self
        for name, child in self._modules.items():
            if child is None:
                continue
            child_prefix = prefix + ("." if prefix else "") + name
            yield from child.named_modules(memo, child_prefix, remove_duplicate)

    def modules(self):
        """Yield this module and every descendant (pre-order)."""
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        """Yield ``(name, child)`` for the direct children, in registration order."""
        seen = set()
        for name, child in self._modules.items():
            if child is not None and child not in seen:
                seen.add(child)
                yield name, child

    def children(self):
        for _, child in self.named_children():
            yield child

    def _named_members(self, table: str, prefix: str, recurse: bool, remove_duplicate: bool = True):
        """Yield ``(dotted_name, tensor)`` from ``_parameters`` or ``_buffers`` of each module,
        module by module in pre-order; shared tensors once."""
        seen = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse \
            else [(prefix, self)]
        for module_prefix, module in modules:
            for name, tensor in getattr(module, table).items():
                if tensor is None or (remove_duplicate and id(tensor) in seen):
                    continue
                if remove_duplicate:
                    seen.add(id(tensor))  # by identity: Tensor's == is elementwise
                yield module_prefix + ("." if module_prefix else "") + name, tensor

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        """Yield ``(dotted_name, Parameter)``: this module's own first, then each child's."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True):
        """Yield every Parameter (what you hand to an optimiser)."""
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True):
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    def get_submodule(self, target: str) -> "Module":
        """The descendant at the dotted path ``target`` (``''`` is this module)."""
        module = self
        for name in target.split(".") if target else []:
            child = module._modules.get(name)
            if child is None:
                raise AttributeError(f"{type(module).__name__} has no submodule `{name}` (looking up '{target}')")
            module = child
        return module

    def apply(self, fn) -> "Module":
        """Call ``fn(module)`` on every child (recursively) and then on this module; returns self.
        Typical use: custom initialisation, ``model.apply(init_weights)``."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ modes and gradients
    def train(self, mode: bool = True) -> "Module":
        """Set training mode (``True``) or evaluation mode (``False``) here and in every
        descendant; Dropout and BatchNorm behave differently in the two. Returns self."""
        if not isinstance(mode, bool):
            raise ValueError(f"train: training mode is expected to be boolean, got {type(mode).__name__}")
        self.training = mode
        for child in self.children():
            child.train(mode)
        return self

    def eval(self) -> "Module":
        """``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Switch gradient recording on or off for every parameter (e.g. to freeze a backbone)."""
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    @recordable
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient: to None (default, frees memory) or to zeros."""
        for param in self.parameters():
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                param.grad.detach_()
                param.grad.zero_()

    # ------------------------------------------------------------------ devices and dtypes
    def _apply(self, convert) -> "Module":
        """Replace the array of every parameter, gradient and buffer by ``convert(array)``.

        The Parameter *objects* stay the same (only their ``.data`` changes), so an optimiser
        built before ``model.to('cuda')`` still holds the model's parameters.
        """
        for module in self.modules():
            for tensor in itertools.chain(module._parameters.values(), module._buffers.values()):
                if tensor is None:
                    continue
                tensor.data = convert(tensor.data)
                if tensor.grad is not None:
                    tensor.grad.data = convert(tensor.grad.data)
        return self

    def to(self, *args, **kwargs) -> "Module":
        """Move and/or cast every parameter and buffer, in place; returns self.

        ``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(tensor)`` (its device and
        dtype), or keywords ``device=``, ``dtype=``. A dtype applies to floating-point tensors
        only (integer buffers such as ``num_batches_tracked`` keep theirs), as in PyTorch.
        """
        dev, dtype = parse_to_arguments("Module.to", args, kwargs)
        if dtype is not None:
            dtype = _dt.to_dtype(dtype)
            if dtype.kind not in "fc":
                raise TypeError(f"Module.to only accepts floating point dtypes, but got desired dtype={dtype}")
        if dev is not None:
            dev = backend.device(dev)
            backend.array_module(dev)  # fail before moving anything if the device is unavailable

        def convert(array):
            if dtype is not None and array.dtype.kind in "fc" and array.dtype != dtype:
                array = array.astype(dtype)
            if dev is not None:
                array = backend.to_device(array, dev)
            return array
        return self._apply(convert)

    def cuda(self, device=None) -> "Module":
        """Move every parameter and buffer to a GPU (``cuda:0`` unless ``device`` says which)."""
        if device is None:
            return self.to("cuda")
        return self.to(f"cuda:{device}" if isinstance(device, int) else device)

    def cpu(self) -> "Module":
        return self.to("cpu")

    def float(self) -> "Module":
        """Cast floating-point parameters and buffers to float32."""
        return self.to(_dt.float32)

    def double(self) -> "Module":
        """Cast floating-point parameters and buffers to float64."""
        return self.to(_dt.float64)

    def half(self) -> "Module":
        """Cast floating-point parameters and buffers to float16."""
        return self.to(_dt.float16)

    # ------------------------------------------------------------------ state_dict
    def _save_to_state_dict(self, destination: OrderedDict, prefix: str, keep_vars: bool) -> None:
        """Put this module's own parameters, then its persistent buffers, into ``destination``."""
        for name, param in self._parameters.items():
            if param is not None:
                destination[prefix + name] = param if keep_vars else param.detach()
        for name, buf in self._buffers.items():
            if buf is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = buf if keep_vars else buf.detach()

    def state_dict(self, *, destination=None, prefix: str = "", keep_vars: bool = False) -> OrderedDict:
        """Everything needed to restore the module: an OrderedDict from dotted names to tensors.

        Order and keys are PyTorch's: for each module (pre-order), its parameters, then its
        persistent buffers, then its children's entries (``'0.weight'``, ``'bn.running_mean'``,
        ``'bn.num_batches_tracked'``). Values share memory with the module's tensors but are
        detached from the graph (``keep_vars=True`` gives the Parameters themselves).
        """
        if destination is None:
            destination = OrderedDict()
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, child in self._modules.items():
            if child is not None:
                child.state_dict(destination=destination, prefix=prefix + name + ".", keep_vars=keep_vars)
        return destination

    def _load_from_state_dict(self, state_dict, prefix: str, missing_keys: list, unexpected_keys: list,
                              error_msgs: list) -> None:
        """Copy this module's own entries of ``state_dict`` into its tensors (in place, keeping
        their dtype and device), and note what is missing, unexpected or the wrong shape."""
        persistent_buffers = {k: v for k, v in self._buffers.items() if k not in self._non_persistent_buffers_set}
        local_state = {k: v for k, v in itertools.chain(self._parameters.items(), persistent_buffers.items())
                       if v is not None}
        for name, tensor in local_state.items():
            key = prefix + name
            if key not in state_dict:
                missing_keys.append(key)
                continue
            value = _as_array(state_dict[key])
            if value is None:
                error_msgs.append(f'While copying the parameter named "{key}", expected a tinynet Tensor or '
                                  f'a NumPy array from the checkpoint but received {type(state_dict[key]).__name__}')
                continue
            if value.shape != tensor.shape:
                error_msgs.append(f"size mismatch for {key}: copying a param with shape {tuple(value.shape)} "
                                  f"from checkpoint, the shape in current model is {tuple(tensor.shape)}.")
                continue
            with no_grad():
                tensor.copy_(value)

        # A key under this prefix is unexpected if it names neither one of our tensors nor a child.
        for key in state_dict:
            if not key.startswith(prefix):
                continue
            head, dot, _ = key[len(prefix):].partition(".")
            if (dot and head not in self._modules) or (not dot and head not in local_state):
                unexpected_keys.append(key)

    def load_state_dict(self, state_dict: Mapping, strict: bool = True) -> _IncompatibleKeys:
        """Copy parameters and buffers from ``state_dict`` into this module, in place.

        Values may be tinynet Tensors or NumPy arrays, so a PyTorch checkpoint loads with
        ``model.load_state_dict({k: v.numpy() for k, v in torch_sd.items()})``. Each tensor
        keeps the module's dtype and device. Returns ``(missing_keys, unexpected_keys)``.

        Raises:
            RuntimeError: listing every shape mismatch, and (when ``strict``) every missing
                and unexpected key.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict: expected state_dict to be dict-like, got {type(state_dict).__name__}")
        missing, unexpected, errors = [], [], []

        def load(module: Module, prefix: str) -> None:
            module._load_from_state_dict(state_dict, prefix, missing, unexpected, errors)
            for name, child in module._modules.items():
                if child is not None:
                    load(child, prefix + name + ".")

        load(self, "")
        if strict:  # PyTorch's messages, word for word: missing keys first, then unexpected ones
            if unexpected:
                errors.insert(0, f"Unexpected key(s) in state_dict: {_quote_keys(unexpected)}. ")
            if missing:
                errors.insert(0, f"Missing key(s) in state_dict: {_quote_keys(missing)}. ")
        if errors:
            details = "\n\t".join(errors)
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t{details}")
        return _IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        """The text inside the parentheses of this module's repr (its constructor arguments).
        Layers override it; containers leave it empty."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): " + _addindent(repr(child), 2) for name, child in self._modules.items()]
        lines = extra_lines + child_lines
        body = ""
        if len(extra_lines) == 1 and not child_lines:
            body = extra_lines[0]
        elif lines:
            body = "\n  " + "\n  ".join(lines) + "\n"
        return self._get_name() + "(" + body + ")"


def _quote_keys(keys) -> str:
    return ", ".join(f'"{key}"' for key in keys)


def _as_array(value):
    """A state_dict value as an array (tinynet Tensor's array, or a NumPy array from anything
    array-like, e.g. ``torch_tensor.numpy()``); None if it is not numeric."""
    if isinstance(value, Tensor):
        return value.data
    if backend.get_array_module(value) is not np:  # a CuPy array
        return value
    try:
        array = np.asarray(value)
    except Exception:
        return None
    return array if array.dtype.kind in "biuf" else None
