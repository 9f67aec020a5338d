"""Run a CUDA C kernel module on the CPU: the simulated device's kernels, and the tests' proof of
the GPU kernels' numbers without a GPU.

The kernel source is compiled *unchanged* by the system C++ compiler, after a prelude
(:data:`PRELUDE`) that gives it CUDA's vocabulary: ``threadIdx``/``blockIdx``/``blockDim``/
``gridDim``, ``__global__``/``__device__``/``__forceinline__``, ``__syncthreads``, ``atomicAdd``
and friends, ``__shared__`` memory, and CUDA's math functions (``expf``, ``rsqrtf``, ``min``...).
A generated wrapper per kernel runs the grid: every block in turn, and in a block every thread.

How the threads of a block run:

* A kernel that never waits at a barrier runs its threads one after the other, in thread order.
  Threads that never wait for each other may run in any order on a GPU, and this is one of them.
* A kernel that calls ``__syncthreads`` (directly or through a ``__device__`` function) runs each
  thread as a *fiber* (its own stack, started with ``makecontext``, then switched cooperatively
  with ``_setjmp``/``_longjmp``, which unlike ``swapcontext`` make no system call). A fiber runs until it
  reaches the barrier and hands over to the next; once every thread of the block waits there, all
  resume. That is exactly the barrier's guarantee. A block where some threads returned while others
  wait at a barrier is an error (undefined on a GPU: it hangs or goes wrong).
* ``__shared__`` arrays are one per block (static storage, since blocks run one at a time), and are
  filled with 0xFF bytes (NaN for floats, -1 for integers) at the start of every block: on a GPU
  shared memory starts with whatever the last block left, so a kernel that reads before writing
  shows up as NaN here. ``extern __shared__`` arrays are the launch's dynamic shared memory.
* Atomics are plain read-modify-writes: only one thread runs at any moment.
* Threads and blocks run first to last; under :func:`thread_order_check` every launch runs a
  second time last to first, and outputs that differ (a race) are an error. One order proves
  little about a kernel whose threads write where others read: two opposite orders expose it.

Not emulated (the module is refused with the reason): warp intrinsics (``__shfl*_sync``,
``__syncwarp``, votes), cooperative groups, textures.

Builds are cached: the shared library for a (source, dtype) is written once to
``~/.cache/tinynet/cuda-emulator`` (``$XDG_CACHE_HOME``), named by a hash of everything that went
into it, and built under a temporary name then renamed, so parallel test processes never load a
half-written file. Where no C++ compiler exists, :func:`available` is False and the simulated
device runs the NumPy reference kernels instead.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

import numpy as np

from .launch import strip_comments

__all__ = ["EmulatorError", "EmulatedModule", "available", "unavailable_reason", "thread_order_check", "PRELUDE"]


class EmulatorError(RuntimeError):
    """The emulator cannot build or run a kernel module (no compiler, an unsupported feature, a
    compile error, or a block whose threads diverged at a barrier)."""


PRELUDE = r"""
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <csetjmp>
#include <ucontext.h>
// NVRTC compiles without the C library's headers: hide their constants, so that a kernel that
// uses one fails here as it fails there. (Typedefs and std:: cannot be hidden; the NVRTC test
// is the check for those.)
#undef NAN
#undef INFINITY
#undef HUGE_VAL
#undef HUGE_VALF
#undef HUGE_VALL
#undef MAXFLOAT
#undef M_E
#undef M_LOG2E
#undef M_LOG10E
#undef M_LN2
#undef M_LN10
#undef M_PI
#undef M_PI_2
#undef M_PI_4
#undef M_1_PI
#undef M_2_PI
#undef M_2_SQRTPI
#undef M_SQRT2
#undef M_SQRT1_2
#undef INT8_MAX
#undef INT16_MAX
#undef INT32_MAX
#undef INT64_MAX
#undef UINT8_MAX
#undef UINT16_MAX
#undef UINT32_MAX
#undef UINT64_MAX
#undef SIZE_MAX
#undef EOF

