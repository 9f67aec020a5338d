"""The ``mpi`` backend: collectives between processes with mpi4py, on NumPy (CPU) arrays.

Every collective is started non-blocking (``Iallreduce``, ``Ibcast``, ``Iallgather``,
``Ibarrier``) and waited on by :meth:`MPIBackend.wait`, which polls with a deadline: a rank whose
partners have died or hang raises an error naming itself and the collective after ``timeout``
seconds, instead of waiting for ever. MPICH's ``Wait`` would spin on the CPU just the same; the
poll sleeps a little once the first thousand tests have failed, so that two ranks sharing two
cores leave each other some time.
"""
from __future__ import annotations

import time

import numpy as np

__all__ = ["MPIBackend", "import_mpi"]

_INSTALL_HINT = "install the MPI extra: pip install -e \".[distributed]\" (the mpich and mpi4py wheels)"


def import_mpi(what: str):
    """``mpi4py.MPI``, or a RuntimeError naming ``what`` needed it and what to install."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise RuntimeError(f"{what}: mpi4py is not installed; {_INSTALL_HINT}") from exc
    return MPI


class MPIBackend:
    """Collectives over ``MPI.COMM_WORLD`` on NumPy arrays (the tensors' own memory, no copies)."""

    name = "mpi"

    def __init__(self, timeout: float):
        self.MPI = import_mpi("init_process_group(backend='mpi')")
        self.comm = self.MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.world_size = self.comm.Get_size()
        self.timeout = timeout
        self._ops = {"sum": self.MPI.SUM, "max": self.MPI.MAX, "min": self.MPI.MIN, "product": self.MPI.PROD}

    def check_array(self, what: str, array) -> None:
        if not isinstance(array, np.ndarray):
            raise RuntimeError(f"{what}: the 'mpi' backend works on CPU tensors, got a tensor on a CUDA device; "
                               "use init_process_group(backend='nccl') for GPU tensors")
        if not array.flags.c_contiguous:
            raise RuntimeError(f"{what}: expected a contiguous tensor")

    # Each start_* returns a request for wait(); the array must not be touched until then.
    def start_all_reduce(self, array, op: str):
        return self.comm.Iallreduce(self.MPI.IN_PLACE, array, op=self._ops[op])

    def start_broadcast(self, array, src: int):
        return self.comm.Ibcast(array, root=src)

    def start_all_gather(self, array, out):
        return self.comm.Iallgather(array, out)

    def start_barrier(self):
        return self.comm.Ibarrier()

    def wait(self, requests, what: str) -> None:
        """Wait for ``requests`` to complete, or raise after ``timeout`` seconds."""
        requests = [r for r in requests if r is not None]
        if not requests:
            return
        deadline = time.monotonic() + self.timeout
        tests = 0
        while not self.MPI.Request.Testall(requests):
            tests += 1
            if tests > 1000:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"tinynet.distributed: rank {self.rank} of {self.world_size}: {what} waited more than "
                        f"{self.timeout:g} s for the other ranks (one of them has stopped, hangs or runs "
                        "different collectives); aborting")
                time.sleep(0.0002)

    def abort(self, code: int = 1) -> None:
        self.comm.Abort(code)
