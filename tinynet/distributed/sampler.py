"""``DistributedSampler``: each rank's share of a data set's indices, as PyTorch's.

Every rank draws the same permutation of ``0..n-1`` (seeded with ``seed + epoch``, so
``set_epoch`` reshuffles identically everywhere), pads it by repeating its start until it
divides evenly (or, with ``drop_last``, cuts the tail), and takes every ``num_replicas``-th
index from position ``rank``. The ranks' shares are disjoint and together cover the data set
once per epoch (the padding repeats a few samples so that every rank runs the same number of
steps: a rank with fewer batches would leave the others waiting in a collective).
"""
from __future__ import annotations

import math

import numpy as np

from ..data.sampler import Sampler
from ..random import Generator
from .process_group import get_rank, get_world_size, is_initialized

__all__ = ["DistributedSampler"]


class DistributedSampler(Sampler):
    """Indices of this rank's share of ``dataset``; pass it as ``DataLoader(sampler=...)`` and
    call ``set_epoch(epoch)`` before each epoch (``tinynet.train.fit`` does).

    Args:
        dataset: anything with ``len()``.
        num_replicas, rank: default to the process group's world size and rank.
        shuffle: a new permutation every epoch (the same on every rank).
        seed: the permutation's seed; must be the same on every rank.
        drop_last: drop the tail that does not divide evenly instead of padding.
    """

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False):
        if num_replicas is None or rank is None:
            if not is_initialized():
                raise RuntimeError("DistributedSampler: the process group is not initialised; call "
                                   "init_process_group() first or pass num_replicas and rank")
        num_replicas = get_world_size() if num_replicas is None else int(num_replicas)
        rank = get_rank() if rank is None else int(rank)
        if num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be at least 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: invalid rank {rank}, rank should be in the interval "
                             f"[0, {num_replicas - 1}]")
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.epoch = 0
        n = len(dataset)
        self.num_samples = n // num_replicas if drop_last else math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Make the next epoch's permutation depend on ``epoch`` (same on every rank)."""
        self.epoch = int(epoch)

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch, as an int64 array."""
        n = len(self.dataset)
        if self.shuffle:
            order = Generator("cpu").manual_seed(self.seed + self.epoch).permutation(n)
        else:
            order = np.arange(n)
        if self.total_size > n:  # pad by repeating the start (several times if n is tiny)
            order = np.concatenate([order, np.resize(order, self.total_size - n)])
        order = order[:self.total_size]
        return order[self.rank:self.total_size:self.num_replicas].astype(np.int64)

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples
