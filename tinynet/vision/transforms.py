"""``tinynet.vision.transforms``: torchvision's per-sample image transforms.

A dataset applies its ``transform`` to one image at a time, as torchvision's do. An image is
either a tensor (C, H, W) (or with leading batch dimensions) or, before ``ToTensor``, an array
(H, W) or (H, W, C) of bytes: what tinynet's datasets give where torchvision's give a PIL image
(a PIL image is accepted too, by ``ToTensor``). The arithmetic lives in
:mod:`tinynet.data.transforms` (one implementation, also used on whole batches); the classes
here draw the random parameters as torchvision does and handle the image types.

The usual ``Compose([ToTensor(), Normalize(mean, std)])`` on an MNIST-style dataset is not run
per sample at all: the dataset recognises it and converts the whole set at once (see
:mod:`tinynet.vision.datasets`).
"""
from __future__ import annotations

import enum
import numbers

import numpy as np

from .. import backend
from .. import dtypes as _dt
from ..data.transforms import inverse_affine_matrix, normalize, warp_affine
from ..random import generator_for
from ..tensor import Tensor

__all__ = ["Compose", "ToTensor", "Normalize", "Lambda", "RandomRotation", "RandomAffine", "InterpolationMode"]


class InterpolationMode(enum.Enum):
    """How a warp reads between pixels, as torchvision's enum (the two modes tinynet has)."""
    NEAREST = "nearest"
    BILINEAR = "bilinear"