#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

struct uint3 { unsigned int x, y, z; };
typedef uint3 dim3;
static uint3 threadIdx, blockIdx, blockDim, gridDim;
static const int warpSize = 32;

// CUDA's math library: the float overloads of <cmath>, and CUDA's own names.
using std::exp; using std::log; using std::sqrt; using std::fabs; using std::tanh; using std::erf;
using std::pow; using std::floor; using std::ceil; using std::fmax; using std::fmin; using std::log1p;
using std::expm1; using std::isnan; using std::isinf; using std::isfinite; using std::fma;
using std::copysign; using std::sin; using std::cos; using std::exp2; using std::log2; using std::round;
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
#define TN_MINMAX(type) \
    inline type min(type a, type b) { return b < a ? b : a; } \
    inline type max(type a, type b) { return a < b ? b : a; }
TN_MINMAX(int) TN_MINMAX(unsigned int) TN_MINMAX(long long) TN_MINMAX(unsigned long long)
TN_MINMAX(float) TN_MINMAX(double)
inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float f) { int v; std::memcpy(&v, &f, 4); return v; }
inline double __longlong_as_double(long long v) { double d; std::memcpy(&d, &v, 8); return d; }
inline long long __double_as_longlong(double d) { long long v; std::memcpy(&v, &d, 8); return v; }
template <class P> inline P __ldg(const P* p) { return *p; }
inline void __threadfence() {}
inline void __threadfence_block() {}

// Atomics: one thread runs at a time, so a plain read-modify-write is atomic.
template <class V, class U> inline V atomicAdd(V* p, U v) { V old = *p; *p = old + (V)v; return old; }
template <class V, class U> inline V atomicSub(V* p, U v) { V old = *p; *p = old - (V)v; return old; }
template <class V, class U> inline V atomicMax(V* p, U v) { V old = *p; if (old < (V)v) *p = (V)v; return old; }
template <class V, class U> inline V atomicMin(V* p, U v) { V old = *p; if ((V)v < old) *p = (V)v; return old; }
template <class V, class U> inline V atomicExch(V* p, U v) { V old = *p; *p = (V)v; return old; }
template <class V, class U, class W> inline V atomicCAS(V* p, U compare, W v) {
    V old = *p; if (old == (V)compare) *p = (V)v; return old; }

// Shared memory: registered on first use, refilled with 0xFF at the start of every block.
struct tn_region { void* p; size_t n; };
static tn_region tn_regions[256];
static int tn_nregions = 0;
static bool tn_register_shared(void* p, size_t n) {
    std::memset(p, 0xFF, n);
    if (tn_nregions < 256) tn_regions[tn_nregions++] = tn_region{p, n};
    return true;
}
alignas(16) static unsigned char tn_dynamic_shared[49152];
static size_t tn_dynamic_bytes = 0;
static void tn_poison_shared() {
    for (int i = 0; i < tn_nregions; ++i) std::memset(tn_regions[i].p, 0xFF, tn_regions[i].n);
    std::memset(tn_dynamic_shared, 0xFF, tn_dynamic_bytes);
}

// Fibers, for kernels that wait at __syncthreads.
// A fiber is started once with makecontext/swapcontext (its own stack); after that every switch,
// to the scheduler at a barrier and back, is an _setjmp/_longjmp pair: swapcontext also saves and
// restores the signal mask, a system call per switch, which made barrier kernels 3x slower.
struct tn_fiber { ucontext_t ctx; jmp_buf jump; uint3 tid; int state; int started; };
// state: 0 runnable, 1 at barrier, 2 done
static tn_fiber* tn_fibers = nullptr;
static char* tn_stacks = nullptr;
static unsigned tn_capacity = 0;
static const size_t tn_stack_bytes = 64 * 1024;   // per thread of a barrier kernel
static ucontext_t tn_scheduler;      // where a fiber is started from
static jmp_buf tn_scheduler_jump;    // where every switch back to the scheduler lands
static int tn_current = -1;
static void (*tn_body)(void*) = nullptr;
static void* tn_body_arg = nullptr;

