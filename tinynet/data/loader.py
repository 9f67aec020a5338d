"""The DataLoader, shaped like ``torch.utils.data.DataLoader``.

PyTorch's DataLoader fetches samples one by one and stacks them (``collate``), in worker
processes, then copies each batch to the GPU. When the whole dataset already sits in tensors on
the training device (a :class:`TensorDataset`, :class:`tinynet.data.MNIST`), a batch is simply
``tensor[indices]``: one gather on the device, no per-sample Python, no host->device copy. Any
dataset with a ``tensors`` attribute (a tuple of tensors sharing their first dimension) gets
this fast path; other map-style datasets (``__len__`` and ``__getitem__``) are stacked sample
by sample, as in PyTorch.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend
from ..random import Generator
from ..tensor import Tensor
from .dataset import _take
from .sampler import BatchSampler, RandomSampler, SequentialSampler, data_device

__all__ = ["DataLoader", "default_collate"]


class DataLoader:
    """Iterate over a dataset in batches, as ``torch.utils.data.DataLoader``: each epoch (each
    ``iter``) visits the sampler's indices once, ``batch_size`` at a time.

    Args:
        dataset: a :class:`TensorDataset`, :class:`~tinynet.data.MNIST`, any object with a
            ``tensors`` tuple (batches cut on its device), or a map-style dataset
            (``__len__``, ``__getitem__``; samples fetched and collated one by one).
        batch_size: samples per batch; None yields single samples (no batching).
        shuffle: a new random order every epoch (a :class:`RandomSampler`).
        sampler: the order of the indices: any iterable of indices with ``__len__`` (e.g. a
            distributed sampler's share). Excludes ``shuffle``.
        batch_sampler: an iterable of lists of indices, one list per batch. Excludes
            ``batch_size``, ``shuffle``, ``sampler`` and ``drop_last``.
        collate_fn: turns a list of samples into a batch (default :func:`default_collate`).
            Given, it is always used, so a tensor-backed dataset is then fetched per sample.
        drop_last: drop the last batch when it is smaller than ``batch_size``.
        generator: a :class:`tinynet.Generator` that draws the shuffled orders (on its own
            device; the order is then moved to the data's).
        seed: tinynet's own keyword: seed of the loader's own generator on the data's device,
            so that its orders are reproducible and independent of other draws (see
            :meth:`set_epoch`). Without seed or generator, the data device's default generator
            (``tinynet.manual_seed``) draws them.
        batch_transform: tinynet's own keyword: a function applied to the first tensor (the
            inputs) of every batch, on the batch's device (e.g. random augmentation of a whole
            batch at once; per-sample transforms belong to the dataset, as in PyTorch).
        num_workers, prefetch_factor, persistent_workers, worker_init_fn, timeout,
            multiprocessing_context, in_order: accepted and checked as PyTorch does, and
            otherwise without effect: batches are made in this process (for a tensor-backed
            dataset one batch is a single gather, with nothing to overlap), so no worker
            process exists and ``worker_init_fn`` is never called.
        pin_memory, pin_memory_device: accepted, without effect: batches are already on the
            data's device, and a host batch moves with ``.to(device)`` as usual.

    Yields:
        a tuple of batched tensors, e.g. ``(images, labels)`` (with the default collate).
    """

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool | None = None, sampler=None,
                 batch_sampler=None, num_workers: int = 0, collate_fn=None, pin_memory: bool = False,
                 drop_last: bool = False, timeout: float = 0, worker_init_fn=None, multiprocessing_context=None,
                 generator: Generator | None = None, *, prefetch_factor: int | None = None,
                 persistent_workers: bool = False, pin_memory_device: str = "", in_order: bool = True,
                 seed: int | None = None, batch_transform=None):
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
                                       or batch_size <= 0):
            raise ValueError(f"DataLoader: batch_size should be a positive integer, got {batch_size!r}")
        # PyTorch's checks, with its messages, so that a script that runs there runs here.
        if not isinstance(num_workers, numbers.Integral) or num_workers < 0:
            raise ValueError("DataLoader: num_workers option should be non-negative; use num_workers=0 to disable "
                             "multiprocessing.")
        if timeout < 0:
            raise ValueError("DataLoader: timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("DataLoader: prefetch_factor option could only be specified in multiprocessing. let "
                             "num_workers > 0 to enable multiprocessing, otherwise set prefetch_factor to None.")
        if persistent_workers and num_workers == 0:
            raise ValueError("DataLoader: persistent_workers option needs num_workers > 0")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None and (batch_size != 1 or shuffle or sampler is not None or drop_last):
            raise ValueError("DataLoader: batch_sampler option is mutually exclusive with batch_size, shuffle, "
                             "sampler, and drop_last")
        if batch_size is None and drop_last:
            raise ValueError("DataLoader: batch_size=None option disables auto-batching and is mutually exclusive "
                             "with drop_last")
        if seed is not None and generator is not None:
            raise ValueError("DataLoader: pass seed or generator, not both")
        self.dataset = dataset
        self.batch_size = None if batch_sampler is not None or batch_size is None else int(batch_size)
        self.drop_last = bool(drop_last)
        self.num_workers, self.pin_memory, self.timeout = num_workers, pin_memory, timeout
        self.worker_init_fn, self.prefetch_factor = worker_init_fn, prefetch_factor
        self.persistent_workers, self.pin_memory_device = persistent_workers, pin_memory_device
        self.multiprocessing_context, self.in_order = multiprocessing_context, in_order
        self.collate_fn = collate_fn
        self.batch_transform = batch_transform
        # Batches are cut on the data's device when the dataset holds tensors and no custom
        # collate_fn asks to see the samples.
        self._tensors = getattr(dataset, "tensors", None) if collate_fn is None else None
        self.device = data_device(dataset)
        self.seed = seed
        if seed is not None:
            generator = Generator(self.device).manual_seed(seed)
        self.generator = generator
        if sampler is None:
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        self.sampler = sampler
        if batch_sampler is None and self.batch_size is not None:
            batch_sampler = BatchSampler(sampler, self.batch_size, self.drop_last)
        self.batch_sampler = batch_sampler

    def set_epoch(self, epoch: int) -> None:
        """With a ``seed``, make the order of ``epoch`` depend only on (seed, epoch), so that a
        run resumed from a checkpoint sees the same batches as an uninterrupted one. A sampler
        with its own ``set_epoch`` (a distributed sampler) is told the epoch too."""
        if self.seed is not None:
            self.generator.manual_seed((self.seed * 1_000_003 + int(epoch)) % 2 ** 63)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        if self.batch_size is None:  # the user's batch_sampler, or no batching
            return len(self.batch_sampler if self.batch_sampler is not None else self.sampler)
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        for index in self._index_batches():
            if self.batch_sampler is None:  # batch_size=None: no batching, one sample at a time
                sample = self.dataset[index]
                yield self.collate_fn(sample) if self.collate_fn is not None else sample
                continue
            if self._tensors is not None:
                batch = tuple(_take(t, index) for t in self._tensors)
            else:
                batch = (self.collate_fn or default_collate)([self.dataset[int(i)] for i in _host_indices(index)])
            if self.batch_transform is not None:
                batch = (self.batch_transform(batch[0]),) + tuple(batch[1:])
            yield batch

    def _index_batches(self):
        """This epoch's batches of indices: slices (sequential order), pieces of one index
        array (every other sampler), or the lists a ``batch_sampler`` gives."""
        if self.batch_sampler is None:  # batch_size=None: single samples
            yield from self.sampler
            return
        if not isinstance(self.batch_sampler, BatchSampler) or self.batch_sampler.sampler is not self.sampler:
            for indices in self.batch_sampler:  # the user's batch_sampler: one list per batch
                yield self._on_data_device(np.asarray(indices, dtype=np.int64))
            return
        n, size = len(self.sampler), self.batch_size
        if isinstance(self.sampler, SequentialSampler) and self.sampler.data_source is self.dataset:
            order = None
        elif isinstance(self.sampler, RandomSampler):
            order = self._on_data_device(self.sampler.draw())
        else:  # any iterable of indices: read once per epoch, moved to the data in one copy
            order = self._on_data_device(np.fromiter((int(i) for i in self.sampler), dtype=np.int64, count=n))
        for start in range(0, len(self) * size, size):
            stop = min(start + size, n)
            yield slice(start, stop) if order is None else order[start:stop]

    def _on_data_device(self, indices):
        """An index array where the batches are cut: the data's device for a tensor-backed
        dataset, else the host."""
        return backend.to_device(indices, self.device) if self._tensors is not None else backend.to_host(indices)


def _host_indices(index):
    if isinstance(index, slice):
        return range(index.start, index.stop)
    return backend.to_host(index).tolist()  # map-style datasets index on the host


def default_collate(samples):
    """Stack a list of samples into a batch, as PyTorch's ``default_collate``: tuples are
    stacked field by field; tensors and arrays along a new first axis; Python ints become int64
    and floats float64 tensors."""
    first = samples[0]
    if isinstance(first, (tuple, list)):
        return tuple(default_collate([s[k] for s in samples]) for k in range(len(first)))
    if isinstance(first, Tensor):
        xp = first.xp
        return Tensor(xp.stack([s.data for s in samples]))
    if isinstance(first, np.ndarray):
        return Tensor(np.stack(samples))
    if isinstance(first, (bool, np.bool_)):
        return Tensor(np.array(samples, dtype=np.bool_))
    if isinstance(first, numbers.Integral):
        return Tensor(np.array(samples, dtype=np.int64))
    if isinstance(first, numbers.Real):
        return Tensor(np.array(samples, dtype=np.float64))
    raise TypeError(f"DataLoader: cannot batch samples of type {type(first).__name__}; return tensors, "
                    "arrays or numbers (or tuples of them) from the dataset's __getitem__")
