"""How tinynet's GPU kernels are launched: CUDA C sources, compiled once per dtype, launched
through CuPy on a GPU and through the CPU emulator (:mod:`.emulate`) on the simulated device.

A kernel module is one :class:`CudaModule`: a string of CUDA C with ``extern "C" __global__``
kernels written against a scalar type ``T``. It is compiled once per dtype, with
``typedef float T;`` or ``typedef double T;`` and :data:`COMMON_PRELUDE` put in front, so one
source serves float32 and float64.

* On a GPU (the arguments are ``cupy.ndarray``) the source goes to ``cupy.RawModule`` (NVRTC),
  once per (module, dtype); each kernel's function is cached, and a launch is a dict lookup and
  CuPy's own launch on its current stream (issue 14 puts CuPy's launch at 10-20 us of host time,
  against 100-200 us for a ``numba.cuda`` launch, whose argument packing is the known cost).
* On the simulated device (the arguments are ``tinynet.sim.SimArray``) the *same source* is
  compiled for the CPU by the system C++ compiler and run thread by thread, so the tests check
  the numbers of the very code a GPU runs (see :mod:`.emulate`).

A launch passes its arguments as a tuple, exactly as CuPy takes them. CuPy turns a Python int
into a 64-bit integer and a Python float into a double whatever the kernel declares, so a GPU
would misread ``5`` passed for an ``int`` or ``0.1`` passed for a ``float``: scalars must be
NumPy scalars of the parameter's exact width (``np.int32`` for ``int``, ``np.int64`` for
``long long``, ``T``'s dtype for ``T``). Every emulated launch checks each argument against the
kernel's C parameter list, and the geometry against a GPU's limits, and raises
:class:`LaunchError` naming the module, kernel, parameter and types; on a GPU the same check
runs on the first launch of each kernel and dtype, and on every launch when
``TINYNET_CHECK_LAUNCHES=1`` (tens of microseconds of Python per launch: off by default).

Geometry helpers for the launchers: elementwise kernels run ``THREADS`` threads per block and
``blocks_for(count)`` blocks, at most ``MAX_BLOCKS``: the kernels loop with a grid stride
(``GRID_STRIDE_LOOP``), so a capped grid still covers everything.
"""
from __future__ import annotations

import os
import re
import sys

import numpy as np

__all__ = ["THREADS", "REDUCE_THREADS", "reduce_threads_for", "MAX_BLOCKS", "MAX_THREADS_PER_BLOCK", "MAX_SHARED_MEMORY",
           "COMMON_PRELUDE", "CudaModule", "LaunchError", "Param", "Kernel", "parse_kernels", "blocks_for",
           "registered_modules"]

THREADS = 256          # threads per block of the elementwise kernels
REDUCE_THREADS = 256   # threads per block of the block reductions: a power of two
MAX_BLOCKS = 4096      # enough to fill any current GPU several times over
MAX_THREADS_PER_BLOCK = 1024
MAX_SHARED_MEMORY = 48 * 1024   # bytes of shared memory a block may use without opting in
_MAX_BLOCK_DIMS = (1024, 1024, 64)
_MAX_GRID_DIMS = (2 ** 31 - 1, 65535, 65535)

# Put in front of every source, after the ``typedef`` of T. NVRTC has no standard headers, so
# this uses only the language itself.
COMMON_PRELUDE = r"""
// One thread per element, any grid size: thread t handles t, t + (threads in the grid), ...
// 64-bit indices, so that arrays of more than 2^31 elements work.
#define GRID_STRIDE_LOOP(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n); \
         i += (long long)blockDim.x * gridDim.x)
// Infinity and NaN as floats (NVRTC has no <cmath>, so no INFINITY or NAN): (T)TN_INFINITY,
// (T)TN_NAN in either precision.
#define TN_INFINITY (__int_as_float(0x7f800000))
#define TN_NAN (__int_as_float(0x7fc00000))
"""

