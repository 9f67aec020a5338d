"""The CPU threads of the numba kernels: which of numba's threading layers runs them, and when a
kernel is worth splitting across threads at all.

**The layer.** numba runs ``parallel=True`` loops on one of three thread pools: ``tbb`` (Intel
TBB, the ``tbb`` package, a dependency of tinynet where PyPI has a wheel), ``omp`` (an OpenMP
runtime) or ``workqueue`` (numba's own small pool of POSIX threads). tinynet asks for ``tbb``,
then ``workqueue``, never ``omp``:

* An OpenMP pool competes with every other OpenMP pool of the process (PyTorch's, for one), and
  its threads spin-wait on the cores after each parallel region: with PyTorch imported first,
  tinynet's kernels waited for PyTorch's spinning threads (a step 2-9x slower), and the cure then
  (``OMP_WAIT_POLICY=PASSIVE`` for the whole process) slowed PyTorch down in turn.
* TBB's threads belong to TBB, are made for sharing a machine with other pools, and start a
  parallel loop in about 2 us (measured on the 2-core development machine: an empty ``prange``
  took 1.4-2.4 us on ``tbb``, 1.5 us on ``omp``, 140-160 us on ``workqueue``).
* The workqueue is the fallback where TBB is missing: a good neighbour too, but its start-up
  cost makes only big kernels worth splitting (a higher grain below), and it cannot run
  kernels launched from two Python threads at once (numba aborts the process), so :class:`Loops`
  lets one thread at a time into the parallel kernels there.

The layer is numba's setting for the whole process (other numba code in it uses the same pool);
``NUMBA_THREADING_LAYER`` (or ``NUMBA_THREADING_LAYER_PRIORITY``) set by the user wins.

**The grain.** A kernel runs on numba's threads only when it has at least :data:`GRAIN` elements
of work (``numba.set_num_threads`` still caps the threads); below that it runs on the calling
thread, as PyTorch does below its grain size (32768 elements, the value used here on TBB). Every
kernel's driver loop is written once and compiled twice by :class:`Loops`: with ``numba.prange``
(parallel) and with ``range`` (serial).
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import os
import threading

import numba

__all__ = ["LAYER", "GRAIN", "Loops", "grain"]


def _tbb_installed() -> bool:
    """Whether a TBB that numba accepts (2021.6 or later) is installed as a Python package."""
    try:
        version = importlib.metadata.version("tbb")
    except importlib.metadata.PackageNotFoundError:
        return False
    try:
        year, update = (int(part) for part in (version.split(".") + ["0"])[:2])
    except ValueError:
        return False
    return (year, update) >= (2021, 6)


_USER_CHOICE = bool(os.environ.get("NUMBA_THREADING_LAYER") or os.environ.get("NUMBA_THREADING_LAYER_PRIORITY"))
_USER_LAYER = os.environ.get("NUMBA_THREADING_LAYER", "").lower()
# The layer tinynet expects numba to load (checked after the first parallel launch).
LAYER = _USER_LAYER if _USER_LAYER in ("tbb", "omp", "workqueue") else "tbb" if _tbb_installed() else "workqueue"
if not _USER_CHOICE:
    # numba reads these when its first parallel kernel runs; set at import, before any can.
    # "default" walks the priority list and takes the first layer that loads, so a broken TBB
    # falls back to the workqueue instead of failing (numba wants all three layers listed).
    numba.config.THREADING_LAYER = "default"
    numba.config.THREADING_LAYER_PRIORITY = ["tbb", "workqueue", "omp"]  # omp: never reached (workqueue always loads)

# Elements of work below which a kernel runs on the calling thread, per layer. `python
# benchmarks/threads.py --kernels` on the 2-core development machine, quiet (2026-12-04):
# on tbb, LeNet's max-pool (0.9M elements) ran 1.89x faster on two threads, pytorch_example's
# (82K) 1.55x, and lenet_resnet's BatchNorm (16K) 0.96x: the break-even lies near PyTorch's grain.
# On the workqueue all kernels up to 3.7M elements ran slower on two threads, and cnn5's conv2
# (14M) 1.19x faster.
GRAINS = {"tbb": 1 << 15, "omp": 1 << 15, "workqueue": 1 << 22}
GRAIN = GRAINS[LAYER]

_one_at_a_time = threading.Lock()  # the workqueue runs one parallel launch at a time
_layer_checked = False


def _check_layer() -> None:
    """After the first parallel launch, numba knows which layer it loaded: if it is not the one
    expected (TBB failed to load, or the user chose another), use that layer's grain."""
    global GRAIN, LAYER, _layer_checked
    _layer_checked = True
    try:
        loaded = numba.threading_layer()
    except ValueError:  # not initialised (cannot happen after a parallel launch)
        return
    if loaded != LAYER:
        if GRAIN == GRAINS[LAYER]:  # not changed by the user or by grain()
            GRAIN = GRAINS.get(loaded, GRAINS["workqueue"])
        LAYER = loaded


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
        if LAYER == "tbb" and _layer_checked:  # TBB takes launches from several Python threads at once
            result = self.parallel(*args)
        else:
            with _one_at_a_time:
                result = self.parallel(*args)
        if not _layer_checked:
            _check_layer()
        return result


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
