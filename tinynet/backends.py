"""``tinynet.backends``: switches for how the GPU computes, as ``torch.backends``.

``allow_tf32`` (default False): let float32 matrix products (``matmul``, ``linear``, the GEMM
inside ``conv2d``) on a CUDA GPU use TF32 tensor cores (Ampere and later): inputs rounded to a
10-bit mantissa, accumulation in float32, several times faster. Off, GEMMs are exact float32.
Read at every GEMM, so it can be switched at any time::

    tinynet.backends.allow_tf32 = True

It has no effect on the CPU, nor on the simulated device (tinynet.sim records it only).
"""
from __future__ import annotations

from . import backend

__all__ = ["allow_tf32", "prepare_gemm"]

allow_tf32 = False


def prepare_gemm(xp) -> None:
    """Apply :data:`allow_tf32` to the array module ``xp`` before a float32 matrix product (the
    ops that call ``xp.matmul`` call this first)."""
    if xp is not backend.np:
        backend.set_gemm_tf32(xp, allow_tf32)
