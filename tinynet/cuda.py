"""``tinynet.cuda``: ask about GPUs without importing CuPy unless one is wanted.

With a real GPU these answer for CuPy. Without one, they answer for the simulated device
(:mod:`tinynet.sim`) when simulation has been switched on explicitly
(``tinynet.backend.simulate_cuda()`` or ``TINYNET_SIMULATE_CUDA=1``): then ``is_available()`` is
True, because ``'cuda'`` tensors do work (slowly, on NumPy), and :func:`is_simulated` tells the
two apart. Without a GPU and without simulation, ``is_available()`` is False and asking for a
``'cuda'`` tensor raises an error that says what to install.
"""
from __future__ import annotations

from . import backend

__all__ = ["is_available", "is_simulated", "device_count", "current_device", "synchronize", "manual_seed"]


def is_available() -> bool:
    """True when ``'cuda'`` tensors can be made: CuPy sees an NVIDIA GPU, or the simulator is on."""
    return backend.cuda_available() or backend.is_simulated()


def is_simulated() -> bool:
    """True when ``'cuda'`` runs on the NumPy-backed simulator (no GPU, simulation switched on)."""
    return backend.is_simulated()


def device_count() -> int:
    """How many GPUs CuPy sees, or the simulator has; 0 when neither is available."""
    if backend.cuda_available():
        return backend._gpu_count()
    if backend.is_simulated():
        return backend._sim_module().device_count()
    return 0


def current_device() -> int:
    """The index of the current GPU (0 unless changed with the array module's ``cuda.Device``)."""
    return backend.array_module("cuda").cuda.Device().id


def synchronize(device=None) -> None:
    """Wait until every kernel queued on the GPU has finished (a no-op without a GPU). Only
    needed for timing: reading a value (``.item()``, ``.cpu()``) waits by itself."""
    if not is_available():
        return
    index = 0 if device is None else device if isinstance(device, int) else backend.device(device).index
    cp = backend.array_module(f"cuda:{index}")
    with cp.cuda.Device(index):
        cp.cuda.Device().synchronize()


def manual_seed(seed: int) -> None:
    """Seed the default generator of every GPU."""
    from .random import default_generator
    for i in range(device_count()):
        default_generator(f"cuda:{i}").manual_seed(seed)


manual_seed_all = manual_seed
