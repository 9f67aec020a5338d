"""``tinynet.backends``: switches for how the GPU computes, as ``torch.backends``.

``allow_tf32`` (default False): let float32 matrix products (``matmul``, ``linear``, the GEMM
inside ``conv2d``) on a CUDA GPU use TF32 tensor cores (Ampere and later): inputs rounded to a
10-bit mantissa, accumulation in float32, several times faster. Off, GEMMs are exact float32.
Read at every GEMM, so it can be switched at any time::

    tinynet.backends.allow_tf32 = True

It has no effect on the CPU, nor on the simulated device (tinynet.sim records it only).

``mps`` and ``cudnn`` answer the questions PyTorch scripts ask before choosing a device::

    tinynet.backends.mps.is_available()      # False: tinynet has no Apple-GPU backend
    tinynet.backends.cudnn.benchmark = True  # accepted; tinynet's convolutions do not use cuDNN
"""
from __future__ import annotations

from . import backend

__all__ = ["allow_tf32", "prepare_gemm", "mps", "cudnn"]

allow_tf32 = False


def prepare_gemm(xp) -> None:
    """Apply :data:`allow_tf32` to the array module ``xp`` before a float32 matrix product (the
    ops that call ``xp.matmul`` call this first)."""
    if xp is not backend.np:
        backend.set_gemm_tf32(xp, allow_tf32)


class _MPS:
    """``torch.backends.mps``: Apple's Metal GPUs. tinynet has no Metal backend, so a script's
    ``if backends.mps.is_available(): device = "mps"`` takes its other branch."""

    @staticmethod
    def is_available() -> bool:
        return False

    @staticmethod
    def is_built() -> bool:
        return False


class _CuDNN:
    """``torch.backends.cudnn``: tinynet's GPU convolutions are im2col + GEMM, not cuDNN, so
    ``benchmark`` and ``deterministic`` are recorded for scripts that set them and change nothing."""

    enabled = True
    benchmark = False
    deterministic = False

    @staticmethod
    def is_available() -> bool:
        return False


mps = _MPS()
cudnn = _CuDNN()
