"""Every matrix product of tinynet's ops: ``matmul(xp, a, b)``, NumPy's ``matmul`` semantics
(1-D operands, broadcast batch dims), one function for all devices, capturable into a CUDA graph.

* CPU: ``numpy.matmul`` (BLAS).
* GPU, normally: ``cupy.matmul`` (cuBLAS through CuPy, with ``tinynet.backends.allow_tf32``).
* GPU, while the current stream is capturing a CUDA graph: CuPy's cuBLAS wrappers cannot be
  used (each calls ``cublasSetStream``, which raises NotImplementedError on a capturing stream),
  so cuBLAS is called directly through ctypes: ``cublasSgemm_v2``/``cublasDgemm_v2`` on CuPy's
  handle, whose stream and workspace :func:`prepare_capture` set *before* the capture (cuBLAS
  must not allocate its workspace while capturing). Row-major ``C = A @ B`` is computed as the
  column-major ``C^T = B^T @ A^T``, so no operand is transposed in memory.
* Simulated device: ``tinynet.sim.cublas_gemm`` (NumPy's matmul, counted as a GEMM, allowed
  while capturing, as the direct cuBLAS call is).

The direct path does not apply TF32 (exact float32 only) and runs one cuBLAS call per matrix of
a batch; it exists for capture, where its host cost is paid once.
"""
from __future__ import annotations

import ctypes
import sys

import numpy as np

__all__ = ["matmul", "prepare_capture"]

_CUBLAS_OP_N, _CUBLAS_OP_T = 0, 1
_WORKSPACE_BYTES = 32 * 1024 * 1024   # what cuBLAS asks for on Hopper; less is enough elsewhere
_workspaces: dict = {}                # device id -> workspace memory: set on the shared handle, kept forever
_lib = None


def matmul(xp, a, b, out=None):
    """``a @ b`` (NumPy's ``matmul``) on ``a``'s device, into ``out`` if given; see the module
    docstring for which library computes it. ``xp`` is the array module of ``a`` and ``b``."""
    if xp is np:
        return np.matmul(a, b, out=out)
    sim = sys.modules.get("tinynet.sim")
    if sim is not None and type(a) is sim.SimArray:
        return sim.cublas_gemm(a, b, out=out)
    if not xp.cuda.get_current_stream().is_capturing():
        return xp.matmul(a, b, out=out)
    result = _direct_matmul(xp, a, b, out)
    if out is not None and result is not out:
        out[...] = result
        return out
    return result


# ------------------------------------------------------------------ cuBLAS called directly (GPU)
def _cublas():
    """libcublas, loaded by ctypes (CuPy has loaded it already: this shares its library state)."""
    global _lib
    if _lib is None:
        paths = []
        try:
            from cuda import pathfinder  # CuPy 14 finds its CUDA libraries with it
            found = pathfinder.load_nvidia_dynamic_lib("cublas").abs_path
            if found:
                paths.append(found)
        except Exception:  # CuPy 13, or a system CUDA: the usual library names
            pass
        paths += ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"]
        for path in paths:
            try:
                _lib = ctypes.CDLL(path)
                break
            except OSError:
                continue
        else:
            raise RuntimeError("matmul during CUDA graph capture: libcublas could not be loaded (tried "
                               f"{', '.join(paths)})")
    return _lib


def prepare_capture(xp, stream) -> None:
    """Point CuPy's cuBLAS handle at ``stream`` and give it a workspace, before a capture on
    ``stream`` (neither may happen during it). A no-op on the CPU and the simulated device."""
    sim = sys.modules.get("tinynet.sim")
    if xp is np or (sim is not None and xp is sim.cupy):
        return
    lib = _cublas()
    handle = ctypes.c_void_p(xp.cuda.device.get_cublas_handle())
    device = xp.cuda.Device().id
    if device not in _workspaces:
        _workspaces[device] = xp.cuda.alloc(_WORKSPACE_BYTES)
    workspace = _workspaces[device]
    _check(lib.cublasSetStream_v2(handle, ctypes.c_void_p(stream.ptr)), "cublasSetStream")
    _check(lib.cublasSetWorkspace_v2(handle, ctypes.c_void_p(workspace.ptr), ctypes.c_size_t(_WORKSPACE_BYTES)),
           "cublasSetWorkspace")


def _check(status: int, call: str) -> None:
    if status != 0:
        raise RuntimeError(f"matmul during CUDA graph capture: {call} failed with cuBLAS status {status}")


def _direct_matmul(xp, a, b, out=None):
    if a.dtype != b.dtype or a.dtype not in (np.float32, np.float64):
        raise TypeError(f"matmul during CUDA graph capture: float32 or float64 operands of one dtype, got "
                        f"{a.dtype} and {b.dtype}")
    a_vector, b_vector = a.ndim == 1, b.ndim == 1
    if a_vector:
        a = a[None, :]
    if b_vector:
        b = b[:, None]
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    (m, k), n = a.shape[-2:], b.shape[-1]
    if out is None or a_vector or b_vector or out.shape != batch + (m, n) or not out.flags.c_contiguous \
            or out.dtype != a.dtype:
        out = xp.empty(batch + (m, n), dtype=a.dtype)   # else cuBLAS writes straight into out
    a = xp.broadcast_to(a, batch + (m, k))
    b = xp.broadcast_to(b, batch + (k, n))
    for index in np.ndindex(*batch):
        _gemm(xp, a[index], b[index], out[index])
    if a_vector:
        out = out[..., 0, :]
    if b_vector:
        out = out[..., 0]
    return out


def _column_major(xp, x):
    """``(array, op, ld)``: ``x`` (rows, cols, row-major) as cuBLAS reads it. A C-contiguous
    matrix is its transpose in column-major order (op N gives x^T); an F-contiguous one is
    itself (op T gives x^T). Anything else is copied to C order first."""
    item = x.itemsize
    rows, cols = x.shape
    if x.flags.c_contiguous:
        return x, _CUBLAS_OP_N, max(1, cols)
    if x.flags.f_contiguous:
        return x, _CUBLAS_OP_T, max(1, rows)
    if x.strides[1] == item and x.strides[0] >= cols * item:   # rows with a gap between them
        return x, _CUBLAS_OP_N, x.strides[0] // item
    x = xp.ascontiguousarray(x)
    return x, _CUBLAS_OP_N, max(1, cols)


def _gemm(xp, a, b, c) -> None:
    """``c = a @ b`` for 2-D ``a`` (m, k), ``b`` (k, n) and C-contiguous ``c`` (m, n): in cuBLAS's
    column-major terms ``c^T = b^T @ a^T``."""
    m, k = a.shape
    n = b.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        c.fill(0)
        return
    a, op_a, lda = _column_major(xp, a)
    b, op_b, ldb = _column_major(xp, b)
    scalar = ctypes.c_float if a.dtype == np.float32 else ctypes.c_double
    gemm = _cublas().cublasSgemm_v2 if a.dtype == np.float32 else _cublas().cublasDgemm_v2
    one, zero = scalar(1.0), scalar(0.0)
    handle = ctypes.c_void_p(xp.cuda.device.get_cublas_handle())
    _check(gemm(handle, op_b, op_a, n, m, k, ctypes.byref(one), ctypes.c_void_p(b.data.ptr), ldb,
                ctypes.c_void_p(a.data.ptr), lda, ctypes.byref(zero), ctypes.c_void_p(c.data.ptr), n),
           "cublasSgemm" if a.dtype == np.float32 else "cublasDgemm")
