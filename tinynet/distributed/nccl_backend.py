"""The ``nccl`` backend: collectives between GPUs with NCCL through ``cupy.cuda.nccl``.

One process per GPU, started by ``mpiexec`` as for the ``mpi`` backend. Rank 0 makes NCCL's
unique id and MPI broadcasts it; every rank then joins the NCCL communicator with it and uses
the GPU ``local rank % GPUs on this node``. Collectives are queued on the current CUDA stream,
after the kernels that computed their input and before those that read their output, so the
host never waits for them: :meth:`NCCLBackend.wait` has nothing to do, and a step stays free of
host synchronisation (capturable in a CUDA graph, which NCCL allows for its collectives).

Untested on real hardware so far: the machines this was written on had no GPU (see
docs/distributed.md). Without a GPU, :func:`init_process_group` fails with an error that says so.
"""
from __future__ import annotations

import os

from .. import backend
from .mpi_backend import import_mpi

__all__ = ["NCCLBackend"]


class NCCLBackend:
    """Collectives over an NCCL communicator of all ranks on CuPy arrays."""

    name = "nccl"

    def __init__(self, timeout: float):
        what = "init_process_group(backend='nccl')"
        try:
            cp = backend.cupy_or_error()
        except RuntimeError as exc:  # CuPy missing: say who needed it
            raise RuntimeError(f"{what}: {exc}") from exc
        if not backend.cuda_available():
            raise RuntimeError(f"{what}: no GPU is visible (CuPy sees 0 CUDA devices); use backend='mpi' for "
                               "CPU training")
        from cupy.cuda import nccl
        if not getattr(nccl, "available", False):
            raise RuntimeError(f"{what}: CuPy cannot load the NCCL library; install it, e.g. "
                               "pip install nvidia-nccl-cu12")
        MPI = import_mpi(what)
        world = MPI.COMM_WORLD
        self.rank, self.world_size, self.timeout = world.Get_rank(), world.Get_size(), timeout
        self._mpi_world = world
        # mpiexec (Hydra) numbers the ranks of one node in MPI_LOCALRANKID; one GPU each.
        local_rank = int(os.environ.get("MPI_LOCALRANKID", self.rank))
        self.device = backend.device(f"cuda:{local_rank % cp.cuda.runtime.getDeviceCount()}")
        cp.cuda.Device(self.device.index).use()
        uid = world.bcast(nccl.get_unique_id() if self.rank == 0 else None, root=0)
        self.comm = nccl.NcclCommunicator(self.world_size, uid, self.rank)
        self.nccl, self.cp = nccl, cp
        self._ops = {"sum": nccl.NCCL_SUM, "max": nccl.NCCL_MAX, "min": nccl.NCCL_MIN, "product": nccl.NCCL_PROD}
        self._dtypes = {"float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64,
                        "int32": nccl.NCCL_INT32, "int64": nccl.NCCL_INT64, "uint8": nccl.NCCL_UINT8,
                        "int8": nccl.NCCL_INT8}

    def check_array(self, what: str, array) -> None:
        if not isinstance(array, self.cp.ndarray):
            raise RuntimeError(f"{what}: the 'nccl' backend works on CUDA tensors, got a CPU tensor; move it "
                               "with .cuda() or use backend='mpi'")
        if array.dtype.name not in self._dtypes:
            raise RuntimeError(f"{what}: NCCL has no type for {array.dtype.name}")
        if not array.flags.c_contiguous:
            raise RuntimeError(f"{what}: expected a contiguous tensor")

    def _stream(self) -> int:
        return self.cp.cuda.get_current_stream().ptr

    def start_all_reduce(self, array, op: str):
        self.comm.allReduce(array.data.ptr, array.data.ptr, array.size, self._dtypes[array.dtype.name],
                            self._ops[op], self._stream())

    def start_broadcast(self, array, src: int):
        self.comm.bcast(array.data.ptr, array.size, self._dtypes[array.dtype.name], src, self._stream())

    def start_all_gather(self, array, out):
        self.comm.allGather(array.data.ptr, out.data.ptr, array.size, self._dtypes[array.dtype.name],
                            self._stream())

    def start_barrier(self):
        # All queued GPU work first, then the processes (a barrier is a host-side rendezvous).
        self.cp.cuda.get_current_stream().synchronize()
        return self._mpi_world.Ibarrier()

    def wait(self, requests, what: str) -> None:
        """Stream order does the waiting for NCCL; only a barrier's MPI request is waited on."""
        for request in requests:
            if request is not None:
                request.Wait()

    def abort(self, code: int = 1) -> None:
        self._mpi_world.Abort(code)
