"""tinynet.utils.data: PyTorch's DataLoader arguments (sampler, batch_sampler, collate_fn, the
worker options that have no effect here), samplers, Subset and random_split; the same batches
as torch.utils.data where the order is deterministic."""
import numpy as np
import pytest

import tinynet
import tinynet.data
from tinynet.utils.data import (BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler, Subset,
                                TensorDataset, default_collate, random_split)

from helpers import requires_torch, to_numpy, torch


def _dataset(device, n=10):
    x = tinynet.tensor(np.arange(n * 2, dtype=np.float32).reshape(n, 2), device=device)
    return TensorDataset(x, tinynet.tensor(np.arange(n), device=device))


class _Squares(Dataset):
    """A per-sample dataset (no ``tensors``): sample i is (array [i, i*i], label i)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.array([i, i * i], np.float32), i


def _labels(loader):
    return [to_numpy(batch[-1]).tolist() for batch in loader]


def test_one_class_under_both_names():
    import tinynet.utils.data as utils_data
    assert tinynet.utils.data is utils_data
    for name in ["DataLoader", "Dataset", "TensorDataset", "Subset", "random_split", "RandomSampler",
                 "SequentialSampler", "BatchSampler", "Sampler", "default_collate"]:
        assert getattr(utils_data, name) is getattr(tinynet.data, name), name


def test_pytorch_arguments_are_accepted(device):
    """The worker and pinning options of a PyTorch script change nothing: same batches."""
    plain = _labels(DataLoader(_dataset(device), batch_size=4))
    calls = []
    loader = DataLoader(_dataset(device), batch_size=4, shuffle=False, num_workers=2, pin_memory=True,
                        timeout=5, worker_init_fn=calls.append, multiprocessing_context="spawn",
                        prefetch_factor=2, persistent_workers=True, pin_memory_device="cuda", in_order=True)
    assert _labels(loader) == plain == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert calls == [] and loader.num_workers == 2 and loader.pin_memory


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_workers=-1), "num_workers option should be non-negative"),
    (dict(timeout=-1), "timeout option should be non-negative"),
    (dict(prefetch_factor=2), "prefetch_factor option could only be specified in multiprocessing"),
    (dict(persistent_workers=True), "persistent_workers option needs num_workers > 0"),
    (dict(sampler=[0, 1], shuffle=True), "sampler option is mutually exclusive with shuffle"),
    (dict(batch_sampler=[[0]], batch_size=2), "batch_sampler option is mutually exclusive"),
    (dict(batch_sampler=[[0]], drop_last=True), "batch_sampler option is mutually exclusive"),
    (dict(batch_size=None, drop_last=True), "batch_size=None option disables auto-batching"),
    (dict(batch_size=0), "batch_size should be a positive integer"),
    (dict(seed=1, generator=tinynet.Generator()), "pass seed or generator, not both"),
])
def test_bad_arguments_raise_as_in_pytorch(kwargs, message):
    with pytest.raises(ValueError, match="DataLoader: " + message):
        DataLoader(_dataset("cpu"), **kwargs)


@pytest.mark.parametrize("make", [lambda d: d, lambda d: _Squares(len(d))], ids=["tensors", "per-sample"])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_sets_the_order(device, make, drop_last):
    order = [7, 2, 9, 0, 4, 4, 1]  # any iterable of indices with a length, repeats allowed
    loader = DataLoader(make(_dataset(device)), batch_size=3, sampler=order, drop_last=drop_last)
    assert len(loader) == (2 if drop_last else 3)
    assert _labels(loader) == ([[7, 2, 9], [0, 4, 4]] + ([] if drop_last else [[1]]))


class _EvenSampler:
    """A sampler that is not a list: the even indices, in reverse, with a length."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(range(self.n - 2 + self.n % 2, -1, -2))

    def __len__(self):
        return (self.n + 1) // 2


def test_sampler_object_and_set_epoch_reaches_it(device):
    sampler = _EvenSampler(10)
    seen = []
    sampler.set_epoch = seen.append
    loader = DataLoader(_dataset(device), batch_size=2, sampler=sampler)
    assert _labels(loader) == [[8, 6], [4, 2], [0]]
    loader.set_epoch(3)
    assert seen == [3]


def test_batch_sampler(device):
    batches = [[3, 1], [0], [9, 8, 7]]
    for dataset in (_dataset(device), _Squares(10)):
        loader = DataLoader(dataset, batch_sampler=batches)
        assert len(loader) == 3 and loader.batch_size is None
        assert _labels(loader) == batches
    inner = BatchSampler(SequentialSampler(range(5)), 2, drop_last=False)
    assert list(inner) == [[0, 1], [2, 3], [4]] and len(inner) == 3
    assert list(BatchSampler(range(5), 2, drop_last=True)) == [[0, 1], [2, 3]]