_CHECK_ON_GPU = os.environ.get("TINYNET_CHECK_LAUNCHES", "").strip().lower() not in ("", "0", "false", "no")


class LaunchError(ValueError):
    """A kernel launch that a GPU would refuse or misread: an argument that does not match the
    kernel's C parameter, or a grid, block or shared-memory size beyond a GPU's limits."""


def reduce_threads_for(count: int) -> int:
    """Threads for a block that reduces ``count`` items (a kernel striding by ``blockDim.x`` and
    summing with ``block_sum``): the power of two that covers ``count``, from one warp (32) up to
    ``REDUCE_THREADS``. Fewer idle threads when the work is small (a deep layer's 2x2 channels),
    which also keeps the CPU emulator, which runs every thread, fast on the tests' small shapes."""
    threads = 32
    while threads < min(int(count), REDUCE_THREADS):
        threads *= 2
    return threads


def blocks_for(count: int, threads: int = THREADS) -> int:
    """Blocks of ``threads`` threads for ``count`` work items: one item per thread, at least one
    block, at most ``MAX_BLOCKS`` (the grid-stride loops cover the rest)."""
    return max(1, min(MAX_BLOCKS, -(-int(count) // threads)))


# ------------------------------------------------------------------------ parameter lists
# C scalar types and the NumPy dtype of the same width (LP64: long is 64-bit, as on Linux). NVRTC
# has no <cstdint>, so int32_t and friends are not here.
_C_TYPES = {
    "float": np.float32, "double": np.float64, "bool": np.bool_,
    "char": np.int8, "signed char": np.int8, "unsigned char": np.uint8,
    "short": np.int16, "unsigned short": np.uint16,
    "int": np.int32, "signed int": np.int32, "unsigned": np.uint32, "unsigned int": np.uint32,
    "long": np.int64, "unsigned long": np.uint64, "long long": np.int64, "long long int": np.int64,
    "unsigned long long": np.uint64, "unsigned long long int": np.uint64, "size_t": np.uint64, "ptrdiff_t": np.int64,
}
_QUALIFIERS = {"const", "volatile", "__restrict__", "__restrict", "restrict"}


class Param:
    """One C parameter of a kernel: ``ctype`` as declared (without qualifiers), its base type,
    and whether it is a pointer."""

    __slots__ = ("name", "ctype", "base", "pointer")

    def __init__(self, name: str, ctype: str, base: str, pointer: bool):
        self.name, self.ctype, self.base, self.pointer = name, ctype, base, pointer

    def dtype(self, scalar_type):
        """The NumPy dtype this parameter holds (of the pointee for a pointer; ``T`` is the
        module's scalar type); None for ``void*``, which takes any array."""
        if self.base == "T":
            return np.dtype(scalar_type)
        return None if self.base == "void" else np.dtype(_C_TYPES[self.base])

    def __repr__(self) -> str:
        return f"Param({self.ctype} {self.name})"


class Kernel:
    """A ``__global__`` function of a source: its name, parameters, body (comments removed),
    whether it waits at barriers (``__syncthreads``, directly or through a device function),
    and its ``__shared__`` declarations (text, for the emulator)."""

    __slots__ = ("name", "params", "body", "uses_barrier", "shared")

    def __init__(self, name, params, body, uses_barrier, shared):
        self.name, self.params, self.body, self.uses_barrier, self.shared = name, params, body, uses_barrier, shared


def strip_comments(source: str) -> str:
    """``source`` without ``//`` and ``/* */`` comments; newlines kept, so line numbers hold."""
    def blank(match):
        return re.sub(r"[^\n]", " ", match.group(0))
    return re.sub(r"//[^\n]*|/\*.*?\*/", blank, source, flags=re.S)


def _matching_brace(text: str, start: int) -> int:
    """Index just past the ``}`` that closes the ``{`` at ``start``."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError("unbalanced braces")


_FUNCTION = re.compile(r"(__global__|__device__)(?:[^;{}()]|__launch_bounds__\s*\([^)]*\))*?\b(\w+)\s*\(([^)]*)\)\s*\{")
_BARRIER = re.compile(r"\b__syncthreads\b")
_SHARED_DECL = re.compile(r"(?<!extern)\s__shared__\s+([^;]+);")


def _parse_param(module: str, kernel: str, text: str) -> Param:
    words = re.findall(r"\w+|\*|&|\[|\]", text)
    if not words or "&" in words or "[" in words:
        raise ValueError(f"CudaModule {module!r}: kernel {kernel}: cannot read the parameter {text.strip()!r}")
    name = words[-1]
    pointers = words.count("*")
    base = " ".join(w for w in words[:-1] if w not in _QUALIFIERS and w != "*")
    if pointers > 1 or (base != "T" and base != "void" and base not in _C_TYPES) or (base == "void" and not pointers):
        raise ValueError(f"CudaModule {module!r}: kernel {kernel}: parameter {text.strip()!r} has a type "
                         f"tinynet cannot check (use T, one of {sorted(_C_TYPES)}, or a pointer to one of "
                         "them or to void)")
    ctype = f"{'const ' if 'const' in words else ''}{base}{'*' if pointers else ''}"
    return Param(name, ctype, base, bool(pointers))


def parse_kernels(module: str, source: str) -> dict:
    """The ``__global__`` kernels of ``source``, by name, with their parameter lists."""
    text = strip_comments(source)
    functions = []  # (kind, name, params text, body)
    for match in _FUNCTION.finditer(text):
        end = _matching_brace(text, match.end() - 1)
        functions.append((match.group(1), match.group(2), match.group(3), text[match.end() - 1:end]))
    # Device functions that wait at a barrier, directly or through another device function.
    waiting = {name for kind, name, _, body in functions if kind == "__device__" and _BARRIER.search(body)}
    changed = True
    while changed:
        changed = False
        for kind, name, _, body in functions:
            if kind == "__device__" and name not in waiting and any(re.search(rf"\b{w}\s*\(", body) for w in waiting):
                waiting.add(name)
                changed = True
    # A barrier inside a macro may be anywhere: then every kernel waits at barriers.
    macro_barrier = any(_BARRIER.search(line) for line in text.splitlines() if line.lstrip().startswith("#"))
    kernels = {}
    for kind, name, params_text, body in functions:
        if kind != "__global__":
            continue
        params = [] if params_text.strip() in ("", "void") else \
            [_parse_param(module, name, p) for p in params_text.split(",")]
        barrier = macro_barrier or bool(_BARRIER.search(body)) or any(re.search(rf"\b{w}\s*\(", body) for w in waiting)
        kernels[name] = Kernel(name, params, body, barrier, _SHARED_DECL.findall(body))
    if not kernels:
        raise ValueError(f"CudaModule {module!r}: no __global__ kernel found in its source")
    return kernels


# ---------------------------------------------------------------------------- the module
_registry: dict = {}


def registered_modules() -> dict:
    """Every :class:`CudaModule` made so far, by name (the tests compile each with NVRTC)."""
    return dict(_registry)


def _dim3(value, what: str, limits, module: str, kernel: str):
    dims = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in dims):
        raise LaunchError(f"{module}.{kernel}: {what} must be an int or a tuple of 1-3 ints, got {value!r}")
    dims = tuple(int(d) for d in dims) + (1,) * (3 - len(dims))
    for axis, (d, limit) in enumerate(zip(dims, limits)):
        if not 1 <= d <= limit:
            raise LaunchError(f"{module}.{kernel}: {what} size {d} along {'xyz'[axis]} is outside a GPU's range "
                              f"1..{limit}")
    return dims


def _given(value) -> str:
    """How a rejected argument is described: its type and, for arrays, dtype and layout."""
    if hasattr(value, "dtype") and hasattr(value, "shape") and not isinstance(value, np.generic):
        return f"{type(value).__module__}.{type(value).__name__} of {value.dtype}"
    if isinstance(value, np.generic):
        return f"a numpy.{type(value).__name__} scalar"
    return f"a Python {type(value).__name__}" if type(value) in (int, float, bool) else type(value).__name__


class CudaModule:
    """A CUDA C source of ``extern "C" __global__`` kernels written against a scalar type ``T``,
    compiled once per dtype (float32 -> ``typedef float T;``, float64 -> ``typedef double T;``
    put in front, with :data:`COMMON_PRELUDE`). Made once at import of a kernel module, and
    registered by ``name`` (see :func:`registered_modules`); ``register=False`` keeps a
    throw-away module (a test's) out of the registry."""

    def __init__(self, name: str, source: str, register: bool = True):
        if register and name in _registry:
            raise ValueError(f"CudaModule {name!r} exists already: module names must be unique")
        self.name, self.source = name, source
        self.kernels = parse_kernels(name, source)
        self._functions: dict = {}   # (kernel, dtype) -> CuPy function
        self._modules: dict = {}     # dtype -> cupy.RawModule
        self._emulated: dict = {}    # dtype -> emulate.EmulatedModule
        if register:
            _registry[name] = self

    def source_for(self, dtype) -> str:
        """The full text compiled for ``dtype`` (float32 or float64)."""
        dtype = np.dtype(dtype)
        if dtype == np.float32:
            scalar = "float"
        elif dtype == np.float64:
            scalar = "double"
        else:
            raise TypeError(f"CudaModule {self.name!r}: kernels are compiled for float32 or float64, not {dtype}")
        return f"typedef {scalar} T;\n{COMMON_PRELUDE}\n#line 1 \"{self.name}.cu\"\n{self.source}"

    # ---------------------------------------------------------------------------- launching
    def launch(self, kernel: str, dtype, grid, block, args: tuple, shared_mem: int = 0) -> None:
        """Launch ``kernel`` (compiled for ``dtype``) on a ``grid`` of blocks of ``block``
        threads (ints or tuples of up to three), with ``args`` matching its C parameters and
        ``shared_mem`` bytes of dynamic shared memory. Asynchronous on a GPU (CuPy's current
        stream); on the simulated device it has finished when this returns."""
        # CuPy's launch takes grid and block as tuples only (an int is a TypeError there).
        if type(grid) is not tuple:
            grid = tuple(grid) if isinstance(grid, list) else (grid,)
        if type(block) is not tuple:
            block = tuple(block) if isinstance(block, list) else (block,)
        function = self._functions.get((kernel, dtype))
        if function is not None and not _CHECK_ON_GPU:   # the hot path: a cached CuPy function
            try:
                function(grid, block, args, shared_mem=shared_mem)
                return
            except TypeError:  # CuPy refused the arguments before launching: maybe simulated arrays
                sim = sys.modules.get("tinynet.sim")
                if sim is None or not any(type(a) is sim.SimArray for a in args):
                    raise
        for value in args:
            if hasattr(value, "shape") and not isinstance(value, np.generic):
                break
        else:
            raise LaunchError(f"{self.name}.{kernel}: no array among the arguments, so no device to launch on")
        cupy = sys.modules.get("cupy")
        if cupy is not None and type(value) is cupy.ndarray:
            self.check(kernel, dtype, grid, block, args, shared_mem, cupy.ndarray, static_shared=0)
            self._cupy_function(kernel, dtype)(grid, block, args, shared_mem=shared_mem)
            return
        sim = sys.modules.get("tinynet.sim")
        if sim is not None and type(value) is sim.SimArray:
            self._emulate(kernel, dtype, grid, block, args, shared_mem, sim)
            return
        raise LaunchError(f"{self.name}.{kernel}: arguments must be CuPy arrays or simulated CUDA arrays, "
                          f"got {_given(value)}")

    def _cupy_function(self, kernel: str, dtype):
        if kernel not in self.kernels:
            raise LaunchError(f"{self.name}: no kernel {kernel!r} (it has {', '.join(self.kernels)})")
        key = np.dtype(dtype)
        if key not in self._modules:
            import cupy
            self._modules[key] = cupy.RawModule(code=self.source_for(key), options=("--std=c++14",))
        function = self._functions[kernel, dtype] = self._modules[key].get_function(kernel)
        return function

    def _emulate(self, kernel, dtype, grid, block, args, shared_mem, sim) -> None:
        from . import emulate
        key = np.dtype(dtype)
        module = self._emulated.get(key)
        if module is None:
            module = self._emulated[key] = emulate.EmulatedModule(self, key)
        if kernel not in self.kernels:
            raise LaunchError(f"{self.name}: no kernel {kernel!r} (it has {', '.join(self.kernels)})")
        grid, block = self.check(kernel, key, grid, block, args, shared_mem, sim.SimArray,
                                 static_shared=module.static_shared(kernel))
        sim.stats._launch(f"{self.name}.{kernel}")
        sim.capture_kernel(lambda: module.run(kernel, grid, block, args, shared_mem))  # recorded while capturing

    def check(self, kernel: str, dtype, grid, block, args, shared_mem, array_type, static_shared: int = 0):
        """Raise :class:`LaunchError` unless ``args`` match ``kernel``'s C parameters (arrays of
        ``array_type`` with the pointee's dtype, C-contiguous; NumPy scalars of the exact width)
        and the geometry fits a GPU. Returns ``(grid, block)`` as 3-tuples."""
        if kernel not in self.kernels:
            raise LaunchError(f"{self.name}: no kernel {kernel!r} (it has {', '.join(self.kernels)})")
        where = f"{self.name}.{kernel}"
        params = self.kernels[kernel].params
        if len(args) != len(params):
            raise LaunchError(f"{where}: takes {len(params)} arguments "
                              f"({', '.join(f'{p.ctype} {p.name}' for p in params)}), got {len(args)}")
        for i, (param, value) in enumerate(zip(params, args)):
            expected = param.dtype(dtype)
            what = f"{where}: argument {i} ({param.ctype} {param.name})"
            if param.pointer:
                if type(value) is not array_type:
                    raise LaunchError(f"{what} must be a {array_type.__module__}.{array_type.__name__}"
                                      f"{'' if expected is None else f' of {expected}'}, got {_given(value)}")
                if expected is not None and value.dtype != expected:
                    raise LaunchError(f"{what} must be an array of {expected}, got {_given(value)}")
                if not value.flags.c_contiguous:
                    raise LaunchError(f"{what} must be C-contiguous (the kernel indexes it as a flat "
                                      f"{param.base} buffer), got a non-contiguous view of shape {value.shape}")
            elif not isinstance(value, np.generic) or value.dtype != expected:
                raise LaunchError(f"{what} must be a numpy.{expected.type.__name__} scalar (the C type's exact "
                                  f"width), got {_given(value)}")
        grid = _dim3(grid, "grid", _MAX_GRID_DIMS, self.name, kernel)
        block = _dim3(block, "block", _MAX_BLOCK_DIMS, self.name, kernel)
        threads = block[0] * block[1] * block[2]
        if threads > MAX_THREADS_PER_BLOCK:
            raise LaunchError(f"{where}: {threads} threads per block {block}; a GPU runs at most "
                              f"{MAX_THREADS_PER_BLOCK}")
        if not isinstance(shared_mem, (int, np.integer)) or shared_mem < 0:
            raise LaunchError(f"{where}: shared_mem must be a non-negative int of bytes, got {shared_mem!r}")
        if static_shared + shared_mem > MAX_SHARED_MEMORY:
            raise LaunchError(f"{where}: {static_shared} bytes of static and {int(shared_mem)} of dynamic shared "
                              f"memory per block; a block may use at most {MAX_SHARED_MEMORY}")
        return grid, block

    def __repr__(self) -> str:
        return f"CudaModule({self.name!r}, kernels={list(self.kernels)})"
