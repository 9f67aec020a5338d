"""Every matrix product of tinynet's ops: ``matmul(xp, a, b)``, NumPy's ``matmul`` semantics
(1-D operands, broadcast batch dims), one function for all devices, capturable into a CUDA graph.

* CPU: ``numpy.matmul`` (BLAS), except products with a tiny side and a long one (a small
  convolution's), which run as compiled loops over numba's threads
  (:mod:`tinynet.kernels.narrow_matmul`: OpenBLAS neither runs them fast nor splits them).
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

``matmul_bias`` and ``matmul_bias_grad`` are a Linear layer's products with its bias inside
them: on a GPU cuBLASLt's epilogues add the bias in the forward GEMM and sum its gradient in the
weight-gradient GEMM (see the section below: a binding that checks itself before first use).
"""
from __future__ import annotations

import ctypes
import sys

import numpy as np

from . import narrow_matmul

__all__ = ["matmul", "matmul_bias", "matmul_bias_grad", "prepare_capture"]

_CUBLAS_OP_N, _CUBLAS_OP_T = 0, 1
_WORKSPACE_BYTES = 32 * 1024 * 1024   # what cuBLAS asks for on Hopper; less is enough elsewhere
_workspaces: dict = {}                # device id -> workspace memory: set on the shared handle, kept forever
_lib = None


def matmul(xp, a, b, out=None):
    """``a @ b`` (NumPy's ``matmul``) on ``a``'s device, into ``out`` if given; see the module
    docstring for which library computes it. ``xp`` is the array module of ``a`` and ``b``."""
    if xp is np:
        kernel = narrow_matmul.choose(a, b, out)
        if kernel is not None:
            return getattr(narrow_matmul, kernel)(a, b, out)
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
        _lib = _load_library("cublas", "matmul during CUDA graph capture: libcublas")
    return _lib


def _load_library(name: str, what: str):
    """The NVIDIA library ``name`` (``cublas``, ``cublasLt``) by ctypes: where CuPy 14 finds its
    CUDA libraries (``cuda.pathfinder``), else by the usual file names (CuPy 13, a system CUDA);
    a RuntimeError naming ``what`` and every path tried when none loads."""
    paths = []
    try:
        from cuda import pathfinder
        found = pathfinder.load_nvidia_dynamic_lib(name).abs_path
        if found:
            paths.append(found)
    except Exception:
        pass
    paths += [f"lib{name}.so.13", f"lib{name}.so.12", f"lib{name}.so.11", f"lib{name}.so"]
    for path in paths:
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    raise RuntimeError(f"{what} could not be loaded (tried {', '.join(paths)})")


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


# ----------------------------------------------------- the bias inside the GEMM: cuBLASLt epilogues
# A Linear layer's bias costs two launches of its own on a GPU: the add after the forward GEMM,
# and the sum of the output gradient over the rows in backward. cuBLASLt does both inside a GEMM,
# as PyTorch does: the forward GEMM's epilogue adds the bias as it writes the output
# (CUBLASLT_EPILOGUE_BIAS), and the weight-gradient GEMM dW = dy^T @ x, whose reduction already
# runs over the rows, also sums dy over them into the bias gradient (CUBLASLT_EPILOGUE_BGRADB).
#
# Row-major C = a @ b is cuBLAS's column-major C^T = b^T @ a^T: cuBLASLt's "A" is b and its "B"
# is a, and its D is C^T, (n x m). The forward bias (n,) is then one value per row of D, which
# is what EPILOGUE_BIAS adds; the bias gradient a.sum(axis=1) (m,) is one value per column of
# D, summed over the GEMM's k, which is what EPILOGUE_BGRADB writes.
#
# This binding was written without a GPU to run it on: before its first use on a (device,
# dtype) it checks itself against the plain path (a GEMM, then the add or the sum) on a small
# problem, and if anything fails (the library, an algorithm, the numbers) it warns once, naming
# why, and that (device, dtype) keeps the plain path. The simulated device models it as one
# GEMM (``tinynet.sim.cublaslt_gemm``), so the plumbing and the launch counts are tested on CPUs.
_EPILOGUE_BIAS, _EPILOGUE_BGRADB = 4, 512                      # cublasLtEpilogue_t
_DESC_TRANSA, _DESC_TRANSB, _DESC_EPILOGUE, _DESC_BIAS_POINTER = 3, 4, 7, 8   # cublasLtMatmulDescAttributes_t
_PREF_MAX_WORKSPACE_BYTES = 1                                   # cublasLtMatmulPreferenceAttributes_t
_CUDA_TYPES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1}   # CUDA_R_32F, CUDA_R_64F
_COMPUTE_32F, _COMPUTE_32F_FAST_TF32, _COMPUTE_64F = 68, 77, 70    # cublasComputeType_t
_LT_WORKSPACE_BYTES = 4 * 1024 * 1024
_epilogue_ok: dict = {}        # (device, dtype) -> whether the self-check passed
_lt_state: dict = {}           # device id -> (handle, workspace)
_lt_plans: dict = {}           # problem key -> (descriptor, layouts, algorithm): made once per shape
_lt_lib = None


