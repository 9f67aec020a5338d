"""The process group: which rank this process is, how many there are, and the collectives on
tensors (``all_reduce``, ``broadcast``, ``all_gather``, ``barrier``), as ``torch.distributed``.

One process per rank, started by ``mpiexec`` (``python -m tinynet.distributed.run -n 2
script.py``); each calls :func:`init_process_group` once. The ``mpi`` backend works on CPU
tensors (mpi4py), the ``nccl`` backend on GPU tensors (CuPy's NCCL). A collective must be called
by every rank, in the same order, with tensors of the same shape and dtype. The collectives are
``@recordable``: inside a step compiled by :func:`tinynet.compile_step`, each is recorded as one
call, and every replay runs it again.

Failure: after ``init_process_group``, an exception that nobody catches in any rank prints its
traceback and a line naming the rank, then calls ``MPI_Abort``, which ends every rank of the job
at once (without it, the other ranks would wait for ever in their next collective). A rank that
hangs, or leaves early, makes the others' collectives fail after ``timeout`` seconds.
"""
from __future__ import annotations

import datetime
import os
import sys

from .. import recording
from ..tensor import Tensor

__all__ = ["init_process_group", "destroy_process_group", "is_initialized", "is_available", "get_rank",
           "get_world_size", "get_backend", "all_reduce", "broadcast", "all_gather", "barrier", "ReduceOp",
           "DEFAULT_TIMEOUT"]

# Seconds a collective waits for the other ranks (torch.distributed's default for CPU backends
# is 30 minutes; a CPU MNIST step takes well under one). $TINYNET_DISTRIBUTED_TIMEOUT overrides it.
DEFAULT_TIMEOUT = 600.0


class ReduceOp:
    """How ``all_reduce`` combines the ranks' tensors (``ReduceOp.SUM`` by default)."""

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"


_group = None  # the backend object of this process, once init_process_group has run


def is_available() -> bool:
    """True: the package imports everywhere; the backends need mpi4py (and CuPy with NCCL)."""
    return True


def is_initialized() -> bool:
    """Whether :func:`init_process_group` has run in this process."""
    return _group is not None


def init_process_group(backend: str = "mpi", init_method=None, timeout=None, world_size: int = -1,
                       rank: int = -1) -> None:
    """Join the job's process group: rank and world size come from ``mpiexec``.

    Args:
        backend: ``"mpi"`` (CPU tensors, mpi4py) or ``"nccl"`` (GPU tensors, CuPy's NCCL; the
            NCCL unique id is sent to every rank over MPI).
        init_method: accepted for PyTorch's signature; must be None or ``"env://"`` (mpiexec
            tells each process its rank).
        timeout: how long a collective waits for the other ranks before raising (a
            ``datetime.timedelta`` or seconds; default :data:`DEFAULT_TIMEOUT`, or
            ``$TINYNET_DISTRIBUTED_TIMEOUT``).
        world_size, rank: if given, checked against what mpiexec says.
    """
    global _group
    if _group is not None:
        raise RuntimeError("init_process_group: the process group is already initialised "
                           "(call destroy_process_group() first)")
    if init_method not in (None, "env://"):
        raise ValueError(f"init_process_group: init_method must be None or 'env://' (ranks come from mpiexec), "
                         f"got {init_method!r}")
    seconds = _timeout_seconds(timeout)
    if backend == "mpi":
        from .mpi_backend import MPIBackend
        group = MPIBackend(seconds)
    elif backend == "nccl":
        from .nccl_backend import NCCLBackend
        group = NCCLBackend(seconds)
    else:
        raise ValueError(f"init_process_group: backend must be 'mpi' or 'nccl', got {backend!r}")
    for name, given, actual in (("world_size", world_size, group.world_size), ("rank", rank, group.rank)):
        if given != -1 and given != actual:
            raise ValueError(f"init_process_group: {name}={given} was given but mpiexec started this process "
                             f"with {name} {actual}")
    _group = group
    _abort_on_uncaught_exception(group)


def destroy_process_group() -> None:
    """Leave the process group (MPI itself is finalised when the process exits)."""
    global _group
    if _group is not None:
        sys.excepthook = getattr(sys.excepthook, "previous", sys.excepthook)
    _group = None


def get_rank() -> int:
    """This process's rank, 0 .. world_size - 1 (0 when no process group is initialised)."""
    return _group.rank if _group is not None else 0


def get_world_size() -> int:
    """The number of ranks (1 when no process group is initialised)."""
    return _group.world_size if _group is not None else 1


def get_backend() -> str:
    """``"mpi"`` or ``"nccl"``."""
    return require_group("get_backend").name


def require_group(what: str):
    """The backend of the process group, or an error naming ``what`` needed it."""
    if _group is None:
        raise RuntimeError(f"{what}: the default process group has not been initialized; call "
                           "tinynet.distributed.init_process_group() first (and start the script with "
                           "python -m tinynet.distributed.run -n N script.py)")
    return _group