static void tn_fiber_main() {
    tn_body(tn_body_arg);
    tn_fibers[tn_current].state = 2;
    _longjmp(tn_scheduler_jump, 1);   // never returns: this fiber's stack is not used again
}

static int tn_missed_barrier = 0;
inline void __syncthreads() {
    if (tn_current < 0) { tn_missed_barrier = 1; return; }   // run without fibers: reported as an error
    tn_fiber* self = &tn_fibers[tn_current];
    self->state = 1;
    if (!_setjmp(self->jump)) _longjmp(tn_scheduler_jump, 1);
}

// Thread (or block) number k of n in the order of this run: first to last, or last to first.
static int tn_reverse = 0;
static inline unsigned tn_order(unsigned k, unsigned n) { return tn_reverse ? n - 1 - k : k; }
static inline uint3 tn_coordinates(unsigned i, uint3 dims) {
    return uint3{i % dims.x, (i / dims.x) % dims.y, i / (dims.x * dims.y)};
}

static int tn_run_block_fibers(unsigned n) {
    for (unsigned i = 0; i < n; ++i) {
        tn_fiber* f = &tn_fibers[i];
        f->tid = tn_coordinates(i, blockDim);
        f->state = 0;
        f->started = 0;
        getcontext(&f->ctx);
        f->ctx.uc_stack.ss_sp = tn_stacks + (size_t)i * tn_stack_bytes;
        f->ctx.uc_stack.ss_size = tn_stack_bytes;
        f->ctx.uc_link = &tn_scheduler;
        makecontext(&f->ctx, tn_fiber_main, 0);
    }
    for (;;) {
        for (unsigned k = 0; k < n; ++k) {
            unsigned i = tn_order(k, n);
            if (tn_fibers[i].state != 0) continue;
            tn_current = (int)i;
            threadIdx = tn_fibers[i].tid;
            if (!_setjmp(tn_scheduler_jump)) {
                if (tn_fibers[i].started) _longjmp(tn_fibers[i].jump, 1);
                tn_fibers[i].started = 1;
                swapcontext(&tn_scheduler, &tn_fibers[i].ctx);
            }
        }
        tn_current = -1;
        unsigned done = 0;
        for (unsigned i = 0; i < n; ++i) done += tn_fibers[i].state == 2;
        if (done == n) return 0;
        if (done) return 1;   // some threads returned while others wait at a barrier
        for (unsigned i = 0; i < n; ++i) tn_fibers[i].state = 0;
    }
}

template <class F> static void tn_call(void* f) { (*(F*)f)(); }

template <class F> static int tn_run(const unsigned* g, unsigned long long shared, int barriers, int reverse,
                                     F body) {
    gridDim = uint3{g[0], g[1], g[2]};
    blockDim = uint3{g[3], g[4], g[5]};
    tn_dynamic_bytes = (size_t)shared;
    tn_reverse = reverse;
    unsigned n = g[3] * g[4] * g[5];
    if (barriers && n > tn_capacity) {
        std::free(tn_fibers); std::free(tn_stacks);
        tn_fibers = (tn_fiber*)std::calloc(n, sizeof(tn_fiber));
        tn_stacks = (char*)std::malloc((size_t)n * tn_stack_bytes);
        if (!tn_fibers || !tn_stacks) { tn_capacity = 0; return 2; }
        tn_capacity = n;
    }
    tn_body = &tn_call<F>;
    tn_body_arg = &body;
    tn_missed_barrier = 0;
    unsigned long long blocks = (unsigned long long)g[0] * g[1] * g[2];
    for (unsigned long long kb = 0; kb < blocks; ++kb) {
        unsigned long long b = tn_reverse ? blocks - 1 - kb : kb;
        blockIdx = uint3{(unsigned)(b % g[0]), (unsigned)(b / g[0] % g[1]), (unsigned)(b / g[0] / g[1])};
        tn_poison_shared();
        if (barriers) {
            int rc = tn_run_block_fibers(n);
            if (rc) return rc;
            continue;
        }
        for (unsigned k = 0; k < n; ++k) {
            threadIdx = tn_coordinates(tn_order(k, n), blockDim);
            body();
        }
    }
    return tn_missed_barrier ? 3 : 0;
}

