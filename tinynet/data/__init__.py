"""``tinynet.data``: datasets, batching and data files (PyTorch's ``torch.utils.data``, also
importable as ``tinynet.utils.data``, plus the bits of torchvision a training script needs).

* :class:`Dataset`, :class:`TensorDataset`, :class:`Subset`, :func:`random_split`: datasets.
* :class:`DataLoader`, the samplers: batches cut on the device by indexing.
* :class:`MNIST`: the digits, decoded once into tensors on the device.
* :func:`random_rotation`, :func:`random_affine`, :func:`normalize`: whole-batch image transforms.
* :func:`read_idx`, :func:`download_file`: the IDX file format; checked, atomic downloads.
"""
from .idx import read_idx
from .download import download_file, DownloadError
from .dataset import Dataset, TensorDataset, Subset, random_split
from .sampler import Sampler, SequentialSampler, RandomSampler, BatchSampler
from .loader import DataLoader, default_collate
from .mnist import MNIST
from .transforms import normalize, random_rotation

__all__ = ["read_idx", "download_file", "DownloadError", "Dataset", "TensorDataset", "Subset", "random_split",
           "Sampler", "SequentialSampler", "RandomSampler", "BatchSampler", "DataLoader", "default_collate",
           "MNIST", "normalize", "random_rotation"]
