"""The CPU threads of the numba kernels: which of numba's threading layers runs them, and when a
kernel is worth splitting across threads at all.

**The layer.** numba runs ``parallel=True`` loops on one of three thread pools: ``omp`` (an
OpenMP runtime), ``tbb`` (Intel TBB, the ``tbb`` package) or ``workqueue`` (numba's own small
pool of POSIX threads). tinynet asks for ``workqueue``. An OpenMP pool competes with every
other OpenMP pool of the process (PyTorch's, for one), and its threads spin-wait on the cores
after each parallel region: with PyTorch imported first, tinynet's
kernels waited for PyTorch's spinning threads (a step 2-9x slower), and the cure then
(``OMP_WAIT_POLICY=PASSIVE`` for the whole process) slowed PyTorch down in turn. The workqueue's
threads belong to numba alone and sleep when idle: no other library's pool can starve them and
they starve no one. ``tbb`` would do as well but is one more package to install. What the
workqueue cannot do is run kernels launched from two Python threads at once (numba aborts the
process if that happens), so :class:`Loops` lets one thread at a time into the parallel
kernels; a second one waits (the two would share the same cores anyway). The layer is numba's
setting for the whole process (other numba code in it runs on the workqueue too);
``NUMBA_THREADING_LAYER`` set by the user wins.

**The grain.** Waking the pool costs tens of microseconds, more when other processes hold the
cores, so a kernel runs on its threads only when it has at least :data:`GRAIN` elements of work
(``numba.set_num_threads`` still caps them); below that it runs on the calling thread, as
PyTorch does below its grain size. Every kernel's driver loop is written once and compiled twice
by :class:`Loops`: with ``numba.prange`` (parallel) and with ``range`` (serial).
"""
from __future__ import annotations

import contextlib
import os
import threading

import numba

__all__ = ["LAYER", "GRAIN", "Loops", "grain"]

LAYER = "workqueue"
if not os.environ.get("NUMBA_THREADING_LAYER"):
    # numba reads this when its first parallel kernel runs; set at import, before any can.
    numba.config.THREADING_LAYER = LAYER

# Elements of work below which a kernel runs on the calling thread. `benchmarks/threads.py
# --kernels` on the shared 2-core development machine: of the report models' kernels up to
# 3.7M elements (im2col + col2im of LeNet's and VGG's convolutions, max-pool, BatchNorm) all
# but one ran 4-55% slower on two threads than on one (VGG's first max-pool, 1.6M: 1.18x
# faster); cnn5's conv2 (14M) and bn2 (6.4M) ran 1.58x and 1.32x faster (docs/benchmarks.md,
# "CPU thread settings").
GRAIN = 1 << 22

_one_at_a_time = threading.Lock()  # the workqueue runs one parallel launch at a time


class Loops:
    """A kernel's driver loop compiled twice from one factory ``make(parallel)``, which returns
    the ``@numba.njit(parallel=parallel, cache=True)`` function whose outer loop runs over
    ``numba.prange if parallel else range``. Calling ``loops(work, *args)`` runs the parallel
    version when ``work`` (elements) reaches :data:`GRAIN` and numba has more than one thread,
    else the serial one."""

    def __init__(self, make):
        self.serial = make(False)
        self.parallel = make(True)

    def __call__(self, work: int, *args):
        if work < GRAIN or numba.get_num_threads() < 2:
            return self.serial(*args)
        with _one_at_a_time:
            return self.parallel(*args)


@contextlib.contextmanager
def grain(elements: int):
    """Inside this block :data:`GRAIN` is ``elements`` (tests use 0 to run every kernel's
    parallel version, and a huge value for the serial one)."""
    global GRAIN
    previous, GRAIN = GRAIN, elements
    try:
        yield
    finally:
        GRAIN = previous
