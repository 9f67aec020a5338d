"""The Tensor: an array (NumPy or CuPy) plus what autograd needs to send gradients back to it.

A Tensor made by the user is a *leaf*: ``grad_fn is None`` and, if ``requires_grad``, its
gradient accumulates into ``.grad``. A Tensor made by an op carries ``grad_fn``, the node of
the backward graph that knows how to push a gradient through that op (see autograd.py).

The methods here are thin: each op lives in ``tinynet.functional`` with its forward, backward
and gradient formula side by side; ``x.exp()`` just calls ``functional.exp(x)``.
"""
from __future__ import annotations

import weakref

import numpy as np

from . import backend, recording
from . import dtypes as _dt

__all__ = ["Tensor"]


class Tensor:
    """A multi-dimensional array that can record the ops applied to it for backpropagation.

    Args:
        data: an array (NumPy or CuPy, kept as it is, no copy), a Tensor, or nested Python
            lists/scalars (converted with :func:`tinynet.tensor`'s dtype rules).
        requires_grad: whether gradients should be accumulated into ``.grad``.
    """

    __slots__ = ("data", "grad", "_requires_grad", "grad_fn", "_output_nr", "_hooks", "_post_accumulate_hooks",
                 "__weakref__")
    # Let NumPy defer to Tensor's reflected operators (``ndarray * tensor`` -> Tensor.__rmul__).
    __array_ufunc__ = None

    def __init__(self, data, requires_grad: bool = False):
        if isinstance(data, Tensor):
            data = data.data
        elif not _is_array(data):
            from .creation import _infer_array
            data = _infer_array(data)
        self.data = data
        self.grad = None
        self.grad_fn = None
        self._output_nr = 0
        self._hooks = None
        self._post_accumulate_hooks = None
        self._requires_grad = False
        if requires_grad:
            self.requires_grad = True

    @classmethod
    def _wrap(cls, array, requires_grad=False, grad_fn=None, output_nr=0) -> "Tensor":
        """Fast constructor used by ops: no checks, no copies."""
        t = object.__new__(cls)
        t.data = array
        t.grad = None
        t._requires_grad = requires_grad
        t.grad_fn = grad_fn
        t._output_nr = output_nr
        t._hooks = None
        t._post_accumulate_hooks = None
        return t

    # ------------------------------------------------------------------ autograd attributes
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and self.data.dtype.kind not in "fc":
            raise RuntimeError(f"requires_grad: only floating-point tensors can require gradients, "
                               f"got dtype {self.data.dtype}")
        if not value and self.grad_fn is not None:
            raise RuntimeError("requires_grad: you can only change requires_grad of leaf tensors; "
                               "use detach() to get a tensor without a graph")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (see ``tinynet.autograd``)."""
        from .autograd import backward
        backward(self, gradient, retain_graph)

    def detach(self) -> "Tensor":
        """A tensor sharing this data, cut from the graph."""
        return Tensor._wrap(self.data)

    def detach_(self) -> "Tensor":
        self.grad_fn = None
        self._requires_grad = False
        return self

    def register_hook(self, hook):
        """Call ``hook(grad)`` whenever this tensor's gradient is computed; if it returns a
        tensor, that replaces the gradient. Returns a handle whose ``remove()`` unregisters it."""
        if not self.requires_grad:
            raise RuntimeError("register_hook: cannot register a hook on a tensor that doesn't require grad")
        if self.grad_fn is None:
            if self._hooks is None:
                self._hooks = []
            hooks = self._hooks
        else:
            node = self.grad_fn
            if node.hooks is None:
                node.hooks = {}
            hooks = node.hooks.setdefault(self._output_nr, [])
        hooks.append(hook)
        return _HookHandle(hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(tensor)`` on this leaf right after a gradient has been accumulated into
        its ``.grad`` (DistributedDataParallel starts a bucket's all-reduce from such hooks).
        The engine accumulates each path into a leaf separately, so a tensor used by several
        ops is called once per path, each time with ``.grad`` holding the sum so far. Returns a
        handle whose ``remove()`` unregisters it."""
        if not self.requires_grad:
            raise RuntimeError("register_post_accumulate_grad_hook: cannot register a hook on a tensor that "
                               "doesn't require grad")
        if self.grad_fn is not None:
            raise RuntimeError("register_post_accumulate_grad_hook: only leaf tensors accumulate into .grad; "
                               "use register_hook on a tensor made by an op")
        if self._post_accumulate_hooks is None:
            self._post_accumulate_hooks = []
        self._post_accumulate_hooks.append(hook)
        return _HookHandle(self._post_accumulate_hooks, hook)

    def retain_grad(self) -> None:
        """Keep ``.grad`` of this non-leaf tensor after backward (leaves always keep theirs)."""
        if self.grad_fn is None:
            return
        ref = weakref.ref(self)

        def store(grad):
            me = ref()
            if me is not None:
                me.grad = Tensor._wrap(grad.data.copy()) if me.grad is None else me.grad + grad
        self.register_hook(store)

    # ------------------------------------------------------------------ array attributes
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def device(self) -> backend.Device:
        return backend.device_of(self.data)

    @property
    def xp(self):
        """The array module (numpy or cupy) holding this tensor's data."""
        return backend.get_array_module(self.data)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def size(self, dim: int | None = None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def dim(self) -> int:
        return self.data.ndim

    def numel(self) -> int:
        return int(self.data.size)

    def element_size(self) -> int:
        return self.data.itemsize

    def is_floating_point(self) -> bool:
        return self.data.dtype.kind == "f"

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.data.shape[0]))

    __hash__ = object.__hash__  # tensors are hashable by identity, as in PyTorch

    # ------------------------------------------------------------------ conversion
    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (shared, not copied). CPU tensors only, as in PyTorch."""
        if self.requires_grad:
            raise RuntimeError("numpy: can't call numpy() on a tensor that requires grad; "
                               "use tensor.detach().numpy()")
        if self.device.type != "cpu":
            raise TypeError(f"numpy: can't convert a {self.device} tensor to NumPy; use tensor.cpu() first")
        recording.note_host_read("Tensor.numpy()")
        return self.data

    def __array__(self, dtype=None, copy=None):
        if self.device.type != "cpu":
            raise TypeError(f"can't convert a {self.device} tensor to a NumPy array implicitly; "
                            "use tensor.cpu() first")
        recording.note_host_read("converting a Tensor to a NumPy array")
        return self.data if dtype is None else self.data.astype(dtype)

    def item(self):
        """The value of a one-element tensor as a Python number (synchronises with the GPU)."""
        if self.data.size != 1:
            raise RuntimeError(f"item: a Tensor with {self.data.size} elements cannot be converted to a "
                               "Python scalar")
        recording.note_host_read("Tensor.item()")
        return backend.item(self.data)

    def tolist(self):
        recording.note_host_read("Tensor.tolist()")
        return backend.to_host(self.data).tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.data.dtype.kind not in "iub":
            raise TypeError(f"only integer tensors of a single element can be converted to an index, "
                            f"got dtype {self.dtype}")
        return int(self.item())

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise RuntimeError(f"the truth value of a tensor with {self.data.size} elements is ambiguous")
        return bool(self.item())

    def to(self, *args, **kwargs) -> "Tensor":
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(other_tensor)``; keyword
        forms ``device=``, ``dtype=``. Differentiable; returns self when nothing changes."""
        dev, dtype = parse_to_arguments("to", args, kwargs)
        out = self
        if dtype is not None and _dt.to_dtype(dtype) != self.dtype:
            out = F.cast(out, _dt.to_dtype(dtype))
        if dev is not None and backend.device(dev) != self.device:
            out = F.to_device(out, backend.device(dev))
        return out

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self, device=None) -> "Tensor":
        return self.to("cuda" if device is None else (f"cuda:{device}" if isinstance(device, int) else device))

    def float(self) -> "Tensor":
        return self.to(_dt.float32)

    def double(self) -> "Tensor":
        return self.to(_dt.float64)

    def half(self) -> "Tensor":
        return self.to(_dt.float16)

    def long(self) -> "Tensor":
        return self.to(_dt.int64)

    def int(self) -> "Tensor":
        return self.to(_dt.int32)

    def bool(self) -> "Tensor":
        return self.to(_dt.bool_)

    def type_as(self, other: "Tensor") -> "Tensor":
        return self.to(other.dtype)

    def clone(self) -> "Tensor":
        return F.clone(self)

    # ------------------------------------------------------------------ printing
    def __repr__(self) -> str:
        recording.note_host_read("printing a Tensor")
        body = np.array2string(backend.to_host(self.data), separator=", ", prefix="tensor(", precision=4,
                               threshold=200)
        extras = []
        if self.device.type != "cpu":
            extras.append(f"device='{self.device}'")
        if self.dtype not in (_dt.get_default_dtype(), _dt.int64, _dt.bool_):
            extras.append(f"dtype={self.dtype}")
        if self.grad_fn is not None:
            extras.append(f"grad_fn=<{self.grad_fn.name}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    # ------------------------------------------------------------------ in-place (no graph)
    def _check_inplace(self, op: str) -> None:
        from .autograd import is_grad_enabled
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError(f"{op}: a tensor that requires grad is being used in an in-place operation; "
                               "wrap it in `with tinynet.no_grad():`")

    def _inplace(self, op: str, value):
        self._check_inplace(op)
        return value.data if isinstance(value, Tensor) else value

    @recording.recordable
    def zero_(self) -> "Tensor":
        self._check_inplace("zero_")
        self.data.fill(0)
        return self

    @recording.recordable
    def fill_(self, value) -> "Tensor":
        self._check_inplace("fill_")
        if isinstance(value, Tensor):  # stays on the device: no read of the value
            if value.data.size != 1:
                raise RuntimeError(f"fill_: the value must be a one-element tensor, got shape "
                                   f"{tuple(value.shape)}")
            self.data[...] = backend.to_device(value.data, self.device).reshape(())
        else:
            self.data.fill(value)
        return self

    @recording.recordable
    def copy_(self, src) -> "Tensor":
        src = self._inplace("copy_", src)
        if backend.device_of(src) != self.device:
            src = backend.to_device(src, self.device)
        self.xp.copyto(self.data, src, casting="unsafe")
        return self

    @recording.recordable
    def add_(self, other, alpha=1) -> "Tensor":
        other = self._inplace("add_", other)
        self.data += other if alpha == 1 else alpha * other
        return self

    @recording.recordable
    def sub_(self, other, alpha=1) -> "Tensor":
        other = self._inplace("sub_", other)
        self.data -= other if alpha == 1 else alpha * other
        return self

    @recording.recordable
    def mul_(self, other) -> "Tensor":
        self.data *= self._inplace("mul_", other)
        return self

    @recording.recordable
    def div_(self, other) -> "Tensor":
        self.data /= self._inplace("div_", other)
        return self

    @recording.recordable
    def clamp_(self, min=None, max=None) -> "Tensor":
        self._check_inplace("clamp_")
        self.xp.clip(self.data, min, max, out=self.data)
        return self

    @recording.recordable
    def uniform_(self, a: float = 0.0, b: float = 1.0, generator=None) -> "Tensor":
        self._check_inplace("uniform_")
        from .random import generator_for
        self.data[...] = generator_for(self.device, generator).uniform(self.shape, a, b, self.dtype)
        return self

    @recording.recordable
    def normal_(self, mean: float = 0.0, std: float = 1.0, generator=None) -> "Tensor":
        self._check_inplace("normal_")
        from .random import generator_for
        self.data[...] = generator_for(self.device, generator).normal(self.shape, mean, std, self.dtype)
        return self

    @recording.recordable
    def __setitem__(self, index, value) -> None:
        self._check_inplace("__setitem__")
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        self.data[index] = value.data if isinstance(value, Tensor) else value

    # ------------------------------------------------------------------ operators
    def __add__(self, other): return F.add(self, other)
    def __radd__(self, other): return F.add(other, self)
    def __sub__(self, other): return F.sub(self, other)
    def __rsub__(self, other): return F.sub(other, self)
    def __mul__(self, other): return F.mul(self, other)
    def __rmul__(self, other): return F.mul(other, self)
    def __truediv__(self, other): return F.div(self, other)
    def __rtruediv__(self, other): return F.div(other, self)
    def __pow__(self, other): return F.pow(self, other)
    def __rpow__(self, other): return F.pow(other, self)
    def __matmul__(self, other): return F.matmul(self, other)
    def __rmatmul__(self, other): return F.matmul(other, self)
    def __neg__(self): return F.neg(self)
    def __pos__(self): return self
    def __abs__(self): return F.abs(self)
    def __eq__(self, other):
        return F.eq(self, other) if _is_operand(other) else NotImplemented
    def __ne__(self, other):
        return F.ne(self, other) if _is_operand(other) else NotImplemented
    def __lt__(self, other): return F.lt(self, other)
    def __le__(self, other): return F.le(self, other)
    def __gt__(self, other): return F.gt(self, other)
    def __ge__(self, other): return F.ge(self, other)
    def __invert__(self): return F.logical_not(self)
    def __and__(self, other): return F.logical_and(self, other)
    def __or__(self, other): return F.logical_or(self, other)
    def __getitem__(self, index): return F.getitem(self, index)

    # ------------------------------------------------------------------ ops as methods
    def add(self, other, alpha=1): return F.add(self, other, alpha=alpha)
    def sub(self, other, alpha=1): return F.sub(self, other, alpha=alpha)
    def mul(self, other): return F.mul(self, other)
    def div(self, other): return F.div(self, other)
    def pow(self, exponent): return F.pow(self, exponent)
    def neg(self): return F.neg(self)
    def abs(self): return F.abs(self)
    def exp(self): return F.exp(self)
    def log(self): return F.log(self)
    def sqrt(self): return F.sqrt(self)
    def rsqrt(self): return F.rsqrt(self)
    def sin(self): return F.sin(self)
    def cos(self): return F.cos(self)
    def tanh(self): return F.tanh(self)
    def sigmoid(self): return F.sigmoid(self)
    def relu(self): return F.relu(self)
    def clamp(self, min=None, max=None): return F.clamp(self, min, max)
    clip = clamp
    def maximum(self, other): return F.maximum(self, other)
    def minimum(self, other): return F.minimum(self, other)
    def where(self, condition, other): return F.where(condition, self, other)
    def masked_fill(self, mask, value): return F.where(mask, value, self)
    def eq(self, other): return F.eq(self, other)
    def ne(self, other): return F.ne(self, other)
    def lt(self, other): return F.lt(self, other)
    def le(self, other): return F.le(self, other)
    def gt(self, other): return F.gt(self, other)
    def ge(self, other): return F.ge(self, other)
    def matmul(self, other): return F.matmul(self, other)

    def sum(self, dim=None, keepdim=False, dtype=None): return F.sum(self, dim, keepdim, dtype=dtype)
    def mean(self, dim=None, keepdim=False, dtype=None): return F.mean(self, dim, keepdim, dtype=dtype)
    def var(self, dim=None, unbiased=True, keepdim=False, *, correction=None):
        return F.var(self, dim, unbiased, keepdim, correction=correction)
    def std(self, dim=None, unbiased=True, keepdim=False, *, correction=None):
        return F.std(self, dim, unbiased, keepdim, correction=correction)
    def max(self, dim=None, keepdim=False): return F.max(self, dim, keepdim)
    def min(self, dim=None, keepdim=False): return F.min(self, dim, keepdim)
    def amax(self, dim=(), keepdim=False): return F.amax(self, dim, keepdim)
    def amin(self, dim=(), keepdim=False): return F.amin(self, dim, keepdim)
    def argmax(self, dim=None, keepdim=False): return F.argmax(self, dim, keepdim)
    def argmin(self, dim=None, keepdim=False): return F.argmin(self, dim, keepdim)
    def logsumexp(self, dim, keepdim=False): return F.logsumexp(self, dim, keepdim)
    def softmax(self, dim): return F.softmax(self, dim)
    def log_softmax(self, dim): return F.log_softmax(self, dim)

    def reshape(self, *shape): return F.reshape(self, _shape_args(shape))
    def view(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer, tuple, list)):
            return self.to(shape[0])  # view(dtype) is not supported as a reinterpretation
        return F.view(self, _shape_args(shape))
    def view_as(self, other): return F.view(self, other.shape)
    def reshape_as(self, other): return F.reshape(self, other.shape)
    def flatten(self, start_dim=0, end_dim=-1): return F.flatten(self, start_dim, end_dim)
    def squeeze(self, dim=None): return F.squeeze(self, dim)
    def unsqueeze(self, dim): return F.unsqueeze(self, dim)
    def transpose(self, dim0, dim1): return F.transpose(self, dim0, dim1)
    def permute(self, *dims): return F.permute(self, _shape_args(dims))
    def t(self): return F.t(self)
    @property
    def T(self): return F.permute(self, tuple(range(self.ndim - 1, -1, -1)))
    def expand(self, *sizes): return F.expand(self, _shape_args(sizes))
    def expand_as(self, other): return F.expand(self, other.shape)
    def contiguous(self): return F.contiguous(self)
    def split(self, split_size, dim=0): return F.split(self, split_size, dim)
    def chunk(self, chunks, dim=0): return F.chunk(self, chunks, dim)


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or backend.get_array_module(x) is not np


def parse_to_arguments(op: str, args: tuple, kwargs: dict):
    """The (device, dtype) asked for by ``to(device)``, ``to(dtype)``, ``to(device, dtype)``,
    ``to(tensor)`` or the keywords ``device=``/``dtype=``; either may be None."""
    kwargs = dict(kwargs)
    dev, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    kwargs.pop("non_blocking", None)
    if kwargs:
        raise TypeError(f"{op}: unexpected arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            dev, dtype = a.device, a.dtype
        elif isinstance(a, (str, backend.Device)):
            dev = a
        else:
            dtype = a
    return dev, dtype


def _is_operand(x) -> bool:
    """Whether ``x`` can meet a tensor in a comparison (``t == None`` is False, as in PyTorch)."""
    return isinstance(x, (Tensor, int, float, bool, np.number, np.bool_, np.ndarray))


def _shape_args(args) -> tuple:
    """Accept shapes as varargs ``(3, 4)`` or as one tuple/list ``((3, 4),)``."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


class _HookHandle:
    def __init__(self, hooks: list, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


# The ops need the Tensor class, so they are imported after it is defined.
recording.Tensor = Tensor  # the recorder tells tensors from arrays (it cannot import this module)

from . import functional as F  # noqa: E402