def matmul_bias(xp, a, b, bias):
    """``a @ b + bias`` for 2-D ``a`` (m, k), ``b`` (k, n) and ``bias`` (n,): on a GPU whose
    cuBLASLt passed its check, one GEMM that adds the bias as it writes (see above); else
    :func:`matmul`, then the add."""
    if _use_epilogue(xp, a, b, bias):
        out = xp.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
        try:
            _epilogue_gemm(xp, _EPILOGUE_BIAS, a, b, bias, out)
            return out
        except _NoPlan:  # cuBLASLt has no algorithm for this shape: the plain path below
            pass
    return matmul(xp, a, b) + bias


def matmul_bias_grad(xp, a, b, out=None, bias_out=None):
    """``(a @ b, a.sum(axis=1))`` for 2-D ``a`` (m, k) and ``b`` (k, n): a Linear layer's weight
    and bias gradients, with ``a`` = dy^T and ``b`` = x. On a GPU whose cuBLASLt passed its
    check, one GEMM that also sums ``a``'s rows (see above); else :func:`matmul` and a sum.
    ``out``, ``bias_out``: optional C-contiguous buffers (a leaf's reserved ``.grad``)."""
    m, n = a.shape[0], b.shape[1]
    out = out if out is not None and out.shape == (m, n) and out.flags.c_contiguous else None
    bias_out = bias_out if bias_out is not None and bias_out.shape == (m,) else None
    if _use_epilogue(xp, a, b, None) and _aligned(out, bias_out):
        out = xp.empty((m, n), dtype=a.dtype) if out is None else out
        bias_out = xp.empty((m,), dtype=a.dtype) if bias_out is None else bias_out
        try:
            _epilogue_gemm(xp, _EPILOGUE_BGRADB, a, b, bias_out, out)
            return out, bias_out
        except _NoPlan:  # cuBLASLt has no algorithm for this shape: the plain path below
            pass
    return matmul(xp, a, b, out=out), a.sum(axis=1)


def _use_epilogue(xp, a, b, bias) -> bool:
    """Whether this product takes the epilogue path: a GPU (or the simulated one), float32 or
    float64 operands of one dtype, and a (device, dtype) whose check passed (made now if not
    yet, except while a stream captures: a check waits for the device)."""
    if xp is np or a.dtype != b.dtype or a.dtype not in _CUDA_TYPES or (bias is not None and bias.dtype != a.dtype):
        return False
    if 0 in a.shape or 0 in b.shape:
        return False
    if not _aligned(a, b, bias):
        return False
    key = (a.device.id, a.dtype)
    ok = _epilogue_ok.get(key)
    if ok is None:
        if xp.cuda.get_current_stream().is_capturing():
            return False
        ok = _epilogue_ok[key] = _check_epilogues(xp, a.dtype)
    return ok


def _aligned(*arrays) -> bool:
    """Whether every GPU array (None and simulated ones pass) starts on a 256-byte boundary:
    cuBLASLt's heuristics pick algorithms that may assume it unless told otherwise (CuPy's
    allocations are aligned so; a view may not be, and then the plain path runs)."""
    sim = sys.modules.get("tinynet.sim")
    return all(x is None or (sim is not None and type(x) is sim.SimArray) or x.data.ptr % 256 == 0 for x in arrays)


def _check_epilogues(xp, dtype) -> bool:
    """Run both epilogues once on a small problem and compare with the plain path; warn and
    return False on any failure."""
    import warnings
    rng = np.random.default_rng(0)   # (not tinynet's generators: checking must not change a seeded run)
    a, b, bias = (xp.asarray(rng.standard_normal(shape).astype(dtype)) for shape in ((37, 19), (19, 11), (11,)))
    try:
        y = xp.empty((37, 11), dtype=dtype)
        _epilogue_gemm(xp, _EPILOGUE_BIAS, a, b, bias, y)
        grad_w, grad_b = xp.empty((11, 19), dtype=dtype), xp.empty((11,), dtype=dtype)
        _epilogue_gemm(xp, _EPILOGUE_BGRADB, y.T, a, grad_b, grad_w)
        want_y = matmul(xp, a, b) + bias
        got = [xp.asnumpy(v) for v in (y, grad_w, grad_b)]
        want = [xp.asnumpy(v) for v in (want_y, matmul(xp, want_y.T, a), want_y.sum(axis=0))]
    except Exception as error:  # the library, a symbol, a status, no algorithm: all mean "not here"
        reason = f"{type(error).__name__}: {error}"
    else:
        tolerance = 1e-2 if dtype == np.float32 else 1e-10   # (float32 may run as TF32)
        bad = [name for name, g, w in zip(("forward with bias", "weight gradient", "bias gradient"), got, want)
               if not np.allclose(g, w, rtol=tolerance, atol=tolerance)]
        if not bad:
            return True
        reason = "its results differ from the plain path's (" + ", ".join(bad) + ")"
    warnings.warn(f"linear: cuBLASLt's bias epilogues are not used for {np.dtype(dtype).name} on this GPU ({reason}); "
                  "the bias add and its gradient's sum stay separate kernels", RuntimeWarning, stacklevel=4)
    return False


