"""Samplers: the order in which a DataLoader visits a dataset, as ``torch.utils.data``'s.

A sampler is any iterable of dataset indices with a ``__len__``; a DataLoader takes one as
``sampler=``. The two it makes itself, :class:`SequentialSampler` (``shuffle=False``) and
:class:`RandomSampler` (``shuffle=True``), are known to it: it cuts sequential batches as
slices, and draws a random order as one permutation array on the data's device, without
turning every index into a Python int.
"""
from __future__ import annotations

import numbers

from .. import backend
from ..random import Generator, generator_for

__all__ = ["Sampler", "SequentialSampler", "RandomSampler", "BatchSampler"]


class Sampler:
    """Base class of samplers: subclasses define ``__iter__`` (indices) and ``__len__``."""

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__}: a Sampler subclass must define __iter__")


class SequentialSampler(Sampler):
    """The indices 0, 1, ..., len(data_source) - 1, in order."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """Indices in a random order: a new permutation every pass (or, with ``replacement``,
    ``num_samples`` independent uniform draws).

    Args:
        data_source: the dataset to sample from.
        replacement: draw with replacement. Default: False.
        num_samples: how many indices per pass (default ``len(data_source)``); without
            replacement, more than that many repeat whole permutations.
        generator: a :class:`tinynet.Generator` to draw from; by default the default generator
            of the data's device (``tinynet.manual_seed`` fixes it).
    """

    def __init__(self, data_source, replacement: bool = False, num_samples: int | None = None,
                 generator: Generator | None = None):
        if not isinstance(replacement, bool):
            raise TypeError(f"RandomSampler: replacement should be a boolean value, but got replacement={replacement}")
        if num_samples is not None and (isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral)
                                        or num_samples <= 0):
            raise ValueError(f"RandomSampler: num_samples should be a positive integer value, but got "
                             f"num_samples={num_samples}")
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        return iter(backend.to_host(self.draw()).tolist())

    def draw(self):
        """One pass's indices as an int64 array, drawn on the generator's device (the data's
        device by default): what a DataLoader uses to cut batches there."""
        n = len(self.data_source)
        generator = self.generator or generator_for(data_device(self.data_source))
        if self.replacement:
            return generator.integers(0, n, (self.num_samples,))
        xp = backend.array_module(generator.device)
        whole, rest = divmod(self.num_samples, n)
        parts = [generator.permutation(n) for _ in range(whole)] + ([generator.permutation(n)[:rest]] if rest else [])
        return parts[0] if len(parts) == 1 else xp.concatenate(parts)


class BatchSampler(Sampler):
    """Group the indices of ``sampler`` into lists of ``batch_size`` (the last one shorter
    unless ``drop_last``), as ``torch.utils.data.BatchSampler``."""

    def __init__(self, sampler, batch_size: int, drop_last: bool):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size <= 0:
            raise ValueError(f"BatchSampler: batch_size should be a positive integer value, but got "
                             f"batch_size={batch_size}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"BatchSampler: drop_last should be a boolean value, but got drop_last={drop_last}")
        self.sampler, self.batch_size, self.drop_last = sampler, int(batch_size), drop_last

    def __iter__(self):
        batch = []
        for index in self.sampler:
            batch.append(int(index))
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def data_device(dataset):
    """The device a dataset's tensors live on (``cpu`` for per-sample datasets)."""
    tensors = getattr(dataset, "tensors", None)
    return tensors[0].device if tensors else backend.CPU
