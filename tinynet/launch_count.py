"""How many kernels one training step launches, counted on the simulated CUDA device.

On a GPU every kernel launch costs host time (about 10 us through CuPy) whatever its size, so
for small models the step time is launches x host time per launch. The simulated device
(:mod:`tinynet.sim`) counts what a GPU would queue: every CUDA C kernel and every CuPy call
that writes device memory (``sim.stats.launches``), the GEMMs and the fills among them.

:func:`count_training_step` runs the usual step (``zero_grad()``, forward, loss, backward,
``optimizer.step()``) once to warm up (optimiser state and kernel tables are made on the first
step) and once more counting, phase by phase, with the step's peak device memory. It also counts the step's autograd ops (the
nodes of its backward graph), so that launches per op can be compared across models.
"""
from __future__ import annotations

import collections
import contextlib

from . import autograd, sim

__all__ = ["count_training_step"]

_PHASES = ("zero_grad", "forward", "backward", "optimizer")


def count_training_step(model, optimizer, loss_fn, x, y, warmup: int = 1, trace: bool = False) -> dict:
    """Count the kernel launches of one training step of ``model`` on the simulated device.

    ``x``, ``y``: a batch on the simulated ``cuda`` device; ``loss_fn(model(x), y)`` is the loss.
    Runs ``warmup`` uncounted steps first. Returns a dict with ``launches``, ``gemms`` and
    ``fills`` for the whole step; ``ops``, the autograd ops (backward-graph nodes) of the step;
    the launches of each phase (``zero_grad``, ``forward`` (with the loss), ``backward``,
    ``optimizer``); and ``names``, a Counter of launches by kernel name.
    """
    if not isinstance(x.data, sim.SimArray):
        raise ValueError(f"count_training_step: expected a batch on the simulated CUDA device, got one on "
                         f"{x.device} (tinynet.backend.simulate_cuda(True) with no GPU, then .to('cuda'))")
    for _ in range(warmup):
        _step(model, optimizer, loss_fn, x, y, {})
    counts: dict = {}
    with sim.tracing_memory() if trace else contextlib.nullcontext() as memory_trace:
        ops = _step(model, optimizer, loss_fn, x, y, counts)
    total = {key: sum(counts[phase][key] for phase in _PHASES) for key in ("launches", "gemms", "fills")}
    names = collections.Counter()
    for phase in _PHASES:
        names.update(counts[phase]["launch_names"])
    # Each phase's peak counts from the bytes alive at its start, so the step's peak is the largest.
    memory = {"peak_bytes": max(counts[phase]["peak_bytes"] for phase in _PHASES),
              "live_bytes_before": counts["zero_grad"]["live_bytes_before"],
              "peak_phase": max(_PHASES, key=lambda phase: counts[phase]["peak_bytes"])}
    if trace:
        memory["memory_trace"] = memory_trace
    return {**total, "ops": ops, **{phase: counts[phase]["launches"] for phase in _PHASES}, "names": names,
            **memory}


def _step(model, optimizer, loss_fn, x, y, counts: dict) -> int:
    """One training step; the sim counters of each phase go into ``counts``. Returns the
    number of nodes of the step's backward graph."""
    with sim.counting() as c:
        optimizer.zero_grad()
    counts["zero_grad"] = c
    with sim.counting() as c:
        loss = loss_fn(model(x), y)
    counts["forward"] = c
    ops = len(autograd._topological_order(loss.grad_fn))
    with sim.counting() as c:
        loss.backward()
    counts["backward"] = c
    with sim.counting() as c:
        optimizer.step()
    counts["optimizer"] = c
    return ops
