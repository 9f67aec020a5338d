"""Factories: ``tensor``, ``zeros``, ``ones``, ``full``, ``arange``, ``eye``, ``randn``, ...

Each takes ``dtype``, ``device`` and ``requires_grad`` as in PyTorch, and shapes either as
varargs (``zeros(3, 4)``) or as one tuple (``zeros((3, 4))``). Dtype rules of ``tensor``:
an array keeps its dtype; Python floats give the default float dtype (float32), Python ints
give int64, Python bools give bool.
"""
from __future__ import annotations

import numpy as np

from . import backend
from . import dtypes as _dt
from .random import generator_for
from .tensor import Tensor, _is_array, _shape_args
from .recording import recordable

__all__ = [
    "tensor", "as_tensor", "from_numpy", "zeros", "ones", "full", "empty", "zeros_like", "ones_like",
    "full_like", "empty_like", "arange", "linspace", "eye", "rand", "randn", "randint", "rand_like",
    "randn_like", "randperm",
]


def _infer_array(data, dtype=None) -> np.ndarray:
    """Python data -> NumPy array with PyTorch's dtype inference (or ``dtype`` when given, so
    that ``tensor([0.1], dtype=float64)`` keeps full precision)."""
    if dtype is not None:
        return np.asarray(data, dtype=_dt.to_dtype(dtype))
    if isinstance(data, np.generic):
        return np.asarray(data)
    if isinstance(data, (list, tuple)):
        data = [d.data if isinstance(d, Tensor) else d for d in data] if any(isinstance(d, Tensor) for d in data) \
            else data
    array = np.asarray(data)
    if array.dtype.kind == "f":
        return array.astype(_dt.get_default_dtype(), copy=False)
    if array.dtype.kind in "iu":
        return array.astype(np.int64, copy=False)
    if array.dtype.kind == "b":
        return array
    raise TypeError(f"tensor: cannot make a tensor from {type(data).__name__} with dtype {array.dtype}")


def _finish(array, dtype, device, requires_grad) -> Tensor:
    if dtype is not None:
        array = array.astype(_dt.to_dtype(dtype), copy=False)
    if device is not None:
        array = backend.to_device(array, device)
    return Tensor(array, requires_grad=requires_grad)


@recordable
def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (an array, a Tensor, or nested lists/scalars)."""
    if isinstance(data, Tensor):
        data = data.data
    if _is_array(data):
        array = data.copy()
    else:
        array = _infer_array(data, dtype)
    return _finish(array, dtype, device, requires_grad)


@recordable
def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like ``tensor`` but shares the array's memory when dtype and device already match."""
    if isinstance(data, Tensor):
        return data.to(*(a for a in (device, dtype) if a is not None))
    array = data if _is_array(data) else _infer_array(data, dtype)
    return _finish(array, dtype, device, False)


def from_numpy(array: np.ndarray) -> Tensor:
    """A CPU tensor sharing memory with a NumPy array."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    return Tensor(array)


def _made_on(device, make):
    """``make()`` with ``device``'s GPU current, so that the new array lands on it."""
    with backend.device_context(device if device is not None else "cpu"):
        return make()


def _xp_dtype(dtype, device, default=None):
    xp = backend.array_module(device if device is not None else "cpu")
    return xp, _dt.to_dtype(dtype) if dtype is not None else (default or _dt.get_default_dtype())


@recordable
def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    xp, dtype = _xp_dtype(dtype, device)
    return Tensor(_made_on(device, lambda: xp.zeros(_shape_args(size), dtype)), requires_grad=requires_grad)


@recordable
def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    xp, dtype = _xp_dtype(dtype, device)
    return Tensor(_made_on(device, lambda: xp.ones(_shape_args(size), dtype)), requires_grad=requires_grad)


@recordable
def empty(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    xp, dtype = _xp_dtype(dtype, device)
    return Tensor(_made_on(device, lambda: xp.empty(_shape_args(size), dtype)), requires_grad=requires_grad)


@recordable
def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if dtype is None:
        dtype = _infer_array(fill_value).dtype
    xp, dtype = _xp_dtype(dtype, device)
    shape = tuple(size) if not isinstance(size, int) else (size,)
    return Tensor(_made_on(device, lambda: xp.full(shape, fill_value, dtype)), requires_grad=requires_grad)


def _like(fn, t: Tensor, dtype, device, requires_grad, *args):
    return fn(t.shape, *args, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


@recordable
def zeros_like(input: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(zeros, input, dtype, device, requires_grad)


@recordable
def ones_like(input: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(ones, input, dtype, device, requires_grad)


@recordable
def empty_like(input: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(empty, input, dtype, device, requires_grad)


@recordable
def full_like(input: Tensor, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(input.shape, fill_value, dtype=dtype or input.dtype, device=device or input.device,
                requires_grad=requires_grad)


@recordable
def arange(start, end=None, step=1, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Values from ``start`` up to (not including) ``end``; int64 when all bounds are ints."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = _dt.int64 if is_int else _dt.get_default_dtype()
    xp, dtype = _xp_dtype(dtype, device)
    return Tensor(_made_on(device, lambda: xp.arange(start, end, step).astype(dtype)), requires_grad=requires_grad)


@recordable
def linspace(start, end, steps, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    xp, dtype = _xp_dtype(dtype, device)
    return Tensor(_made_on(device, lambda: xp.linspace(start, end, steps).astype(dtype)), requires_grad=requires_grad)


@recordable
def eye(n, m=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    xp, dtype = _xp_dtype(dtype, device)
    return Tensor(_made_on(device, lambda: xp.eye(n, m, dtype=dtype)), requires_grad=requires_grad)


@recordable
def rand(*size, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Uniform samples on [0, 1) from the device's seeded generator."""
    _, dtype = _xp_dtype(dtype, device)
    gen = generator_for(device or "cpu", generator)
    return Tensor(gen.uniform(_shape_args(size), 0.0, 1.0, dtype), requires_grad=requires_grad)


@recordable
def randn(*size, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from the device's seeded generator."""
    _, dtype = _xp_dtype(dtype, device)
    gen = generator_for(device or "cpu", generator)
    return Tensor(gen.normal(_shape_args(size), 0.0, 1.0, dtype), requires_grad=requires_grad)


@recordable
def randint(*args, size=None, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """``randint(high, size)`` or ``randint(low, high, size)``: integers in [low, high), int64."""
    if size is None:
        *bounds, size = args
    else:
        bounds = list(args)
    low, high = (0, bounds[0]) if len(bounds) == 1 else bounds
    _, dtype = _xp_dtype(dtype, device, default=_dt.int64)
    gen = generator_for(device or "cpu", generator)
    return Tensor(gen.integers(low, high, tuple(size), _dt.int64).astype(dtype, copy=False),
                  requires_grad=requires_grad)


@recordable
def rand_like(input: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(rand, input, dtype, device, requires_grad)


@recordable
def randn_like(input: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(randn, input, dtype, device, requires_grad)


@recordable
def randperm(n: int, generator=None, dtype=None, device=None) -> Tensor:
    gen = generator_for(device or "cpu", generator)
    return Tensor(gen.permutation(n).astype(_dt.to_dtype(dtype) or _dt.int64))
