"""Image transforms as array operations on the images' device: the one implementation of
normalisation, rotation and affine warps, used on whole batches here and per sample by
:mod:`tinynet.vision.transforms`.

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

__all__ = ["normalize", "random_rotation", "inverse_affine_matrix", "warp_affine"]


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
def random_rotation(images: Tensor, degrees, generator=None, fill: float = 0.0, interpolation: str = "bilinear") -> Tensor:
    """Rotate each image of a batch about its centre by its own random angle, drawn uniformly
    from [-degrees, degrees] (or [degrees[0], degrees[1]]); positive angles turn the image
    counter-clockwise, as torchvision's ``RandomRotation``.

    Each output pixel samples the input at the point that the rotation brings onto it (see
    :func:`warp_affine`); points outside the image read ``fill``. On normalised images pass the
    normalised background, e.g. ``fill=(0 - 0.1307) / 0.3081`` for MNIST.

    Args:
        images: a float tensor of shape (N, C, H, W).
        degrees: a number d (angles in [-d, d]) or a pair (low, high).
        generator: a :class:`tinynet.Generator` on the images' device (default: the device's).
        interpolation: ``"bilinear"`` (default) or ``"nearest"``.
    """
    if images.ndim != 4:
        raise ValueError(f"random_rotation: expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    if images.dtype.kind != "f":
        raise TypeError(f"random_rotation: expected a floating-point tensor, got dtype {images.dtype}")
    low, high = (-degrees, degrees) if isinstance(degrees, numbers.Number) else degrees
    if low > high:
        raise ValueError(f"random_rotation: degrees must be a non-negative number or a pair (low, high) with "
                         f"low <= high, got {degrees}")
    xp = images.xp
    radians = generator_for(images.device, generator).uniform((images.shape[0],), low, high, images.dtype)
    radians = radians * (math.pi / 180)
    cos, sin, zero = xp.cos(radians), xp.sin(radians), xp.zeros_like(radians)
    # Turning the picture counter-clockwise on screen (y down) by a sends a source point
    # (xs, ys) to (cos·xs + sin·ys, -sin·xs + cos·ys); its inverse gives the source of each output:
    matrices = xp.stack([xp.stack([cos, -sin, zero], axis=1), xp.stack([sin, cos, zero], axis=1)], axis=1)
    return Tensor(warp_affine(images.data, matrices, interpolation, fill))


def inverse_affine_matrix(angle: float, translate=(0.0, 0.0), scale: float = 1.0, shear=(0.0, 0.0),
                          center=(0.0, 0.0)) -> list:
    """The 2x3 matrix (as 6 numbers, row-major) that maps an output pixel to the input pixel it
    samples, for a rotation by ``angle`` degrees (clockwise), then ``scale``, ``shear`` (x, y
    degrees) and ``translate`` (pixels), about ``center``. Coordinates are in pixels relative
    to the image centre, x to the right and y down. This is torchvision's
    ``_get_inverse_affine_matrix``, term for term, so that ``RandomAffine`` draws the same images."""
    rot = math.radians(angle)
    sx, sy = math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    # rotation and shear (without the scale): [[a, b], [c, d]], determinant 1
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    matrix = [v / scale for v in (d, -b, 0.0, -c, a, 0.0)]  # its inverse, scaled
    # then undo the translation and the move to the centre, and move back: C · RSS^-1 · C^-1 · T^-1
    matrix[2] += matrix[0] * (-cx - tx) + matrix[1] * (-cy - ty) + cx
    matrix[5] += matrix[3] * (-cx - tx) + matrix[4] * (-cy - ty) + cy
    return matrix


def warp_affine(images, matrices, interpolation: str = "bilinear", fill=0.0):
    """Resample the array ``images`` (N, C, H, W): output pixel (x, y) of image n reads the
    input at ``matrices[n] @ (x, y, 1)``, coordinates in pixels relative to the image centre
    (x right, y down; pixel centres at integer offsets from ``(W-1)/2, (H-1)/2``).

    ``"nearest"`` reads the pixel nearest that point (ties to even, as ``grid_sample``), or
    ``fill`` when it lies outside. ``"bilinear"`` weighs the four pixels around the point; with
    ``V`` the weighted sum of those inside and ``M`` their total weight, the result is
    ``V * M + (1 - M) * fill``: torchvision's formula, which fades the borders into ``fill``.
    ``fill`` is a number or one number per channel.
    """
    xp = get_array_module(images)
    if interpolation not in ("nearest", "bilinear"):
        raise ValueError(f"warp_affine: interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")
    n, channels, height, width = images.shape
    cy, cx = (height - 1) / 2, (width - 1) / 2
    y = (xp.arange(height, dtype=images.dtype) - cy)[None, :, None]
    x = (xp.arange(width, dtype=images.dtype) - cx)[None, None, :]
    m = matrices.astype(images.dtype, copy=False)[:, :, :, None, None]  # (N, 2, 3, 1, 1)
    src_x = m[:, 0, 0] * x + m[:, 0, 1] * y + m[:, 0, 2] + cx   # (N, H, W) column in the input
    src_y = m[:, 1, 0] * x + m[:, 1, 1] * y + m[:, 1, 2] + cy   # (N, H, W) row in the input
    fill = xp.asarray(fill, dtype=images.dtype).reshape(1, -1, 1, 1)
    batch = xp.arange(n)[:, None, None, None]
    channel = xp.arange(channels)[None, :, None, None]

    def read(row, col):
        """The pixels at integer (row, col), and whether each lies inside the image."""
        inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
        # Read a clipped index everywhere (valid memory); the caller masks the outside reads.
        value = images[batch, channel, xp.clip(row, 0, height - 1)[:, None], xp.clip(col, 0, width - 1)[:, None]]
        return value, inside[:, None]

    if interpolation == "nearest":
        value, inside = read(xp.rint(src_y).astype(xp.int64), xp.rint(src_x).astype(xp.int64))
        return xp.where(inside, value, fill).astype(images.dtype, copy=False)
    x0, y0 = xp.floor(src_x), xp.floor(src_y)
    wx, wy = src_x - x0, src_y - y0
    x0, y0 = x0.astype(xp.int64), y0.astype(xp.int64)
    total, weight_inside = xp.zeros_like(images), xp.zeros((n, 1, height, width), dtype=images.dtype)
    for dy, dx, weight in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx),
                           (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
        value, inside = read(y0 + dy, x0 + dx)
        weight = xp.where(inside, weight[:, None], 0)
        total += weight * value
        weight_inside += weight
    return total * weight_inside + (1 - weight_inside) * fill
