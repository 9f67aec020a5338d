"""Transforms of whole image batches, done as array operations on the batch's device.

torchvision transforms one PIL image at a time in worker processes; here a batch of (N, C, H, W)
images is transformed at once, so a GPU does the work and no Python loop runs per image. These
are data preparation, not model ops: they record no graph.
"""
from __future__ import annotations

import math
import numbers

from ..backend import get_array_module
from ..random import generator_for
from ..tensor import Tensor
from ..recording import recordable

__all__ = ["normalize", "random_rotation"]


def normalize(images: Tensor, mean, std) -> Tensor:
    """``(images - mean) / std`` per channel, as torchvision's ``Normalize``.

    Args:
        images: a float tensor (N, C, H, W) or (C, H, W).
        mean, std: numbers (every channel) or one number per channel.
    """
    xp = images.xp
    if images.ndim < 3:
        raise ValueError(f"normalize: expected images of shape (N, C, H, W) or (C, H, W), got {tuple(images.shape)}")
    if images.dtype.kind != "f":
        raise TypeError(f"normalize: expected a floating-point tensor, got dtype {images.dtype}")
    mean, std = (_per_channel("normalize", xp, v, images) for v in (mean, std))
    return Tensor((images.data - mean) / std)


def _per_channel(op: str, xp, value, images):
    """A number as it is; a sequence as an array of shape (C, 1, 1) that broadcasts over H, W."""
    if isinstance(value, numbers.Number):
        return value
    array = xp.asarray(value, dtype=images.dtype).reshape(-1, 1, 1)
    channels = images.shape[-3]
    if array.shape[0] not in (1, channels):
        raise ValueError(f"{op}: {array.shape[0]} values given for images with {channels} channels "
                         f"(shape {tuple(images.shape)})")
    return array


@recordable
def random_rotation(images: Tensor, degrees, generator=None, fill: float = 0.0) -> Tensor:
    """Rotate each image of a batch about its centre by its own random angle, drawn uniformly
    from [-degrees, degrees] (or [degrees[0], degrees[1]]); positive angles turn the image
    counter-clockwise, as torchvision's ``RandomRotation``.

    Each output pixel takes the bilinear interpolation of the four input pixels around the point
    that the rotation brings onto it; points outside the image read ``fill``. On normalised
    images pass the normalised background, e.g. ``fill=(0 - 0.1307) / 0.3081`` for MNIST.

    Args:
        images: a float tensor of shape (N, C, H, W).
        degrees: a number d (angles in [-d, d]) or a pair (low, high).
        generator: a :class:`tinynet.Generator` on the images' device (default: the device's).
    """
    if images.ndim != 4:
        raise ValueError(f"random_rotation: expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    if images.dtype.kind != "f":
        raise TypeError(f"random_rotation: expected a floating-point tensor, got dtype {images.dtype}")
    low, high = (-degrees, degrees) if isinstance(degrees, numbers.Number) else degrees
    if low > high:
        raise ValueError(f"random_rotation: degrees must be a non-negative number or a pair (low, high) with "
                         f"low <= high, got {degrees}")
    angles = generator_for(images.device, generator).uniform((images.shape[0],), low, high, images.dtype)
    return Tensor(_rotate(images.data, angles * (math.pi / 180), fill))


def _rotate(images, radians, fill: float):
    """Rotate the array ``images`` (N, C, H, W) counter-clockwise by per-image ``radians`` (N,),
    sampling bilinearly."""
    xp = get_array_module(images)
    n, channels, height, width = images.shape
    # Coordinates of every output pixel relative to the centre, x to the right, y downwards.
    cy, cx = (height - 1) / 2, (width - 1) / 2
    y = (xp.arange(height, dtype=images.dtype) - cy)[None, :, None]
    x = (xp.arange(width, dtype=images.dtype) - cx)[None, None, :]
    cos, sin = xp.cos(radians)[:, None, None], xp.sin(radians)[:, None, None]
    # Inverse map: the source point that lands on (x, y). Turning the picture counter-clockwise
    # on screen (y down) sends a source (xs, ys) to (cos*xs + sin*ys, -sin*xs + cos*ys); inverting:
    src_x = cos * x - sin * y + cx      # (N, H, W) column in the input
    src_y = sin * x + cos * y + cy      # (N, H, W) row in the input

    # Bilinear: weigh the four neighbours by how close the source point is to each.
    x0, y0 = xp.floor(src_x), xp.floor(src_y)
    wx, wy = src_x - x0, src_y - y0
    x0, y0 = x0.astype(xp.int64), y0.astype(xp.int64)
    batch = xp.arange(n)[:, None, None, None]
    channel = xp.arange(channels)[None, :, None, None]
    out = xp.zeros_like(images)
    for dy, dx, weight in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx),
                           (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
        row, col = y0 + dy, x0 + dx
        inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
        # Read a clipped index everywhere (valid memory), then replace outside reads by fill.
        value = images[batch, channel, xp.clip(row, 0, height - 1)[:, None], xp.clip(col, 0, width - 1)[:, None]]
        out += weight[:, None] * xp.where(inside[:, None], value, images.dtype.type(fill))
    return out