# ------------------------------------------------------------------------------ collectives
def _array(what: str, tensor, group):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{what}: expected a Tensor, got {type(tensor).__name__}")
    group.check_array(what, tensor.data)
    return tensor.data


@recording.recordable
def all_reduce(tensor: Tensor, op: str = ReduceOp.SUM, async_op: bool = False) -> None:
    """Replace ``tensor`` in place, on every rank, by the element-wise combination (``op``) of
    all ranks' tensors. ``ReduceOp.AVG`` is the sum divided by the world size. Recorded whole by
    :func:`tinynet.compile_step`, so a replayed step all-reduces again."""
    group = require_group("all_reduce")
    array = _array("all_reduce", tensor, group)
    if op not in (ReduceOp.SUM, ReduceOp.AVG, ReduceOp.PRODUCT, ReduceOp.MIN, ReduceOp.MAX):
        raise ValueError(f"all_reduce: op must be one of sum, avg, product, min, max, got {op!r}")
    if async_op:
        raise NotImplementedError("all_reduce: async_op=True is not supported (DistributedDataParallel "
                                  "overlaps its all-reduces itself)")
    if op == ReduceOp.AVG and array.dtype.kind != "f":
        raise TypeError(f"all_reduce: ReduceOp.AVG needs a floating-point tensor, got {array.dtype}")
    group.wait([group.start_all_reduce(array, ReduceOp.SUM if op == ReduceOp.AVG else op)], "all_reduce")
    if op == ReduceOp.AVG:
        array *= array.dtype.type(1.0 / group.world_size)


@recording.recordable
def broadcast(tensor: Tensor, src: int = 0, async_op: bool = False) -> None:
    """Copy rank ``src``'s ``tensor`` into ``tensor`` on every other rank, in place."""
    group = require_group("broadcast")
    array = _array("broadcast", tensor, group)
    if not 0 <= src < group.world_size:
        raise ValueError(f"broadcast: src must be a rank in 0..{group.world_size - 1}, got {src}")
    if async_op:
        raise NotImplementedError("broadcast: async_op=True is not supported")
    group.wait([group.start_broadcast(array, src)], "broadcast")


@recording.recordable
def all_gather(tensor_list: list, tensor: Tensor, async_op: bool = False) -> None:
    """Fill ``tensor_list[r]`` (one tensor per rank, shaped as ``tensor``) with rank ``r``'s
    ``tensor``, on every rank."""
    group = require_group("all_gather")
    array = _array("all_gather", tensor, group)
    if len(tensor_list) != group.world_size:
        raise ValueError(f"all_gather: tensor_list must hold world_size={group.world_size} tensors, "
                         f"got {len(tensor_list)}")
    for t in tensor_list:
        out = _array("all_gather", t, group)
        if out.shape != array.shape or out.dtype != array.dtype:
            raise ValueError(f"all_gather: every tensor in tensor_list must have the input's shape {tuple(array.shape)} "
                             f"and dtype {array.dtype}, got {tuple(out.shape)} {out.dtype}")
    if async_op:
        raise NotImplementedError("all_gather: async_op=True is not supported")
    xp = tensor.xp
    gathered = xp.empty((group.world_size,) + array.shape, dtype=array.dtype)
    group.wait([group.start_all_gather(array, gathered)], "all_gather")
    for t, part in zip(tensor_list, gathered):
        t.data[...] = part


@recording.recordable
def barrier() -> None:
    """Wait until every rank has reached its barrier."""
    group = require_group("barrier")
    group.wait([group.start_barrier()], "barrier")


# ------------------------------------------------------------------------------ failure
def _timeout_seconds(timeout) -> float:
    if timeout is None:
        return float(os.environ.get("TINYNET_DISTRIBUTED_TIMEOUT", DEFAULT_TIMEOUT))
    if isinstance(timeout, datetime.timedelta):
        return timeout.total_seconds()
    if isinstance(timeout, (int, float)) and timeout > 0:
        return float(timeout)
    raise ValueError(f"init_process_group: timeout must be a datetime.timedelta or positive seconds, got {timeout!r}")


def _abort_on_uncaught_exception(group) -> None:
    """Make an uncaught exception in this rank end the whole job, naming the rank."""
    previous = sys.excepthook

    def excepthook(exc_type, exc, tb):
        previous(exc_type, exc, tb)  # the usual traceback first
        sys.stderr.write(f"tinynet.distributed: rank {group.rank} of {group.world_size} failed "
                         f"({exc_type.__name__}: {exc}); aborting the job\n")
        sys.stderr.flush()
        group.abort(1)

    excepthook.previous = previous
    sys.excepthook = excepthook
