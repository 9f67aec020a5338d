"""``tinynet.vision``: torchvision's names, ``from tinynet.vision import datasets, transforms``.

* :mod:`~tinynet.vision.datasets`: ``MNIST``, ``FashionMNIST``, ``KMNIST`` with torchvision's
  signature (``root, train, transform, target_transform, download``).
* :mod:`~tinynet.vision.transforms`: ``Compose``, ``ToTensor``, ``Normalize``, ``Lambda``,
  ``RandomRotation``, ``RandomAffine``.
"""
from . import datasets, transforms

__all__ = ["datasets", "transforms"]
