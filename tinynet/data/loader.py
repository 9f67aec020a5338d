"""Datasets and batching: ``TensorDataset`` and ``DataLoader``, shaped like ``torch.utils.data``.

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
from ..random import Generator, generator_for
from ..tensor import Tensor

__all__ = ["TensorDataset", "DataLoader"]


class TensorDataset:
    """A dataset of tensors sharing their first dimension: sample ``i`` is
    ``tuple(t[i] for t in tensors)``."""

    def __init__(self, *tensors: Tensor):
        if not tensors:
            raise ValueError("TensorDataset: expected at least one tensor")
        for t in tensors:
            if not isinstance(t, Tensor):
                raise TypeError(f"TensorDataset: expected Tensors, got {type(t).__name__}")
        if len({t.shape[0] if t.ndim else None for t in tensors}) != 1 or tensors[0].ndim == 0:
            raise ValueError("TensorDataset: size mismatch between tensors, shapes "
                             + ", ".join(str(tuple(t.shape)) for t in tensors))
        devices = {t.device for t in tensors}
        if len(devices) > 1:
            raise RuntimeError(f"TensorDataset: expected all tensors on the same device, got {sorted(map(str, devices))}")
        self.tensors = tensors

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        return tuple(_take(t, index) for t in self.tensors)


class DataLoader:
    """Iterate over a dataset in batches of ``batch_size``; each epoch (each ``iter``) visits
    every sample exactly once (but for the last, partial batch when ``drop_last``).

    Args:
        dataset: a :class:`TensorDataset`, :class:`~tinynet.data.MNIST`, any object with a
            ``tensors`` tuple, or a map-style dataset (``__len__``, ``__getitem__``).
        batch_size: samples per batch.
        shuffle: a new random order every epoch.
        drop_last: drop the last batch when it is smaller than ``batch_size``.
        seed: seed of this loader's own generator, so that its orders are reproducible and
            independent of other random draws; without it the device's default generator
            (seeded by ``tinynet.manual_seed``) is used.
        generator: a :class:`tinynet.Generator` to draw the orders from (instead of ``seed``).
        batch_transform: a function applied to the first tensor (the inputs) of every batch,
            on the batch's device, e.g. random augmentation of a whole batch at once
            (tinynet's own keyword: PyTorch applies transforms per sample in the dataset).

    Yields:
        a tuple of batched tensors, e.g. ``(images, labels)``.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, *, drop_last: bool = False,
                 seed: int | None = None, generator: Generator | None = None, batch_transform=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size <= 0:
            raise ValueError(f"DataLoader: batch_size should be a positive integer, got {batch_size!r}")
        if seed is not None and generator is not None:
            raise ValueError("DataLoader: pass seed or generator, not both")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.batch_transform = batch_transform
        self._tensors = getattr(dataset, "tensors", None)
        # Tensor-backed datasets are shuffled on their device; others need indices on the host.
        self.device = self._tensors[0].device if self._tensors else backend.CPU
        self.seed = seed
        if seed is not None:
            generator = Generator(self.device).manual_seed(seed)
        self.generator = generator_for(self.device, generator) if generator is not None else None

    def set_epoch(self, epoch: int) -> None:
        """With a ``seed``, make the order of ``epoch`` depend only on (seed, epoch), so that a
        run resumed from a checkpoint sees the same batches as an uninterrupted one."""
        if self.seed is not None:
            self.generator.manual_seed((self.seed * 1_000_003 + int(epoch)) % 2 ** 63)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self):
        """This epoch's sample order: a permutation drawn on the device, or None for 0..n-1."""
        if not self.shuffle:
            return None
        generator = self.generator or generator_for(self.device)
        return generator.permutation(len(self.dataset))

    def __iter__(self):
        order = self._order()
        n, size = len(self.dataset), self.batch_size
        for start in range(0, len(self) * size, size):
            stop = min(start + size, n)
            index = slice(start, stop) if order is None else order[start:stop]
            if self._tensors is not None:
                batch = tuple(_take(t, index) for t in self._tensors)
            else:
                batch = _collate([self.dataset[int(i)] for i in _host_indices(index)])
            if self.batch_transform is not None:
                batch = (self.batch_transform(batch[0]),) + tuple(batch[1:])
            yield batch


def _take(tensor: Tensor, index) -> Tensor:
    """``tensor[index]`` for data tensors: they carry no graph, so the array is indexed directly.
    The result is fresh memory, as PyTorch's batches are: changing a batch in place must not
    change the dataset (an integer array index gathers a copy; a slice or int gives a view)."""
    batch = tensor.data[index]
    return Tensor(batch if _is_index_array(index) else batch.copy())


def _is_index_array(index) -> bool:
    return not isinstance(index, (slice, numbers.Integral))


def _host_indices(index):
    if isinstance(index, slice):
        return range(index.start, index.stop)
    return backend.to_host(index).tolist()  # map-style datasets index on the host


def _collate(samples):
    """Stack a list of samples into a batch, as PyTorch's ``default_collate``: tuples are
    stacked field by field; tensors and arrays along a new first axis; Python ints become int64
    and floats float64 tensors."""
    first = samples[0]
    if isinstance(first, (tuple, list)):
        return tuple(_collate([s[k] for s in samples]) for k in range(len(first)))
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