def test_collate_fn_sees_the_samples(device):
    """A custom collate_fn receives the list of samples, even from a tensor-backed dataset."""
    def collate(samples):
        assert isinstance(samples, list) and len(samples[0]) == 2
        return tuple(default_collate(samples)) + (len(samples),)

    batches = list(DataLoader(_dataset(device), batch_size=4, collate_fn=collate))
    assert [b[2] for b in batches] == [4, 4, 2]
    assert to_numpy(batches[1][1]).tolist() == [4, 5, 6, 7]
    np.testing.assert_array_equal(to_numpy(batches[0][0]), np.arange(8, dtype=np.float32).reshape(4, 2))


def test_batch_size_none_yields_samples():
    samples = list(DataLoader(_Squares(3), batch_size=None))
    assert [s[1] for s in samples] == [0, 1, 2]


def test_shuffle_with_a_cpu_generator_on_any_device(device):
    """A PyTorch-style CPU generator draws the order even when the data is on the GPU."""
    orders = [_labels(DataLoader(_dataset(device, 30), batch_size=30, shuffle=True,
                                 generator=tinynet.Generator().manual_seed(5))) for _ in range(2)]
    assert orders[0] == orders[1] and sorted(orders[0][0]) == list(range(30)) and orders[0][0] != list(range(30))


def test_random_sampler():
    tinynet.manual_seed(3)
    a = list(RandomSampler(range(20)))
    assert sorted(a) == list(range(20))
    gen = tinynet.Generator().manual_seed(1)
    drawn = list(RandomSampler(range(5), replacement=True, num_samples=50, generator=gen))
    assert len(drawn) == 50 and set(drawn) <= set(range(5)) and len(set(drawn)) > 1
    longer = list(RandomSampler(range(4), num_samples=10))
    assert len(longer) == 10 and sorted(longer[:4]) == sorted(longer[4:8]) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="RandomSampler: num_samples should be a positive integer"):
        RandomSampler(range(4), num_samples=0)


def test_subset_keeps_the_fast_path(device):
    ds = _dataset(device)
    subset = Subset(ds, [5, 1, 8])
    assert len(subset) == 3 and to_numpy(subset[0][1]) == 5
    assert subset.tensors[0].device == tinynet.device(device)
    assert _labels(DataLoader(subset, batch_size=2)) == [[5, 1], [8]]
    per_sample = Subset(_Squares(10), [2, 3])
    assert getattr(per_sample, "tensors", None) is None
    assert _labels(DataLoader(per_sample, batch_size=2)) == [[2, 3]]


def test_random_split():
    tinynet.manual_seed(0)
    parts = random_split(range(10), [3, 7])
    assert [len(p) for p in parts] == [3, 7]
    assert sorted(parts[0].indices + parts[1].indices) == list(range(10))
    tinynet.manual_seed(0)
    assert random_split(range(10), [3, 7])[0].indices == parts[0].indices  # manual_seed fixes it
    # fractions: floor(f * n) each, then the remainder one by one from the first part (as torch)
    assert [len(p) for p in random_split(range(10), [0.5, 0.25, 0.25])] == [6, 2, 2]
    assert [len(p) for p in random_split(range(7), [0.3, 0.3, 0.4])] == [3, 2, 2]
    with pytest.raises(ValueError, match=r"random_split: sum of input lengths \[3, 3\] does not equal"):
        random_split(range(10), [3, 3])


def test_dataset_base_class():
    class NoItems(Dataset):
        pass

    with pytest.raises(NotImplementedError, match="NoItems: a Dataset subclass must define __getitem__"):
        NoItems()[0]


@requires_torch
@pytest.mark.parametrize("kwargs", [dict(batch_size=3), dict(batch_size=4, drop_last=True),
                                    dict(batch_size=2, sampler=[9, 0, 3, 3, 5]),
                                    dict(batch_sampler=[[1, 2], [8], [0, 4, 6]])],
                         ids=["sequential", "drop_last", "sampler", "batch_sampler"])
def test_same_batches_as_torch(kwargs, device):
    x = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    y = np.arange(10)
    ours = list(DataLoader(TensorDataset(tinynet.tensor(x, device=device), tinynet.tensor(y, device=device)),
                           **kwargs))
    theirs = list(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y)),
                                              **kwargs))
    assert len(ours) == len(theirs)
    for (a, b), (c, d) in zip(ours, theirs):
        np.testing.assert_array_equal(to_numpy(a), c.numpy())
        np.testing.assert_array_equal(to_numpy(b), d.numpy())
        assert to_numpy(b).dtype == d.numpy().dtype
