"""``tinynet.cuda``: ask about GPUs without importing CuPy unless one is wanted."""
from __future__ import annotations

from . import backend

__all__ = ["is_available", "device_count", "synchronize", "manual_seed"]


def is_available() -> bool:
    """True when CuPy is installed and sees at least one NVIDIA GPU."""
    return backend.cuda_available()


def device_count() -> int:
    """How many GPUs CuPy sees (0 without CuPy)."""
    if not is_available():
        return 0
    return backend.cupy_or_error().cuda.runtime.getDeviceCount()


def synchronize(device=None) -> None:
    """Wait until every kernel queued on the GPU has finished (a no-op without a GPU)."""
    if is_available():
        cp = backend.cupy_or_error()
        index = 0 if device is None else backend.device(device if not isinstance(device, int) else f"cuda:{device}").index
        with cp.cuda.Device(index):
            cp.cuda.Device().synchronize()


def manual_seed(seed: int) -> None:
    """Seed the default generator of every GPU."""
    from .random import default_generator
    for i in range(device_count()):
        default_generator(f"cuda:{i}").manual_seed(seed)
