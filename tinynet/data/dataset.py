"""Datasets, shaped like ``torch.utils.data``: ``Dataset``, ``TensorDataset``, ``Subset`` and
``random_split``.

A map-style dataset is anything with ``__len__`` and ``__getitem__(i)``. A dataset that also has
a ``tensors`` attribute (a tuple of tensors sharing their first dimension, all on one device)
lets :class:`~tinynet.data.DataLoader` cut a batch with one indexing operation on the device
instead of fetching and stacking samples one by one.
"""
from __future__ import annotations

import math
import numbers

from .. import backend
from ..random import Generator, generator_for
from ..tensor import Tensor

__all__ = ["Dataset", "TensorDataset", "Subset", "random_split"]


class Dataset:
    """Base class of map-style datasets: subclasses define ``__getitem__(index)`` (one sample)
    and ``__len__`` (how many), as ``torch.utils.data.Dataset``."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__}: a Dataset subclass must define __getitem__")


class TensorDataset(Dataset):
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


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order: ``subset[i]`` is
    ``dataset[indices[i]]``.

    A subset of a tensor-backed dataset is tensor-backed too: on first use, ``tensors`` gathers
    the chosen rows once (one copy of them on the device) so that batches are still cut there.
    """

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        self._tensors = None

    @property
    def tensors(self) -> tuple:
        """The chosen rows of ``dataset.tensors`` (AttributeError when the dataset has none)."""
        if self._tensors is None:
            source = self.dataset.tensors  # raises AttributeError for per-sample datasets
            index = backend.to_device(backend.np.asarray(self.indices, dtype=backend.np.int64), source[0].device)
            self._tensors = tuple(_take(t, index) for t in source)
        return self._tensors

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):
        if isinstance(index, (list, tuple)):
            return [self.dataset[self.indices[i]] for i in index]
        return self.dataset[self.indices[index]]


def random_split(dataset, lengths, generator: Generator | None = None) -> list:
    """Split ``dataset`` at random into non-overlapping :class:`Subset` s of the given lengths,
    as ``torch.utils.data.random_split``.

    Args:
        dataset: any map-style dataset.
        lengths: the sizes of the parts (summing to ``len(dataset)``), or fractions summing to 1:
            each part gets ``floor(fraction * len)`` samples and the remainder is dealt one by
            one to the parts in turn.
        generator: draws the permutation (default: the CPU's default generator, so that
            ``tinynet.manual_seed`` fixes the split).
    """
    n = len(dataset)
    lengths = list(lengths)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        for i, frac in enumerate(lengths):
            if frac < 0 or frac > 1:
                raise ValueError(f"random_split: fraction at index {i} is not between 0 and 1, got {frac}")
        sizes = [int(math.floor(n * frac)) for frac in lengths]
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
        lengths = sizes
    if any(v < 0 for v in lengths) or sum(lengths) != n:
        raise ValueError(f"random_split: sum of input lengths {lengths} does not equal the length of the input "
                         f"dataset ({n})")
    generator = generator if generator is not None else generator_for("cpu")
    order = backend.to_host(generator.permutation(n)).tolist()
    parts, start = [], 0
    for length in lengths:
        parts.append(Subset(dataset, order[start:start + length]))
        start += length
    return parts


def _take(tensor: Tensor, index) -> Tensor:
    """``tensor[index]`` for data tensors: they carry no graph, so the array is indexed directly.
    The result is fresh memory, as PyTorch's batches are: changing a batch in place must not
    change the dataset (an integer array index gathers a copy; a slice or int gives a view)."""
    batch = tensor.data[index]
    return Tensor(batch if _is_index_array(index) else batch.copy())


def _is_index_array(index) -> bool:
    return not isinstance(index, (slice, numbers.Integral))
