"""Devices: which array library holds an array, and how arrays move between devices.

tinynet runs the same op code on two array libraries:

* ``cpu``  -> NumPy
* ``cuda`` / ``cuda:N`` (alias ``gpu`` / ``gpu:N``) -> CuPy, imported only when first asked for.

Every op is written once against an *array module* ``xp`` (``numpy`` or ``cupy``), which
this module hands out. Nothing else in tinynet asks "is this a CuPy array?": it asks
:func:`get_array_module` or :func:`device_of`.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "Device", "device", "CPU", "get_array_module", "device_of", "array_module",
    "to_device", "cupy_or_error", "cuda_available",
]

_INSTALL_HINT = (
    "install CuPy for your CUDA version, e.g. `pip install tinynet[cuda12]` "
    "(cupy-cuda12x) or `pip install tinynet[cuda13]` (cupy-cuda13x)"
)


class Device:
    """A place where arrays live: ``Device('cpu')`` or ``Device('cuda', 0)``.

    Compares equal to its string form, so ``x.device == 'cpu'`` works as in PyTorch.
    """

    __slots__ = ("type", "index")

    def __init__(self, type: str, index: int | None = None):
        if type not in ("cpu", "cuda"):
            raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N' or 'gpu', got {type!r}")
        self.type = type
        self.index = None if type == "cpu" else (0 if index is None else int(index))

    def __str__(self) -> str:
        return "cpu" if self.type == "cpu" else f"cuda:{self.index}"

    def __repr__(self) -> str:
        if self.type == "cpu":
            return "device(type='cpu')"
        return f"device(type='cuda', index={self.index})"

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            try:
                other = device(other)
            except ValueError:
                return False
        if not isinstance(other, Device):
            return NotImplemented
        return self.type == other.type and self.index == other.index

    def __hash__(self) -> int:
        return hash((self.type, self.index))


CPU = Device("cpu")


def device(spec) -> Device:
    """Parse ``'cpu'``, ``'cuda'``, ``'cuda:1'``, ``'gpu'``, ``'gpu:1'`` or a Device."""
    if isinstance(spec, Device):
        return spec
    if spec is None:
        return CPU
    if not isinstance(spec, str):
        raise TypeError(f"device: expected a string such as 'cpu' or 'cuda:0', got {type(spec).__name__}")
    name, _, index = spec.strip().lower().partition(":")
    if name == "gpu":
        name = "cuda"
    if name not in ("cpu", "cuda") or (index and not index.isdigit()) or (name == "cpu" and index):
        raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N' or 'gpu', got {spec!r}")
    return Device(name, int(index) if index else None)


# ---------------------------------------------------------------------------------------------
# CuPy, imported lazily so that CPU use never needs it.
_cupy = None


def cupy_or_error():
    """Return the ``cupy`` module, or raise a RuntimeError that says what to install."""
    global _cupy
    if _cupy is None:
        try:
            import cupy
        except ImportError as exc:
            raise RuntimeError(f"a CUDA device was requested but CuPy is not installed: {_INSTALL_HINT}") from exc
        _cupy = cupy
    return _cupy


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one GPU (never raises)."""
    try:
        cp = cupy_or_error()
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def _is_cupy_array(array) -> bool:
    return _cupy is not None and isinstance(array, _cupy.ndarray)


def get_array_module(array):
    """The array module (``numpy`` or ``cupy``) that holds ``array``."""
    if _is_cupy_array(array):
        return _cupy
    return np


def device_of(array) -> Device:
    """The Device on which ``array`` lives."""
    if _is_cupy_array(array):
        return Device("cuda", array.device.id)
    return CPU


def array_module(dev) -> object:
    """The array module for a device: ``numpy`` for cpu, ``cupy`` for cuda."""
    dev = device(dev)
    if dev.type == "cpu":
        return np
    cp = cupy_or_error()
    count = _cuda_device_count(cp)
    if dev.index >= count:
        raise RuntimeError(f"device {dev} requested but CuPy sees {count} GPU(s)"
                           + ("" if count else f"; {_INSTALL_HINT} on a machine with an NVIDIA GPU"))
    return cp


def _cuda_device_count(cp) -> int:
    try:
        return cp.cuda.runtime.getDeviceCount()
    except Exception:
        return 0


def to_device(array, dev):
    """Return ``array`` on device ``dev`` (the same object when it is already there)."""
    dev = device(dev)
    src = device_of(array)
    if src == dev:
        return array
    if dev.type == "cpu":
        return array.get()
    cp = array_module(dev)
    with cp.cuda.Device(dev.index):
        return cp.asarray(array)
