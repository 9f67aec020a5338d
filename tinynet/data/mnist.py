"""The MNIST handwritten digits, decoded once into tensors on the device you train on.

torchvision's ``MNIST`` returns one PIL image per ``__getitem__`` and lets a DataLoader
convert, normalise and stack them, image by image. The whole set is 60,000 x 28 x 28 bytes, so
here it is decoded once into a float tensor (N, 1, 28, 28), already scaled to [0, 1] and
normalised, and put on the device: a batch is then one indexing operation (see
:class:`tinynet.data.DataLoader`).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .. import backend
from .. import dtypes as _dt
from ..tensor import Tensor
from .download import download_file, file_md5
from .idx import UNSIGNED_BYTE, parse_idx, read_bytes
from .loader import _take

__all__ = ["MNIST", "default_root", "read_images", "read_labels", "load_split"]


def default_root() -> Path:
    """Where datasets live when no ``root`` is given: ``$TINYNET_DATA``, else ``~/.cache/tinynet``."""
    env = os.environ.get("TINYNET_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tinynet"


def read_images(raw: bytes, source: str, dataset: str = "MNIST") -> np.ndarray:
    """The images in the IDX bytes ``raw`` of the file ``source``: unsigned bytes of shape
    (N, rows, cols), as MNIST, Fashion-MNIST and KMNIST store them. Another type code (signed
    bytes would load as -128..127) or rank raises ValueError naming ``dataset``, the file, what
    was expected and what was found."""
    return parse_idx(raw, source, dtype_code=UNSIGNED_BYTE, ndim=3, what="images (N, rows, cols)", op=dataset)


def read_labels(raw: bytes, source: str, num_classes: int, count: int, images_source: str = "the images file",
                dataset: str = "MNIST") -> np.ndarray:
    """The labels in the IDX bytes ``raw`` of the file ``source``: unsigned bytes of shape (N,),
    one per image (``count``, the images' N, read from ``images_source``), each below
    ``num_classes``. Anything else raises ValueError naming ``dataset``, the file, what was
    expected and what was found."""
    labels = parse_idx(raw, source, dtype_code=UNSIGNED_BYTE, ndim=1, what="labels (N,)", op=dataset)
    if labels.shape[0] != count:
        raise ValueError(f"{dataset}: {source}: expected {count} labels, one per image in {images_source}, "
                         f"found {labels.shape[0]}")
    if labels.size and int(labels.max()) >= num_classes:
        at = int(np.argmax(labels >= num_classes))
        raise ValueError(f"{dataset}: {source}: expected labels below {num_classes} (the number of classes), "
                         f"found {int(labels[at])} at index {at}")
    return labels


def load_split(dataset, root: Path, train: bool, download: bool = False, verify: bool = False,
               download_to: Path | None = None) -> tuple:
    """The checked images (N, rows, cols) and labels (N,) of one split of ``dataset``: a class that
    says where its four IDX files come from (``mirrors``, ``resources``: name -> checksum,
    ``checksum``: "sha256" of the decompressed bytes or "md5" of the .gz file, and ``classes``),
    as :class:`MNIST` and the sets stored like it (Fashion-MNIST, KMNIST) do.

    Each file is looked for as ``root/<name>.gz``, ``root/<name>``, and the same under
    ``root/<ClassName>/raw/`` (torchvision's layout). With ``download`` a missing file, or one
    whose checksum differs, is fetched (into ``download_to``, default ``root``) and checked; with
    ``verify`` alone a file whose checksum differs is an error naming it. An uncompressed copy of
    a file known only by the MD5 of its .gz cannot be checked and is trusted."""
    prefix = "train" if train else "t10k"
    name = dataset.__name__
    images_file, images_raw = _load_file(dataset, Path(root), f"{prefix}-images-idx3-ubyte", download, verify,
                                         download_to)
    images = read_images(images_raw, images_file, name)
    labels_file, labels_raw = _load_file(dataset, Path(root), f"{prefix}-labels-idx1-ubyte", download, verify,
                                         download_to)
    labels = read_labels(labels_raw, labels_file, len(dataset.classes), images.shape[0], images_file, name)
    return images, labels


def _candidates(dataset, root: Path, name: str) -> list:
    return [folder / file for folder in (root, root / dataset.__name__ / "raw") for file in (f"{name}.gz", name)]


def _load_file(dataset, root: Path, name: str, download: bool, verify: bool, download_to: Path | None) -> tuple:
    """Find, check (with ``download`` or ``verify``) and read one file: (its path as a string, its
    decompressed bytes). With ``download`` a file that fails the check is fetched again; with
    ``verify`` alone it is an error."""
    expected, kind = dataset.resources[name], dataset.checksum
    found = next((p for p in _candidates(dataset, root, name) if p.is_file()), None)
    if found is not None:
        raw = read_bytes(found)
        if not (download or verify) or (kind == "md5" and found.suffix != ".gz"):
            return str(found), raw
        digest = hashlib.sha256(raw).hexdigest() if kind == "sha256" else file_md5(found)
        if digest == expected:
            return str(found), raw
        if not download:
            what = "sha256 of the decompressed data" if kind == "sha256" else "md5 of the file"
            raise ValueError(f"{dataset.__name__}: {found}: {what} is {digest}, expected {expected} (a damaged "
                             "or different file; download=True fetches a fresh copy)")
    folder = Path(download_to) if download_to is not None else root
    if not download:
        looked = "\n  ".join(str(p) for p in _candidates(dataset, root, name))
        raise FileNotFoundError(
            f"{dataset.__name__}: {name} not found; looked for\n  {looked}\nPass download=True to fetch "
            f"it into {folder}, or point root= (or $TINYNET_DATA) at a folder that holds it.")
    checksum = {"sha256_of_decompressed": expected} if kind == "sha256" else {"md5": expected}
    path = download_file([m + f"{name}.gz" for m in dataset.mirrors], folder / f"{name}.gz", **checksum)
    return str(path), read_bytes(path)


class MNIST:
    """The MNIST digits as two tensors: ``data`` (N, 1, 28, 28) floats and ``targets`` (N,) int64.

    Args:
        root: the folder holding the IDX files (default: :func:`default_root`). Each file is
            looked for as ``root/<name>.gz``, ``root/<name>``, and the same under
            ``root/MNIST/raw/`` (torchvision's layout, so an existing torchvision download works;
            a subclass looks under its own class name, ``root/FashionMNIST/raw/``).
        train: the 60,000 training images, else the 10,000 test images.
        download: fetch missing files from the mirrors (checked by sha256) into ``root``; with
            it, files already there are verified too and fetched again when corrupt.
        device: where ``data`` and ``targets`` live.
        normalize: ``(mean, std)`` applied after scaling to [0, 1], or None to keep [0, 1].
            The default is the training set's mean and std, as in the PyTorch MNIST example.
        dtype: the floating dtype of ``data``.
        verify: check files already in ``root`` against their known sha256 (a fraction of a second for the
            training set) and raise ValueError naming a file that differs. Off by default: the
            files are checked when downloaded, and their format is always checked (images of
            unsigned bytes (N, rows, cols), labels (N,) below ``len(classes)``, one per image).

    The same class serves datasets stored in the same files (Fashion-MNIST, KMNIST): a subclass
    sets ``mirrors``, ``resources`` and ``classes``. :func:`read_images` and :func:`read_labels`
    are the format checks on their own.

    Example::

        train = MNIST(train=True, download=True, device="cuda")
        loader = DataLoader(train, batch_size=64, shuffle=True)
        for images, labels in loader:   # (64, 1, 28, 28) float32, (64,) int64, on the GPU
            ...
    """

    mirrors = [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ]
    # name -> sha256 of the decompressed IDX bytes (``checksum``; a subclass whose publisher gives
    # only the MD5 of each .gz file as served sets ``checksum = "md5"``)
    checksum = "sha256"
    resources = {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    }
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven",
               "8 - eight", "9 - nine"]

    def __init__(self, root=None, train: bool = True, download: bool = False, device="cpu",
                 normalize=(0.1307, 0.3081), dtype=_dt.float32, verify: bool = False):
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.train = train
        self.normalize = normalize
        images, labels = load_split(type(self), self.root, train, download, verify)

        # A pixel is one of 256 byte values: convert those once (scale to [0, 1], normalise, in
        # the same float operations as torchvision's ToTensor + Normalize), then look every pixel
        # up. The bytes travel to the device, a quarter of the traffic of floats.
        xp = backend.array_module(device)
        levels = xp.arange(256, dtype=_dt.to_dtype(dtype)) / 255
        if normalize is not None:
            mean, std = normalize
            levels = (levels - mean) / std
        self.data = Tensor(levels[backend.to_device(images[:, None], device)])
        self.targets = Tensor(backend.to_device(labels, device).astype(np.int64))

    # --------------------------------------------------------------------------- dataset protocol
    @property
    def tensors(self) -> tuple:
        """(data, targets): what lets a DataLoader cut batches by indexing on the device."""
        return self.data, self.targets

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index):
        """(image (1, 28, 28), label ()) for an int index; batched tensors for a slice or index array."""
        if isinstance(index, Tensor):
            index = index.data
        return _take(self.data, index), _take(self.targets, index)

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return (f"MNIST(split={split}, samples={len(self)}, root={str(self.root)!r}, device='{self.data.device}', "
                f"dtype={self.data.dtype}, normalize={self.normalize})")

