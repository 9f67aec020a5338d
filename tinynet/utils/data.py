"""``tinynet.utils.data``: ``torch.utils.data``'s names for :mod:`tinynet.data`'s classes (the
same objects, not copies: ``tinynet.utils.data.DataLoader is tinynet.data.DataLoader``), so that
``from torch.utils.data import DataLoader`` becomes ``from tinynet.utils.data import DataLoader``."""
from ..data.dataset import Dataset, TensorDataset, Subset, random_split
from ..data.sampler import Sampler, SequentialSampler, RandomSampler, BatchSampler
from ..data.loader import DataLoader, default_collate
from ..distributed.sampler import DistributedSampler  # torch.utils.data.DistributedSampler

__all__ = ["Dataset", "TensorDataset", "Subset", "random_split", "Sampler", "SequentialSampler", "RandomSampler",
           "BatchSampler", "DistributedSampler", "DataLoader", "default_collate"]
