"""``tinynet.data``: datasets, batching and data files (PyTorch's ``torch.utils.data`` plus the
bits of torchvision a training script needs).

* :class:`TensorDataset`, :class:`DataLoader`: batches cut on the device by indexing.
* :class:`MNIST`: the digits, decoded once into tensors on the device; :func:`read_images` and
  :func:`read_labels` check and read its files (and Fashion-MNIST's and KMNIST's, same format).
* :func:`random_rotation`, :func:`normalize`: whole-batch image transforms.
* :func:`read_idx`, :func:`download_file`: the IDX file format; checked, atomic downloads.
"""
from .idx import read_idx
from .download import download_file, DownloadError
from .loader import TensorDataset, DataLoader
from .mnist import MNIST, read_images, read_labels
from .transforms import normalize, random_rotation

__all__ = ["read_idx", "download_file", "DownloadError", "TensorDataset", "DataLoader", "MNIST", "read_images",
           "read_labels", "normalize", "random_rotation"]
