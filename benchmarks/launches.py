"""Kernel launches per training step of a report model, for ``benchmarks/models.py``'s table.

    launches_per_step(spec, example_module) -> {"launches": 80, "ops": 13, "optimizer": 1, ...}

Counted on the simulated CUDA device (``tinynet.launch_count.count_training_step``), so it
works without a GPU and gives the same number on every machine; a batch of 2 (the count does
not depend on the batch size). On a GPU, ``host_us_per_launch`` turns a measured host time per
step into microseconds per launch. Wiring it into the table is left to ``models.py``.
"""
from __future__ import annotations

import numpy as np

import tinynet
import tinynet.nn.functional as F
from tinynet import backend, optim
from tinynet.launch_count import count_training_step


def launches_per_step(spec, example_module, batch: int = 2) -> dict:
    """The launches of one training step of ``spec``'s model (a ``ModelSpec`` of models.py,
    built from ``example_module``) with its real optimiser and loss, on the simulated device."""
    if backend.cuda_available():
        raise RuntimeError("launches_per_step: counting needs the simulated device; run it where CuPy sees no "
                           "GPU (the count is the same on every machine)")
    with backend.simulate_cuda(True):
        tinynet.manual_seed(0)
        model = spec.build(example_module).to("cuda")
        model.train()
        optimizer = getattr(optim, spec.optimizer)(model.parameters(), **spec.optim_kwargs)
        rng = np.random.default_rng(0)
        x = tinynet.tensor(rng.random((batch, 1, 28, 28), dtype=np.float32), device="cuda")
        y = tinynet.tensor(rng.integers(0, 10, batch), device="cuda")
        return count_training_step(model, optimizer, getattr(F, spec.loss), x, y)


def host_us_per_launch(host_seconds_per_step: float, launches: int) -> float:
    """Host microseconds per launch, from a step's measured host time and its launch count."""
    return 1e6 * host_seconds_per_step / max(launches, 1)