template <class P> static P tn_arg(const unsigned long long* slots, int i) {
    P value;
    std::memcpy(&value, &slots[i], sizeof(P));   // little-endian: a narrow scalar is the slot's low bytes
    return value;
}
"""

_UNSUPPORTED = re.compile(r"\b(__shfl\w*|__syncwarp|__ballot\w*|__any_sync|__all_sync|__activemask|"
                          r"__syncthreads_(?:count|and|or)|cooperative_groups|tex\dD\w*|surf\dD\w*)\b")
_EXTERN_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([\w\s]+?)\s+(\w+)\s*\[\s*\]\s*;")
_SHARED = re.compile(r"__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([^;]+?)\s*;")
_DECLARATOR = re.compile(r"^(.*?)\b(\w+)\s*((?:\[[^\]]*\]\s*)*)$", re.S)
_RESULTS = {1: "threads of one block diverged at __syncthreads: some returned while others wait there "
               "(undefined on a GPU)", 2: "out of memory for the block's thread stacks",
            3: "reached __syncthreads, but was run without barriers: the emulator did not see the barrier in "
               "its source (a barrier hidden in a macro?); its results are wrong"}

_compiler = None     # path of the C++ compiler, once found
_lock = threading.Lock()   # the emulator's globals (threadIdx, fibers) are shared: one launch at a time
_availability = None  # (bool, reason)


def _find_compiler():
    global _compiler
    if _compiler is None:
        for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
            path = name and shutil.which(name)
            if path:
                _compiler = path
                break
        else:
            _compiler = ""
    return _compiler


def _cache_dir() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(root, "tinynet", "cuda-emulator")
    try:
        os.makedirs(path, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    path = os.path.join(tempfile.gettempdir(), f"tinynet-cuda-emulator-{os.getuid() if hasattr(os, 'getuid') else 0}")
    os.makedirs(path, exist_ok=True)
    return path


_FLAGS = ["-std=c++14", "-O1", "-w", "-shared", "-fPIC", "-U_FORTIFY_SOURCE"]  # no longjmp stack check: fibers


def _build(text: str, label: str) -> ctypes.CDLL:
    """Compile ``text`` into a shared library (cached by its hash) and load it."""
    compiler = _find_compiler()
    if not compiler:
        raise EmulatorError("no C++ compiler found (looked for $CXX, c++, g++, clang++)")
    digest = hashlib.sha256("\0".join([compiler, *_FLAGS, text]).encode()).hexdigest()[:24]
    directory = _cache_dir()
    library = os.path.join(directory, f"{label}-{digest}.so")
    if not os.path.exists(library):
        fd, source = tempfile.mkstemp(suffix=".cpp", prefix=f"{label}-", dir=directory)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        partial = source[:-4] + ".so.part"
        try:
            result = subprocess.run([compiler, *_FLAGS, "-o", partial, source], capture_output=True, text=True,
                                    timeout=300)
            if result.returncode != 0:
                raise EmulatorError(f"the C++ compiler rejected {label} for the CPU emulator:\n"
                                    f"{result.stderr[-6000:]}")
            os.replace(partial, library)   # atomic: other processes see the whole file or none
        finally:
            for path in (source, partial):
                if os.path.exists(path):
                    os.remove(path)
    return ctypes.CDLL(library)


def available() -> bool:
    """Whether kernels can be emulated here: a C++ compiler exists and builds the prelude
    (checked once per process; ``TINYNET_CUDA_EMULATOR=0`` switches the emulator off)."""
    return unavailable_reason() is None


def unavailable_reason():
    """Why the emulator cannot run here, or None when it can."""
    global _availability
    if _availability is None:
        if os.environ.get("TINYNET_CUDA_EMULATOR", "").strip().lower() in ("0", "false", "no"):
            _availability = (False, "the CUDA emulator is switched off (TINYNET_CUDA_EMULATOR=0)")
        else:
            try:
                _build(PRELUDE + 'extern "C" int tn_ready() { return 1; }\n', "prelude")
                _availability = (True, None)
            except (EmulatorError, OSError, subprocess.SubprocessError) as exc:
                _availability = (False, f"no working C++ compiler for the CUDA emulator: {exc}")
    return _availability[1]


def _rewrite_shared(text: str) -> str:
    """``__shared__`` declarations as static storage registered for poisoning; ``extern
    __shared__`` arrays as pointers into the launch's dynamic shared memory."""
    text = _EXTERN_SHARED.sub(lambda m: f"{m.group(1)}* {m.group(2)} = reinterpret_cast<{m.group(1)}*>"
                                        f"(tn_dynamic_shared);", text)

    def static(match):
        declaration = match.group(1)
        if "," in declaration or "=" in declaration:
            raise EmulatorError(f"the emulator needs one uninitialised variable per __shared__ declaration, "
                                f"got '__shared__ {declaration};'")
        name = _DECLARATOR.match(declaration).group(2)
        return (f"static {declaration}; static const bool tn_registered_{name} = "
                f"tn_register_shared(&{name}, sizeof({name})); (void)tn_registered_{name};")
    return _SHARED.sub(static, text)