class Compose:
    """Apply ``transforms`` one after the other: ``Compose([ToTensor(), Normalize(m, s)])``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        return "Compose(\n" + "".join(f"    {t}\n" for t in self.transforms) + ")"


class ToTensor:
    """An image of bytes (H, W) or (H, W, C) (array or PIL image) as a float tensor (C, H, W)
    with values in [0, 1] (``byte / 255``, in the default float dtype, as torchvision). Arrays of
    another dtype keep their values (only the layout changes), as in torchvision."""

    def __call__(self, pic) -> Tensor:
        if isinstance(pic, Tensor) or not (isinstance(pic, np.ndarray) or hasattr(pic, "getbands")):
            raise TypeError(f"ToTensor: pic should be PIL Image or ndarray. Got {type(pic)}")
        array = np.asarray(pic)  # a PIL image converts to (H, W) or (H, W, C)
        if array.ndim not in (2, 3):
            raise ValueError(f"ToTensor: pic should be 2 or 3 dimensional (H, W) or (H, W, C). Got {array.ndim} "
                             "dimensions.")
        if array.ndim == 2:
            array = array[:, :, None]
        array = np.ascontiguousarray(array.transpose(2, 0, 1))
        if array.dtype == np.uint8:
            array = array.astype(_dt.get_default_dtype()) / _dt.get_default_dtype().type(255)
        return Tensor(array)

    def __repr__(self) -> str:
        return "ToTensor()"


class Normalize:
    """``(tensor - mean) / std`` per channel of a float tensor (..., C, H, W), as torchvision's
    ``Normalize`` (see :func:`tinynet.data.normalize`). ``inplace`` is accepted; the result is
    always a new tensor."""

    def __init__(self, mean, std, inplace: bool = False):
        self.mean, self.std, self.inplace = mean, std, inplace

    def __call__(self, tensor: Tensor) -> Tensor:
        if not isinstance(tensor, Tensor):
            raise TypeError(f"Normalize: expected a tensor (C, H, W), got {type(tensor).__name__} (put ToTensor() "
                            "first)")
        return normalize(tensor, self.mean, self.std)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class Lambda:
    """Apply a user function ``lambd`` to the image."""

    def __init__(self, lambd):
        if not callable(lambd):
            raise TypeError(f"Lambda: argument lambd should be callable, got {type(lambd).__name__!r}")
        self.lambd = lambd

    def __call__(self, img):
        return self.lambd(img)

    def __repr__(self) -> str:
        return "Lambda()"


class RandomAffine:
    """A random affine warp keeping the image's centre, as torchvision's ``RandomAffine``: a
    rotation by an angle drawn from ``degrees`` (clockwise, as torchvision's ``affine``), a
    translation of up to ``translate`` times the width and height (rounded to whole pixels),
    a scale from ``scale`` and shears from ``shear``; pixels from outside read ``fill``.

    Args:
        degrees: d (angles in [-d, d]) or (min, max).
        translate: (a, b): horizontal shift in [-a*W, a*W], vertical in [-b*H, b*H]. Default: none.
        scale: (min, max) scale factor. Default: 1.
        shear: s (x shear in [-s, s]), (min, max) for x, or (xmin, xmax, ymin, ymax), in degrees.
        interpolation: ``InterpolationMode.NEAREST`` (default) or ``BILINEAR`` (or their strings).
        fill: the value of pixels from outside: a number or one per channel. Default: 0.
        center: (x, y) in pixels (default: the image centre).

    The random parameters are drawn from the CPU's default generator (``tinynet.manual_seed``)
    in torchvision's order: angle, translation x and y, scale, shear x and y.
    """

    def __init__(self, degrees, translate=None, scale=None, shear=None, interpolation=InterpolationMode.NEAREST,
                 fill=0, center=None):
        name = type(self).__name__
        self.degrees = _range(name, "degrees", degrees)
        if translate is not None:
            _check_sequence(name, "translate", translate, (2,))
            if not all(0.0 <= t <= 1.0 for t in translate):
                raise ValueError(f"{name}: translation values should be between 0 and 1, got {translate}")
        if scale is not None:
            _check_sequence(name, "scale", scale, (2,))
            if not all(s > 0 for s in scale):
                raise ValueError(f"{name}: scale values should be positive, got {scale}")
        if shear is not None:
            shear = _range(name, "shear", shear) if isinstance(shear, numbers.Number) else shear
            _check_sequence(name, "shear", shear, (2, 4))
        if center is not None:
            _check_sequence(name, "center", center, (2,))
        self.translate, self.scale, self.shear, self.center, self.fill = translate, scale, shear, center, fill
        self.interpolation = _interpolation(name, interpolation)

    def get_params(self, width: int, height: int) -> dict:
        """Draw (angle, translate, scale, shear) for an image of this size."""
        draw = _uniform
        angle = draw(*self.degrees)
        translate = (0, 0)
        if self.translate is not None:
            max_dx, max_dy = self.translate[0] * width, self.translate[1] * height
            translate = (int(round(draw(-max_dx, max_dx))), int(round(draw(-max_dy, max_dy))))
        scale = draw(*self.scale) if self.scale is not None else 1.0
        shear = (0.0, 0.0)
        if self.shear is not None:
            shear = (draw(self.shear[0], self.shear[1]), draw(self.shear[2], self.shear[3]) if len(self.shear) == 4
                     else 0.0)
        return dict(angle=angle, translate=translate, scale=scale, shear=shear)

    def __call__(self, img):
        height, width = _size(img)
        return _warp(img, self._matrix(self.get_params(width, height), width, height), self.interpolation, self.fill)

    def _matrix(self, params: dict, width: int, height: int) -> list:
        # torchvision's tensor path: the centre in pixels relative to the image centre
        center = (0.0, 0.0) if self.center is None else (self.center[0] - width * 0.5, self.center[1] - height * 0.5)
        return inverse_affine_matrix(params["angle"], params["translate"], params["scale"], params["shear"], center)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(degrees={self.degrees}, translate={self.translate}, scale={self.scale}, "
                f"shear={self.shear}, interpolation={self.interpolation.value}, fill={self.fill})")


class RandomRotation(RandomAffine):
    """Rotate the image about its centre (or ``center``) by an angle drawn from ``degrees``,
    counter-clockwise for positive angles, as torchvision's ``RandomRotation``.

    Args:
        degrees: d (angles in [-d, d]) or (min, max).
        interpolation: ``InterpolationMode.NEAREST`` (default) or ``BILINEAR``.
        expand: not supported (the output keeps the input's size); True raises.
        center: (x, y) in pixels (default: the image centre).
        fill: the value of pixels from outside: a number or one per channel. Default: 0.
    """

    def __init__(self, degrees, interpolation=InterpolationMode.NEAREST, expand: bool = False, center=None, fill=0):
        if expand:
            raise NotImplementedError("RandomRotation: expand=True is not supported (the output keeps the input's "
                                      "size)")
        super().__init__(degrees, interpolation=interpolation, fill=fill, center=center)
        self.expand = expand

    def get_params(self, width: int, height: int) -> dict:
        return dict(angle=-_uniform(*self.degrees), translate=(0.0, 0.0), scale=1.0, shear=(0.0, 0.0))

    def __repr__(self) -> str:
        return (f"RandomRotation(degrees={self.degrees}, interpolation={self.interpolation.value}, "
                f"expand={self.expand}, fill={self.fill})")


# ------------------------------------------------------------------------------------------ helpers
def _uniform(low: float, high: float) -> float:
    """One number drawn uniformly from [low, high) by the CPU's default generator."""
    return float(generator_for("cpu").uniform((1,), low, high, np.float64)[0])


def _range(op: str, name: str, value) -> tuple:
    """A number d as (-d, d) (d must be non-negative), a pair as it is."""
    if isinstance(value, numbers.Number):
        if value < 0:
            raise ValueError(f"{op}: if {name} is a single number, it must be positive, got {value}")
        return (-float(value), float(value))
    _check_sequence(op, name, value, (2,))
    return tuple(float(v) for v in value)


def _check_sequence(op: str, name: str, value, lengths) -> None:
    if not isinstance(value, (tuple, list)) or len(value) not in lengths:
        raise ValueError(f"{op}: {name} should be a sequence of length {' or '.join(map(str, lengths))}, "
                         f"got {value!r}")


def _interpolation(op: str, mode) -> InterpolationMode:
    try:
        return InterpolationMode(mode.value if isinstance(mode, InterpolationMode) else mode)
    except ValueError:
        raise ValueError(f"{op}: interpolation must be InterpolationMode.NEAREST or BILINEAR, got {mode!r}") from None


def _size(img) -> tuple:
    """(H, W) of a tensor (..., C, H, W) or an image array (H, W) / (H, W, C)."""
    if isinstance(img, Tensor):
        if img.ndim < 3:
            raise ValueError(f"expected an image tensor (C, H, W), got shape {tuple(img.shape)}")
        return img.shape[-2], img.shape[-1]
    if isinstance(img, np.ndarray) and img.ndim in (2, 3):
        return img.shape[0], img.shape[1]
    raise TypeError(f"expected an image tensor (C, H, W) or an image array (H, W[, C]), got {type(img).__name__}")


def _warp(img, matrix: list, interpolation: InterpolationMode, fill):
    """Apply the inverse map ``matrix`` (6 numbers) to one image, keeping its type: a tensor
    (..., C, H, W) warps on its device in its dtype; a byte array (H, W[, C]) warps in float32
    and is rounded back, as torchvision does with integer images."""
    if isinstance(img, Tensor):
        if img.dtype.kind != "f":
            raise TypeError(f"expected a floating-point image tensor, got dtype {img.dtype}")
        batch = img.data.reshape((-1,) + tuple(img.shape[-3:]))
        matrices = backend.to_device(np.asarray(matrix, dtype=batch.dtype).reshape(1, 2, 3), img.device)
        matrices = backend.array_module(img.device).broadcast_to(matrices, (batch.shape[0], 2, 3))
        return Tensor(warp_affine(batch, matrices, interpolation.value, _fill(fill, img.shape[-3])).reshape(img.shape))
    image = img[:, :, None] if img.ndim == 2 else img
    batch = image.transpose(2, 0, 1)[None].astype(np.float32)
    matrices = np.asarray(matrix, dtype=np.float32).reshape(1, 2, 3)
    out = warp_affine(batch, matrices, interpolation.value, _fill(fill, batch.shape[1]))[0].transpose(1, 2, 0)
    if img.dtype.kind in "ui":
        out = np.rint(out)
    return out.astype(img.dtype).reshape(img.shape)


def _fill(fill, channels: int):
    """One fill value per channel, as torchvision expands a number."""
    values = [float(fill)] * channels if isinstance(fill, numbers.Number) else [float(v) for v in fill]
    if len(values) not in (1, channels):
        raise ValueError(f"fill: {len(values)} values given for images with {channels} channels")
    return values if len(values) == channels else values * channels

