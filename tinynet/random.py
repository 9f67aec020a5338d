"""Seeded random numbers: one generator per device.

``tinynet.manual_seed(s)`` reseeds every device's default generator, so the same seed on the
same device gives the same run. Ops that need randomness (dropout, init, randn) draw from
:func:`generator_for`, which returns the tensor's device's default generator unless the caller
passes its own :class:`Generator`.
"""
from __future__ import annotations

import numpy as np

from . import backend

__all__ = ["Generator", "manual_seed", "seed", "initial_seed", "default_generator", "generator_for",
           "get_rng_state", "set_rng_state"]

_initial_seed = 0x5EED
# Called with a generator right after it is reseeded: device-side generator states (dropout's
# Philox [seed, offset]) restart at once, because a CUDA graph replays their draws without the
# Python that would otherwise notice the new seed.
_on_manual_seed: list = []


class Generator:
    """A seeded source of random arrays on one device (NumPy's PCG64 on cpu, CuPy's on cuda; on
    the simulated CUDA device, NumPy's PCG64 again, seeded the same way but drawn differently)."""

    def __init__(self, device="cpu"):
        self.device = backend.device(device)
        self.manual_seed(_initial_seed)

    def manual_seed(self, seed: int) -> "Generator":
        self._seed = int(seed)
        if self.device.type == "cpu":
            self._rng = np.random.Generator(np.random.PCG64(self._seed))
        else:
            cp = backend.array_module(self.device)
            with cp.cuda.Device(self.device.index):
                self._rng = cp.random.RandomState(self._seed)
        for listener in _on_manual_seed:
            listener(self)
        return self

    def initial_seed(self) -> int:
        return self._seed

    # The draws: shape, then parameters, then dtype; each returns an array on self.device.
    def uniform(self, shape, low=0.0, high=1.0, dtype=np.float32):
        if self.device.type == "cpu":
            out = self._rng.random(shape, dtype=np.float64 if np.dtype(dtype) == np.float64 else np.float32)
            return (out * (high - low) + low).astype(dtype, copy=False) if (low, high) != (0.0, 1.0) \
                else out.astype(dtype, copy=False)
        with backend.device_context(self.device):  # CuPy draws on the current GPU
            return self._rng.uniform(low, high, shape).astype(dtype, copy=False)

    def normal(self, shape, mean=0.0, std=1.0, dtype=np.float32):
        if self.device.type == "cpu":
            z = self._rng.standard_normal(shape, dtype=np.float64 if np.dtype(dtype) == np.float64 else np.float32)
        else:
            with backend.device_context(self.device):
                z = self._rng.standard_normal(shape, dtype=dtype)
        if (mean, std) != (0.0, 1.0):
            z = z * std + mean
        return z.astype(dtype, copy=False)

    def integers(self, low, high, shape, dtype=np.int64):
        if self.device.type == "cpu":
            return self._rng.integers(low, high, shape, dtype=dtype)
        with backend.device_context(self.device):
            return self._rng.randint(low, high, shape, dtype=dtype)

    def permutation(self, n: int):
        if self.device.type == "cpu":
            return self._rng.permutation(n)
        with backend.device_context(self.device):
            return self._rng.permutation(n)

    def get_state(self):
        """A picklable snapshot of the generator (for checkpoints)."""
        if self.device.type == "cpu":
            return {"seed": self._seed, "state": self._rng.bit_generator.state}
        raise NotImplementedError("get_state: saving a CUDA generator's state is not supported yet")

    def set_state(self, state) -> None:
        if self.device.type != "cpu":
            raise NotImplementedError("set_state: restoring a CUDA generator's state is not supported yet")
        self._seed = state["seed"]
        self._rng.bit_generator.state = state["state"]


_generators: dict = {}


def default_generator(device="cpu") -> Generator:
    """The default generator of a device, made (and seeded) on first use."""
    dev = backend.device(device)
    gen = _generators.get(dev)
    if gen is None:
        gen = _generators[dev] = Generator(dev)
    return gen


def generator_for(device, generator: Generator | None = None) -> Generator:
    """The generator an op on ``device`` should draw from: the caller's, else the default."""
    if generator is not None:
        if generator.device != backend.device(device):
            raise RuntimeError(f"generator on {generator.device} used for a tensor on {backend.device(device)}")
        return generator
    return default_generator(device)


def manual_seed(seed: int) -> Generator:
    """Seed the default generator of every device (those made later start from this seed too)."""
    global _initial_seed
    _initial_seed = int(seed)
    for gen in _generators.values():
        gen.manual_seed(seed)
    return default_generator("cpu")


def seed() -> int:
    """Seed every device from the operating system's entropy and return the seed."""
    s = int(np.random.SeedSequence().entropy % (2 ** 63))
    manual_seed(s)
    return s


def initial_seed() -> int:
    return _initial_seed


def get_rng_state(device="cpu"):
    return default_generator(device).get_state()


def set_rng_state(state, device="cpu") -> None:
    default_generator(device).set_state(state)
