"""``tinynet.vision.datasets``: MNIST, Fashion-MNIST and KMNIST with torchvision's signature.

``MNIST(root, train=True, transform=None, target_transform=None, download=False)`` behaves as
torchvision's: ``dataset[i]`` is ``(transform(image), target_transform(label))``, ``data`` holds
the images as bytes (N, 28, 28) and ``targets`` the labels (N,) int64. Where torchvision gives
the transform a PIL image, tinynet gives it the image's bytes as an array (28, 28).

The fast path. With ``ToTensor()``, optionally followed by a one-channel ``Normalize``, as the
transform (and no ``target_transform``), a per-sample pipeline would convert the same 256 byte
values millions of times. Instead the dataset runs the transform once on the 256 values, then
looks every pixel up in that table: the whole set becomes one normalised tensor (N, 1, 28, 28),
on ``device``, exposed as ``tensors``, and a DataLoader cuts its batches there. The values are
exactly those the per-sample path gives (the same transform computed them). Any other transform
runs per sample, as in torchvision.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import backend
from ..data.dataset import Dataset, _take
from ..data.mnist import MNIST as _MNISTFiles, load_split
from ..tensor import Tensor
from .transforms import Compose, Normalize, ToTensor

__all__ = ["MNIST", "FashionMNIST", "KMNIST"]


class MNIST(Dataset):
    """The MNIST digits, as ``torchvision.datasets.MNIST``.

    Args:
        root: the folder holding the IDX files, as ``root/<name>[.gz]`` or torchvision's
            ``root/MNIST/raw/<name>[.gz]`` (the class name for the other sets).
        train: the 60,000 training images, else the 10,000 test images.
        transform: applied to each image (an array of bytes (28, 28)); ``ToTensor()`` with an
            optional ``Normalize`` takes the fast path (see the module docstring).
        target_transform: applied to each label (an int).
        download: fetch missing files from the mirrors into ``root/<ClassName>/raw/``, checked
            against their checksums; files already there are checked too and fetched again when
            they do not match.
        device: tinynet's own keyword: where the fast path's ``tensors`` live.
    """

    # where the files come from and how they are checked: see tinynet.data.mnist.load_split
    mirrors, resources, checksum, classes = (_MNISTFiles.mirrors, _MNISTFiles.resources, _MNISTFiles.checksum,
                                             _MNISTFiles.classes)

    def __init__(self, root, train: bool = True, transform=None, target_transform=None, download: bool = False, *,
                 device="cpu"):
        self.root = Path(root).expanduser()
        self.train, self.transform, self.target_transform = train, transform, target_transform
        images, labels = load_split(type(self), self.root, train, download,
                                    download_to=self.root / type(self).__name__ / "raw")
        self.data = Tensor(images)
        self.targets = Tensor(labels.astype(np.int64))
        levels = _byte_table(transform) if target_transform is None else None
        if levels is not None:
            on_device = backend.to_device(levels.data, device)
            self.tensors = (Tensor(on_device[backend.to_device(images[:, None], device)]),
                            Tensor(backend.to_device(self.targets.data, device)))

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int):
        """(image, target): the transformed image and the (transformed) label of sample ``index``."""
        target = int(self.targets.data[index])
        if self.target_transform is not None:
            target = self.target_transform(target)
        if hasattr(self, "tensors"):
            return _take(self.tensors[0], index), target
        image = self.data.data[index].copy()
        return (self.transform(image) if self.transform is not None else image), target

    @property
    def class_to_idx(self) -> dict:
        return {c: i for i, c in enumerate(self.classes)}

    def __repr__(self) -> str:
        lines = [f"Dataset {type(self).__name__}", f"    Number of datapoints: {len(self)}",
                 f"    Root location: {self.root}", f"    Split: {'Train' if self.train else 'Test'}"]
        if self.transform is not None:
            lines.append(f"    StandardTransform\nTransform: {self.transform}")
        return "\n".join(lines)


class FashionMNIST(MNIST):
    """Zalando's Fashion-MNIST: 28x28 grey images of 10 kinds of clothing, in MNIST's files and
    sizes, as ``torchvision.datasets.FashionMNIST`` (same arguments as :class:`MNIST`). Its
    pixels' mean and std are about 0.2860 and 0.3530."""

    mirrors = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
    # MD5 of each .gz file as served: the checksums torchvision and the dataset's authors publish
    resources = {
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    }
    checksum = "md5"
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class KMNIST(MNIST):
    """Kuzushiji-MNIST: 28x28 grey images of 10 classical Japanese (cursive) characters, in
    MNIST's files and sizes, as ``torchvision.datasets.KMNIST`` (same arguments as
    :class:`MNIST`). Its pixels' mean and std are about 0.1918 and 0.3483."""

    mirrors = ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"]
    # MD5 of each .gz file as served (torchvision's checksums)
    resources = {
        "train-images-idx3-ubyte": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte": "7320c461ea6c1c855c0b718fb2a4b134",
    }
    checksum = "md5"
    classes = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]


def _byte_table(transform):
    """For ``ToTensor()`` optionally followed by a one-channel ``Normalize`` (bare or in a
    ``Compose``), the transform's value for each of the 256 bytes, as a tensor (256,)
    computed by the transform itself; None for any other transform."""
    steps = transform.transforms if isinstance(transform, Compose) else [transform]
    if not steps or type(steps[0]) is not ToTensor or len(steps) > 2:
        return None
    if len(steps) == 2:
        norm = steps[1]
        if type(norm) is not Normalize or any(np.size(v) != 1 for v in (norm.mean, norm.std)):
            return None
    return transform(np.arange(256, dtype=np.uint8).reshape(1, 256)).reshape(256)
