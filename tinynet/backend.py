"""Devices: which array library holds an array, and how arrays move between devices.

tinynet runs the same op code on two array libraries:

* ``cpu``  -> NumPy
* ``cuda`` / ``cuda:N`` (alias ``gpu`` / ``gpu:N``) -> CuPy, imported only when first asked for.

Every op is written once against an *array module* ``xp`` (``numpy`` or ``cupy``), which
this module hands out. Nothing else in tinynet asks "is this a CuPy array?": it asks
:func:`get_array_module` or :func:`device_of`.

Without a GPU, :func:`simulate_cuda` (or the environment variable ``TINYNET_SIMULATE_CUDA=1``)
puts ``cuda`` tensors on :mod:`tinynet.sim`, a NumPy-backed stand-in for CuPy that refuses
implicit reads back to the host; the test suite runs its ``cuda`` cases there. A real GPU
always wins: the simulator is only used when CuPy or a GPU is missing.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

__all__ = [
    "Device", "device", "CPU", "get_array_module", "device_of", "array_module",
    "to_device", "device_context", "to_host", "item", "cupyx", "cupy_or_error", "cuda_available", "simulate_cuda", "is_simulated",
    "set_gemm_tf32",
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
_cupy_missing = None  # the ImportError, once importing CuPy has failed (not retried: it is slow)
_real_gpu_count = None  # GPUs CuPy sees, asked once


def cupy_or_error():
    """Return the ``cupy`` module, or raise a RuntimeError that says what to install."""
    global _cupy, _cupy_missing
    if _cupy is None:
        if _cupy_missing is not None:
            raise RuntimeError(f"a CUDA device was requested but CuPy is not installed: {_INSTALL_HINT}") \
                from _cupy_missing
        try:
            import cupy
        except ImportError as exc:
            _cupy_missing = exc
            raise RuntimeError(f"a CUDA device was requested but CuPy is not installed: {_INSTALL_HINT}") from exc
        _cupy = cupy
    return _cupy


def _gpu_count() -> int:
    """GPUs that CuPy sees: 0 without CuPy or without a working driver (never raises)."""
    global _real_gpu_count
    if _real_gpu_count is None:
        try:
            _real_gpu_count = _cuda_device_count(cupy_or_error())
        except Exception:
            _real_gpu_count = 0
    return _real_gpu_count


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one GPU (never raises). The simulator does not
    count: see :func:`is_simulated`."""
    return _gpu_count() > 0


# ---------------------------------------------------------------------------------------------
# The simulated device (tinynet/sim.py), for machines without a GPU.
_sim = None  # the tinynet.sim module, once imported (it registers itself here)
_simulate = os.environ.get("TINYNET_SIMULATE_CUDA", "").strip().lower() not in ("", "0", "false", "no")


class simulate_cuda:
    """Put ``cuda`` devices on the simulator (:mod:`tinynet.sim`) when CuPy or a GPU is missing,
    or stop doing so with ``simulate_cuda(False)``. Works as a call, or as a context manager that
    restores the previous setting on exit::

        tinynet.backend.simulate_cuda()             # from now on
        with tinynet.backend.simulate_cuda(False):  # only inside the block
            ...

    ``device_count`` sets how many GPUs the simulator pretends to have (restored on exit from a
    ``with`` block). With a real GPU this
    changes nothing: CuPy is used. The simulator tests plumbing only (see tinynet/sim.py).
    """

    def __init__(self, enabled: bool = True, device_count: int | None = None):
        global _simulate
        self.previous, self.previous_count = _simulate, None
        _simulate = bool(enabled)
        if enabled and device_count is not None:
            self.previous_count = _sim_module().device_count()
            _sim.configure(device_count)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _simulate
        _simulate = self.previous
        if self.previous_count is not None:
            _sim.configure(self.previous_count)
        return False


def is_simulated() -> bool:
    """True when ``cuda`` devices run on the simulator: simulation is on and there is no GPU."""
    return _simulate and not cuda_available()


def _sim_module():
    if _sim is None:
        from . import sim  # noqa: F401  (registers itself as _sim)
    return _sim


def _is_cupy_array(array) -> bool:
    return _cupy is not None and isinstance(array, _cupy.ndarray)


def _is_sim_array(array) -> bool:
    return _sim is not None and isinstance(array, _sim.SimArray)


def get_array_module(array):
    """The array module (``numpy``, ``cupy``, or the simulator's stand-in for it) that holds
    ``array``."""
    if _is_cupy_array(array):
        return _cupy
    if _is_sim_array(array):
        return _sim.cupy
    return np


def device_of(array) -> Device:
    """The Device on which ``array`` lives."""
    if _is_cupy_array(array) or _is_sim_array(array):
        return Device("cuda", array.device.id)
    return CPU


def array_module(dev) -> object:
    """The array module for a device: ``numpy`` for cpu, ``cupy`` for cuda (the simulator's
    stand-in when :func:`is_simulated`)."""
    dev = device(dev)
    if dev.type == "cpu":
        return np
    if _simulate and not cuda_available():
        sim = _sim_module()
        if dev.index >= sim.device_count():
            raise RuntimeError(f"device {dev} requested but the CUDA simulator has {sim.device_count()} "
                               "device(s) (simulate_cuda(device_count=...))")
        return sim.cupy
    cp = cupy_or_error()
    count = _gpu_count()
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
        if src.type == "cuda":  # GPU to GPU: copy() copies onto the current device
            return array.copy()
        return cp.asarray(array)


def cupyx(xp):
    """The ``cupyx`` module that goes with the array module ``xp`` (CuPy's, or the simulator's
    stand-in, which has ``cupyx.scipy.special.erf``); imported only when asked for."""
    if _sim is not None and xp is _sim.cupy:
        return _sim.cupyx
    import cupyx as module
    return module


def device_context(dev):
    """A context manager in which new arrays are made on ``dev``: its GPU becomes the current one
    (CuPy allocates on the current GPU). A no-op for the CPU."""
    dev = device(dev)
    if dev.type == "cpu":
        return contextlib.nullcontext()
    return array_module(dev).cuda.Device(dev.index)


def to_host(array) -> np.ndarray:
    """``array`` as a NumPy array: itself on the CPU, else an explicit copy from the device
    (which waits for the GPU: call it where a value is really needed)."""
    return array if device_of(array).type == "cpu" else array.get()


def item(array):
    """The value of a one-element array as a Python number (an explicit read from the device,
    which waits for the GPU)."""
    return to_host(array).item()


def set_gemm_tf32(xp, enabled: bool) -> None:
    """Let float32 matrix products on CuPy use TF32 tensor cores (``enabled``), or keep them exact
    float32 (cuBLAS's default compute type). Called before each GEMM with
    ``tinynet.backends.allow_tf32``; a no-op for NumPy. CuPy reads the compute type per call
    (``cupy._core._routines_linalg``; its ``CUPY_TF32`` environment variable only sets the
    initial value), so switching costs one comparison. On GPUs older than Ampere CuPy warns and
    stays exact. The simulator records the setting but always computes in float32."""
    if xp is np:
        return
    linalg = getattr(getattr(xp, "_core", None), "_routines_linalg", None)
    if linalg is None:  # CuPy imports this submodule itself; make sure of it
        import importlib
        linalg = importlib.import_module(f"{xp.__name__}._core._routines_linalg")
    wanted = linalg.COMPUTE_TYPE_TF32 if enabled else linalg.COMPUTE_TYPE_DEFAULT
    if linalg.get_compute_type(np.float32) != wanted:
        linalg.set_compute_type(np.float32, wanted)
