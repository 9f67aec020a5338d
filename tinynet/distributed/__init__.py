"""Data-parallel training over several processes: ``tinynet.distributed``, shaped like
``torch.distributed``.

    python -m tinynet.distributed.run -n 2 examples/lenet.py --distributed

starts two processes with ``mpiexec``; each calls :func:`init_process_group`, wraps its model in
:class:`DistributedDataParallel` and reads its share of the data through a
:class:`DistributedSampler`. See docs/distributed.md.
"""
from .ddp import DistributedDataParallel
from .process_group import (DEFAULT_TIMEOUT, ReduceOp, all_gather, all_reduce, barrier, broadcast,
                            destroy_process_group, get_backend, get_rank, get_world_size, init_process_group,
                            is_available, is_initialized)
from .sampler import DistributedSampler
from .sync_batchnorm import SyncBatchNorm

__all__ = ["init_process_group", "destroy_process_group", "is_initialized", "is_available", "get_rank",
           "get_world_size", "get_backend", "all_reduce", "broadcast", "all_gather", "barrier", "ReduceOp",
           "DEFAULT_TIMEOUT", "DistributedDataParallel", "DistributedSampler", "SyncBatchNorm"]