def _shared_size(declaration: str) -> str:
    """``sizeof`` of the type a ``__shared__`` declaration declares (``T buf[256]`` -> ``sizeof(T[256])``)."""
    declaration = re.sub(r"__align__\s*\(\s*\d+\s*\)", "", declaration)
    match = _DECLARATOR.match(declaration.strip())
    return f"sizeof({match.group(1).strip()}{match.group(3).strip()})"


class EmulatedModule:
    """One :class:`~tinynet.kernels.cuda.launch.CudaModule` compiled for one dtype for the CPU."""

    def __init__(self, module, dtype):
        self.module, self.dtype = module, np.dtype(dtype)
        source = module.source_for(self.dtype)
        unsupported = _UNSUPPORTED.search(strip_comments(source))
        if unsupported:
            raise EmulatorError(f"CudaModule {module.name!r}: the CPU emulator does not support "
                                f"{unsupported.group(1)!r}")
        parts = [PRELUDE, _rewrite_shared(strip_comments(source))]
        for kernel in module.kernels.values():
            types = [p.ctype for p in kernel.params]
            unpack = "".join(f"    auto a{i} = tn_arg<{t}>(slots, {i});\n" for i, t in enumerate(types))
            call = ", ".join(f"a{i}" for i in range(len(types)))
            shared = " + ".join(["0ULL"] + [_shared_size(d) for d in kernel.shared])
            parts.append(
                f'\nextern "C" int tn_launch_{kernel.name}(const unsigned long long* slots, const unsigned* g, '
                f'unsigned long long shared, int reverse) {{\n{unpack}'
                f'    return tn_run(g, shared, {int(kernel.uses_barrier)}, reverse,\n'
                f'                  [&]() {{ {kernel.name}({call}); }});\n}}\n'
                f'extern "C" unsigned long long tn_static_shared_{kernel.name}() {{ return {shared}; }}\n')
        self._library = _build("".join(parts), f"{module.name}-{self.dtype.name}")
        self._launchers, self._static_shared = {}, {}
        for name in module.kernels:
            launcher = getattr(self._library, f"tn_launch_{name}")
            launcher.restype = ctypes.c_int
            launcher.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulonglong, ctypes.c_int]
            self._launchers[name] = launcher
            size = getattr(self._library, f"tn_static_shared_{name}")
            size.restype, size.argtypes = ctypes.c_ulonglong, []
            self._static_shared[name] = int(size())

    def static_shared(self, kernel: str) -> int:
        """Bytes of ``__shared__`` memory ``kernel`` declares."""
        return self._static_shared[kernel]

    def run(self, kernel: str, grid, block, args, shared_mem: int) -> None:
        """Run ``kernel`` over the grid, on arguments already checked against its parameters
        (simulated arrays by their buffers' addresses, NumPy scalars by value). Under
        :func:`thread_order_check`, run it twice, threads and blocks first-to-last then
        last-to-first, and raise if the results differ."""
        slots = np.zeros(max(1, len(args)), np.uint64)
        for i, value in enumerate(args):
            if isinstance(value, np.generic):
                slots[i:i + 1].view(value.dtype)[0] = value   # the slot's low bytes (little-endian)
            else:
                slots[i] = value.data.ptr
        geometry = np.array(tuple(grid) + tuple(block), np.uint32)
        if not _order_check:
            self._call(kernel, slots, geometry, shared_mem, reverse=False)
            return
        # Every live buffer of the simulated device, as raw bytes: besides its pointer arguments
        # a kernel may write through pointers it reads from memory (a multi-tensor kernel's
        # pointer table), so all of them are restored between the two runs and compared after.
        outputs = []
        for _, owner in list(sys.modules["tinynet.sim"]._buffers.values()):
            owner = owner()
            if owner is not None and owner.nbytes and owner.flags.c_contiguous and owner.flags.writeable:
                outputs.append(owner.reshape(-1).view(np.uint8))
        before = [buffer.copy() for buffer in outputs]
        self._call(kernel, slots, geometry, shared_mem, reverse=False)
        forward = [buffer.copy() for buffer in outputs]
        for buffer, saved in zip(outputs, before):
            buffer[...] = saved
        self._call(kernel, slots, geometry, shared_mem, reverse=True)
        for buffer, first in zip(outputs, forward):
            if not np.array_equal(buffer, first):
                start = buffer.__array_interface__["data"][0]
                names = [p.name for p, v in zip(self.module.kernels[kernel].params, args)
                         if p.pointer and start <= v.data.ptr < start + buffer.size]
                where = f"to {names[0]}" if names else "through a pointer it read"
                raise EmulatorError(f"{self.module.name}.{kernel}: what it writes {where} depends on the order in "
                                    "which its threads run (a race: two threads write one element, or one reads "
                                    "what another writes, without a barrier; or atomics adding floats)")

    def _call(self, kernel, slots, geometry, shared_mem, reverse: bool) -> None:
        with _lock:
            result = self._launchers[kernel](slots.ctypes.data, geometry.ctypes.data, int(shared_mem), int(reverse))
        if result:
            raise EmulatorError(f"{self.module.name}.{kernel}: {_RESULTS.get(result, f'error {result}')}")


_order_check = os.environ.get("TINYNET_EMULATOR_ORDER_CHECK", "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def thread_order_check(enabled: bool = True):
    """Inside this block every emulated launch runs twice, its threads and blocks in opposite
    orders, and raises :class:`EmulatorError` if its outputs differ: the kernel's results depend
    on thread timing, which a GPU does not fix. (``TINYNET_EMULATOR_ORDER_CHECK=1`` switches it
    on for a whole run.) Kernels written as gathers pass; a missing barrier, a scatter without
    atomics, or float atomics do not."""
    global _order_check
    previous, _order_check = _order_check, bool(enabled)
    try:
        yield
    finally:
        _order_check = previous