class _NoPlan(RuntimeError):
    """cuBLASLt could not plan this product (no algorithm for its shape and epilogue): the caller
    takes the plain path. The check at first use covers one shape; others may differ."""


def _epilogue_gemm(xp, epilogue: int, a, b, bias, out) -> None:
    """``out = a @ b`` (C-contiguous ``out``) with ``epilogue``: EPILOGUE_BIAS adds ``bias``
    (n,) to every row of ``out``; EPILOGUE_BGRADB writes ``a.sum(axis=1)`` into ``bias``."""
    sim = sys.modules.get("tinynet.sim")
    if sim is not None and type(a) is sim.SimArray:
        sim.cublaslt_gemm(a, b, bias, out, "bias" if epilogue == _EPILOGUE_BIAS else "bias_grad")
        return
    _cublaslt_matmul(xp, epilogue, a, b, bias, out)


def _cublaslt_matmul(xp, epilogue: int, a, b, bias, out) -> None:
    """:func:`_epilogue_gemm` through libcublasLt (ctypes): one ``cublasLtMatmul`` call, with
    the descriptor, layouts and algorithm of its shape made on the first call."""
    lib = _cublaslt()
    (m, k), n = a.shape, b.shape[1]
    a, op_a, lda = _column_major(xp, a)
    b, op_b, ldb = _column_major(xp, b)
    device = a.device.id
    handle, workspace = _lt_handle(xp, device)
    from .. import backends
    key = (device, a.dtype, epilogue, m, n, k, op_a, lda, op_b, ldb, a.dtype == np.float32 and backends.allow_tf32)
    plan = _lt_plans.get(key)
    if plan is None:
        try:
            plan = _lt_plan(lib, handle, a.dtype, epilogue, m, n, k, op_a, lda, op_b, ldb, key[-1])
        except RuntimeError as error:  # a shape the self-check did not cover: remembered, then the plain path
            plan = error
        _lt_plans[key] = plan
    if isinstance(plan, RuntimeError):
        raise _NoPlan(str(plan))
    desc, layout_a, layout_b, layout_d, algo = plan
    pointer = ctypes.c_void_p(bias.data.ptr)
    _lt_check(lib.cublasLtMatmulDescSetAttribute(desc, _DESC_BIAS_POINTER, ctypes.byref(pointer),
                                                 ctypes.sizeof(pointer)), "cublasLtMatmulDescSetAttribute(bias)")
    scalar = ctypes.c_float if a.dtype == np.float32 else ctypes.c_double
    one, zero = scalar(1.0), scalar(0.0)
    d = ctypes.c_void_p(out.data.ptr)
    # cuBLASLt's A is b, its B is a (see above); C = D, with beta 0.
    _lt_check(lib.cublasLtMatmul(handle, desc, ctypes.byref(one), ctypes.c_void_p(b.data.ptr), layout_b,
                                 ctypes.c_void_p(a.data.ptr), layout_a, ctypes.byref(zero), d, layout_d, d, layout_d,
                                 ctypes.byref(algo), ctypes.c_void_p(workspace.ptr), _LT_WORKSPACE_BYTES,
                                 ctypes.c_void_p(xp.cuda.get_current_stream().ptr)), "cublasLtMatmul")


class _HeuristicResult(ctypes.Structure):
    """cublasLtMatmulHeuristicResult_t."""
    _fields_ = [("algo", ctypes.c_uint64 * 8), ("workspaceSize", ctypes.c_size_t), ("state", ctypes.c_int),
                ("wavesCount", ctypes.c_float), ("reserved", ctypes.c_int * 4)]


def _lt_plan(lib, handle, dtype, epilogue, m, n, k, op_a, lda, op_b, ldb, tf32):
    """The descriptor, the three matrix layouts and the algorithm of one problem shape."""
    cuda_type = _CUDA_TYPES[np.dtype(dtype)]
    compute = _COMPUTE_64F if dtype == np.float64 else _COMPUTE_32F_FAST_TF32 if tf32 else _COMPUTE_32F
    desc = ctypes.c_void_p()
    _lt_check(lib.cublasLtMatmulDescCreate(ctypes.byref(desc), compute, cuda_type), "cublasLtMatmulDescCreate")
    for attribute, value in ((_DESC_TRANSA, op_b), (_DESC_TRANSB, op_a), (_DESC_EPILOGUE, epilogue)):
        value = ctypes.c_int32(value) if attribute != _DESC_EPILOGUE else ctypes.c_uint32(value)
        _lt_check(lib.cublasLtMatmulDescSetAttribute(desc, attribute, ctypes.byref(value), ctypes.sizeof(value)),
                  "cublasLtMatmulDescSetAttribute")

    def layout(rows, cols, ld):
        made = ctypes.c_void_p()
        _lt_check(lib.cublasLtMatrixLayoutCreate(ctypes.byref(made), cuda_type, rows, cols, ld),
                  "cublasLtMatrixLayoutCreate")
        return made
    # Column-major as stored: op N reads the row-major (r, c) matrix as its (c x r) transpose.
    layout_b = layout(n, k, ldb) if op_b == _CUBLAS_OP_N else layout(k, n, ldb)   # cuBLASLt's A: b^T, (n x k)
    layout_a = layout(k, m, lda) if op_a == _CUBLAS_OP_N else layout(m, k, lda)   # cuBLASLt's B: a^T, (k x m)
    layout_d = layout(n, m, n)
    preference = ctypes.c_void_p()
    _lt_check(lib.cublasLtMatmulPreferenceCreate(ctypes.byref(preference)), "cublasLtMatmulPreferenceCreate")
    size = ctypes.c_uint64(_LT_WORKSPACE_BYTES)
    _lt_check(lib.cublasLtMatmulPreferenceSetAttribute(preference, _PREF_MAX_WORKSPACE_BYTES, ctypes.byref(size),
                                                       ctypes.sizeof(size)), "cublasLtMatmulPreferenceSetAttribute")
    result, found = _HeuristicResult(), ctypes.c_int(0)
    _lt_check(lib.cublasLtMatmulAlgoGetHeuristic(handle, desc, layout_b, layout_a, layout_d, layout_d, preference, 1,
                                                 ctypes.byref(result), ctypes.byref(found)),
              "cublasLtMatmulAlgoGetHeuristic")
    lib.cublasLtMatmulPreferenceDestroy(preference)
    if found.value < 1:
        raise RuntimeError(f"cuBLASLt has no algorithm for epilogue {epilogue} on a ({m}, {k}) @ ({k}, {n}) product")
    algo = (ctypes.c_uint64 * 8)(*result.algo)
    return desc, layout_a, layout_b, layout_d, algo


def _lt_handle(xp, device: int):
    """This device's cuBLASLt handle and workspace, made once."""
    state = _lt_state.get(device)
    if state is None:
        handle = ctypes.c_void_p()
        _lt_check(_cublaslt().cublasLtCreate(ctypes.byref(handle)), "cublasLtCreate")
        state = _lt_state[device] = (handle, xp.cuda.alloc(_LT_WORKSPACE_BYTES))
    return state


def _lt_check(status: int, call: str) -> None:
    if status != 0:
        raise RuntimeError(f"{call} failed with cuBLAS status {status}")


def _cublaslt():
    """libcublasLt, loaded by ctypes, with the argument types of the functions used here."""
    global _lt_lib
    if _lt_lib is None:
        lib = _load_library("cublasLt", "libcublasLt")
        p, i32, u64, i64, size = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_int64, ctypes.c_size_t
        signatures = {
            "cublasLtCreate": [p],
            "cublasLtMatmulDescCreate": [p, i32, i32],
            "cublasLtMatmulDescSetAttribute": [p, i32, p, size],
            "cublasLtMatrixLayoutCreate": [p, i32, u64, u64, i64],
            "cublasLtMatmulPreferenceCreate": [p],
            "cublasLtMatmulPreferenceSetAttribute": [p, i32, p, size],
            "cublasLtMatmulPreferenceDestroy": [p],
            "cublasLtMatmulAlgoGetHeuristic": [p, p, p, p, p, p, p, i32, p, p],
            "cublasLtMatmul": [p, p, p, p, p, p, p, p, p, p, p, p, p, p, size, p],
        }
        for name, argtypes in signatures.items():
            function = getattr(lib, name)
            function.argtypes, function.restype = argtypes, ctypes.c_int
        _lt_lib = lib
    return _lt_lib
