"""A simulated CUDA device: CuPy's interface on NumPy, so that the test suite can run tinynet's
``cuda`` code path on a machine without a GPU.

**This tests plumbing only.** The simulator proves that data stays on the device through every
op, that ``.to()`` moves it, that mixing devices is refused, that no op reads device memory back
to the host behind the user's back, what a training step allocates, and how many kernels it
launches. It says nothing about speed, about the numerics of cuBLAS, TF32 or a GPU's reduction
order, or about asynchronous execution: every "kernel" is a NumPy call, or a CUDA C kernel run
on the CPU by the emulator (``tinynet/kernels/cuda/emulate.py``), that finishes before it
returns.

What it is:

* :class:`SimArray`, the stand-in for ``cupy.ndarray``. Like a CuPy array it is *not* a
  ``numpy.ndarray``: NumPy cannot read it. Every implicit transfer to the host raises
  ``RuntimeError("... implicit host synchronisation ...")``: ``numpy.asarray(a)``
  (``__array__``), ``float(a)``, ``int(a)``, ``operator.index(a)``, ``bool(a)``, ``a.item()``,
  ``a.tolist()``, pickling. ``a.get()`` is the explicit copy to a NumPy array, as in CuPy, and
  is counted. Arithmetic with a plain ``numpy.ndarray`` raises ``TypeError`` ("Unsupported
  type"), as CuPy does; NumPy and Python scalars are fine. Results of reductions are 0-d arrays
  on the device, never NumPy scalars (again as CuPy).
* :data:`cupy`, the stand-in for the ``cupy`` module: every NumPy function, ufunc (with
  ``.at``/``.reduce``), constant and submodule, run on the arrays inside and wrapped back into
  SimArrays; plus ``asarray``/``array`` (which accept host data: an explicit host-to-device
  copy), ``asnumpy``, ``random.RandomState``, ``lib.stride_tricks``, ``cuda.Device``,
  ``cuda.runtime.getDeviceCount``, ``cuda.get_current_stream``, ``get_default_memory_pool`` and
  ``_core._routines_linalg.{get,set}_compute_type`` (TF32 switch; recorded, no effect here).
* :data:`cupyx`, the stand-in for ``cupyx`` (only ``cupyx.scipy.special.erf``); reach it as
  ``tinynet.backend.cupyx(xp)``.
* :data:`stats`, counters that tests read:

  ``allocations`` / ``allocated_bytes``
      device buffers created (a view of an existing buffer is not an allocation);
  ``live_bytes`` / ``peak_bytes``
      bytes of buffers still alive (released when the last array using a buffer is
      garbage-collected) and the most ever alive since the last :func:`reset_peak`. CuPy keeps
      freed blocks in a memory pool and reuses them; a pool grows only when more bytes are live
      at once than ever before. So "a training step allocates nothing new after warm-up" is
      checked as: the parameter, gradient and optimiser-state buffers are the same step after
      step (``a.data.ptr`` as in CuPy), ``live_bytes`` between steps does not grow, and the
      ``peak_bytes`` of each later step is no more than that of the warm-up steps: a pool
      warmed up by the first steps serves every later one without asking the device for memory.
      ``with tracing_memory() as trace:`` also records which line allocated each buffer and
      what was alive at the block's peak (:class:`MemoryTrace`);
  ``device_to_host`` / ``host_to_device``
      explicit copies (``get``/``asnumpy``; ``asarray``/``array`` of host data, setting items
      from host arrays);
  ``blocking_ops``
      ops that CuPy can only run by waiting for the GPU, because their output's size depends on
      device data: boolean-mask indexing, ``nonzero``/``argwhere``/``flatnonzero``/one-argument
      ``where``, ``unique``, ``compress``/``extract``, and ``bincount`` (which reads the
      maximum back to size its result); ``blocking_names`` counts them by name;
  ``synchronizations``
      explicit ``Device.synchronize()`` / ``Stream.synchronize()`` calls;
  ``launches`` / ``gemms`` / ``fills``
      what a GPU would have queued: ``launches`` counts every kernel (each emulated CUDA C
      launch, reported by the launcher through :meth:`Stats._launch`, and every CuPy function,
      ufunc, reduction, copy or fill the stand-in runs that writes device memory); ``gemms`` the
      matrix products among them (matmul, dot, tensordot, ...) and ``fills`` the memsets
      (zeros, full, ``a.fill``, ``a[...] = scalar``). Views, reshapes, ``empty`` and metadata
      launch nothing. ``launch_names`` counts launches by name.

Devices: ``device_count`` simulated GPUs (:func:`configure`, default 1). Arrays remember their
device; an op on arrays of two devices raises ``ValueError`` naming both (stricter than CuPy,
which may allow peer access); results and new arrays go to the current device
(``cupy.cuda.Device(i)`` as a context manager), as in CuPy.

Turn it on with ``tinynet.backend.simulate_cuda()`` or ``TINYNET_SIMULATE_CUDA=1``: then
``'cuda'`` tensors live here when CuPy or a GPU is missing. Random numbers on the simulated
device come from NumPy's PCG64, seeded per device: reproducible, but not the numbers a real GPU
draws.
"""
from __future__ import annotations

import builtins
import collections
import contextlib
import operator
import threading
import types
import weakref

import numpy as np

__all__ = ["SimArray", "cupy", "cupyx", "stats", "Stats", "reset_peak", "counting", "tracing_memory",
           "MemoryTrace", "configure", "device_count",
           "HostSyncError", "CUDARuntimeError", "Graph", "Memory", "MemoryPointer", "cublas_gemm", "capture_kernel"]


class HostSyncError(RuntimeError):
    """Device data was about to be read on the host implicitly (a hidden GPU synchronisation)."""


def _host_sync(what: str):
    if _capture is not None:  # CuPy's implicit reads go through get(), which refuses a capturing stream
        return _capture_error(what, "d2h")
    return HostSyncError(
        f"{what}: implicit host synchronisation: this reads a (simulated) CUDA array back to the host. "
        "Copy it explicitly (array.get(), tensor.cpu(), tensor.item()) where the value is really needed, "
        "or keep the computation on the device.")


# ---------------------------------------------------------------------------------- counters
class Stats:
    """Counters of what the simulated device did (see the module docstring)."""

    _FIELDS = ("allocations", "allocated_bytes", "live_bytes", "peak_bytes", "device_to_host",
               "host_to_device", "blocking_ops", "synchronizations", "launches", "gemms", "fills")

    def __init__(self):
        for name in self._FIELDS:
            setattr(self, name, 0)
        self.blocking_names = collections.Counter()  # which blocking ops ran, by name
        self.launch_names = collections.Counter()    # which kernels were launched, by name

    def _blocking(self, name: str) -> None:
        _refuse_while_capturing(name, "blocking")
        self.blocking_ops += 1
        self.blocking_names[name] += 1

    def _launch(self, name: str, kind: str = "kernel") -> None:
        """Count one kernel launch called ``name``; ``kind`` 'gemm' or 'fill' also counts it
        among the matrix products or the fills. While a stream captures, nothing launches: the
        kernel is counted in the graph, and the graph's launch is counted when it runs."""
        if _capture is not None:
            _capture.kernels += 1
            return
        self.launches += 1
        self.launch_names[name] += 1
        if kind == "gemm":
            self.gemms += 1
        elif kind == "fill":
            self.fills += 1

    def snapshot(self) -> dict:
        return {name: getattr(self, name) for name in self._FIELDS}

    def __repr__(self) -> str:
        return "Stats(" + ", ".join(f"{k}={v}" for k, v in self.snapshot().items()) + ")"


stats = Stats()
_buffers: dict = {}  # id(owner ndarray) -> (nbytes, weakref to the owner)


def reset_peak() -> None:
    """Start measuring ``stats.peak_bytes`` afresh from the bytes alive now."""
    stats.peak_bytes = stats.live_bytes


def _release(key: int, nbytes: int) -> None:
    if _buffers.pop(key, None) is not None:
        stats.live_bytes -= nbytes


def _owner(a: np.ndarray) -> np.ndarray:
    """The ndarray that owns the memory ``a`` looks at (``a`` itself unless it is a view)."""
    owner, obj = a, a.base
    while obj is not None:
        if isinstance(obj, np.ndarray):
            owner = obj
        obj = getattr(obj, "base", None)  # as_strided puts a non-ndarray holder in between
    return owner


def _track(a: np.ndarray) -> None:
    owner = _owner(a)
    key = id(owner)
    if key in _buffers:
        return
    nbytes = owner.nbytes
    _buffers[key] = (nbytes, weakref.ref(owner, lambda _, key=key, n=nbytes: _release(key, n)))
    stats.allocations += 1
    stats.allocated_bytes += nbytes
    stats.live_bytes += nbytes
    stats.peak_bytes = builtins.max(stats.peak_bytes, stats.live_bytes)
    if _memory_trace is not None:
        _memory_trace._allocated(key)


class MemoryTrace:
    """What was alive at the peak of a :func:`tracing_memory` block: ``peak_bytes`` (the most
    bytes alive at once during the block, counted from the bytes alive at its start) and
    ``at_peak``, a list of ``(nbytes, creator)`` for every buffer alive at that moment. The
    creator is ``"file:line function"`` of the innermost tinynet frame outside the device layer
    that allocated the buffer (an op's forward or backward, the engine, an optimiser), or
    ``"before"`` for buffers that were alive when the block started."""

    def __init__(self):
        self.creators: dict = {}  # buffer key -> creator, for buffers allocated inside the block
        self.peak_bytes = stats.live_bytes
        self.at_peak = self._alive()

    def _alive(self) -> list:
        return [(nbytes, self.creators.get(key, "before")) for key, (nbytes, _) in _buffers.items()]

    def _allocated(self, key: int) -> None:
        self.creators[key] = _creator()
        if stats.live_bytes > self.peak_bytes:  # a new peak: remember what is alive now
            self.peak_bytes = stats.live_bytes
            self.at_peak = self._alive()

    def by_creator(self) -> list:
        """``(bytes, count, creator)`` alive at the peak, summed by creator, largest first."""
        total: dict = collections.defaultdict(lambda: [0, 0])
        for nbytes, creator in self.at_peak:
            total[creator][0] += nbytes
            total[creator][1] += 1
        return sorted(((b, n, c) for c, (b, n) in total.items()), reverse=True)


_memory_trace: MemoryTrace | None = None
# Frames in these files are the device layer: a buffer's creator is the first frame outside them.
_DEVICE_LAYER = ("sim.py", "backend.py", "dispatch.py", "gemm.py", "launch.py", "emulate.py")


def _creator() -> str:
    import os
    import sys
    frame = sys._getframe(2)
    package = os.path.dirname(__file__)
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith(package) and os.path.basename(path) not in _DEVICE_LAYER \
                and os.sep + "kernels" + os.sep not in path:
            return f"{os.path.relpath(path, package)}:{frame.f_lineno} {frame.f_code.co_name}"
        frame = frame.f_back
    return "outside tinynet"


@contextlib.contextmanager
def tracing_memory():
    """``with tracing_memory() as trace:`` records who allocated each buffer during the block and
    what was alive at its peak (:class:`MemoryTrace`). It walks the Python stack at every
    allocation, so it is for finding where memory goes, not for timed runs."""
    global _memory_trace
    if _memory_trace is not None:
        raise RuntimeError("tracing_memory: already tracing (the blocks do not nest)")
    _memory_trace = trace = MemoryTrace()
    try:
        yield trace
    finally:
        _memory_trace = None


# ----------------------------------------------------------------------------------- devices
_config = {"device_count": 1}
_local = threading.local()


def configure(device_count: int = 1) -> None:
    """Set how many GPUs the simulator pretends to have."""
    if device_count < 1:
        raise ValueError(f"sim.configure: device_count must be at least 1, got {device_count}")
    _config["device_count"] = int(device_count)


def device_count() -> int:
    return _config["device_count"]


def _current_id() -> int:
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else 0


class Device:
    """``cupy.cuda.Device``: a simulated GPU; a context manager that makes it the current one."""

    def __init__(self, device=None):
        if device is None:
            device = _current_id()
        elif isinstance(device, Device):
            device = device.id
        device = operator.index(device)
        if not 0 <= device < _config["device_count"]:
            raise ValueError(f"simulated CUDA device {device} does not exist: the simulator has "
                             f"{_config['device_count']} device(s) (tinynet.sim.configure(device_count=...))")
        self.id = device

    def __enter__(self):
        if not hasattr(_local, "stack"):
            _local.stack = []
        _local.stack.append(self.id)
        return self

    def __exit__(self, *exc):
        _local.stack.pop()
        return False

    def use(self) -> None:
        if not hasattr(_local, "stack"):
            _local.stack = []
        _local.stack[:] = [self.id]

    def synchronize(self) -> None:
        _refuse_while_capturing("Device.synchronize()", "sync")
        stats.synchronizations += 1

    compute_capability = "80"

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(("sim", self.id))

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id} (simulated)>"


class Stream:
    """``cupy.cuda.Stream``: work here is synchronous, so a stream counts synchronize() and can
    capture a graph (``begin_capture``/``end_capture``/``is_capturing``: see "stream capture"
    at the end of this module); ``with stream:`` makes it the current stream."""

    _next_ptr = 0x10

    def __init__(self, null: bool = False, non_blocking: bool = False, ptds: bool = False, priority=None):
        if null:
            self.ptr = 0
        else:
            self.ptr = Stream._next_ptr
            Stream._next_ptr += 0x10
        self.non_blocking = bool(non_blocking)

    def synchronize(self) -> None:
        _refuse_while_capturing("Stream.synchronize()", "sync")
        stats.synchronizations += 1

    def __enter__(self):
        if not hasattr(_local, "streams"):
            _local.streams = []
        _local.streams.append(self)
        return self

    def __exit__(self, *exc):
        _local.streams.pop()
        return False

    def use(self) -> "Stream":
        if not hasattr(_local, "streams"):
            _local.streams = []
        _local.streams[:] = [self]
        return self

    def begin_capture(self, mode=None) -> None:
        _begin_capture(self)

    def end_capture(self) -> "Graph":
        return _end_capture(self)

    def is_capturing(self) -> bool:
        return _capture is not None and _capture.stream is self

    def __repr__(self) -> str:
        return f"<Stream {self.ptr:#x} (simulated)>"


_null_stream = Stream(null=True)


def _current_stream(device=None) -> Stream:
    streams = getattr(_local, "streams", None)
    return streams[-1] if streams else _null_stream


class _MemoryPointer:
    """``ndarray.data`` in CuPy: ``ptr`` is the address of the array's first element, so two
    arrays with one ``data.ptr`` look at the same memory."""

    __slots__ = ("ptr", "device")

    def __init__(self, ptr: int, device: Device):
        self.ptr, self.device = ptr, device


# ------------------------------------------------------------------------- wrapping, unwrapping
_SCALARS = (int, float, complex, bool, np.generic)


def _wrap(a, dev: int):
    """A NumPy result as a device result: ndarrays and NumPy scalars become SimArrays (0-d for
    scalars, as CuPy returns), containers are wrapped item by item, the rest passes through."""
    if isinstance(a, np.ndarray):
        return SimArray._from_ndarray(_place(a), dev)
    if isinstance(a, np.generic):
        return SimArray._from_ndarray(_place(np.asarray(a)), dev)
    if isinstance(a, tuple):
        items = tuple(_wrap(x, dev) for x in a)
        return type(a)(*items) if hasattr(a, "_fields") else items  # namedtuples too
    if isinstance(a, list):
        return [_wrap(x, dev) for x in a]
    return a


class _Unwrapper:
    """Replaces SimArrays by their ndarrays in (nested) arguments, checking that they live on one
    device and refusing host ndarrays, as CuPy's kernels do."""

    __slots__ = ("devices", "allow_host")

    def __init__(self, allow_host: bool = False):
        self.devices = set()
        self.allow_host = allow_host

    def __call__(self, x):
        if isinstance(x, SimArray):
            self.devices.add(x._dev)
            return x._a
        if isinstance(x, np.ndarray) and not self.allow_host:
            raise TypeError(f"Unsupported type {type(x)}: a NumPy array (host memory) was passed to an "
                            "operation on the simulated CUDA device; move it with cupy.asarray first")
        if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
            return type(x)(self(i) for i in x)
        if isinstance(x, dict):
            return {k: self(v) for k, v in x.items()}
        return x

    def device(self) -> int:
        if len(self.devices) > 1:
            a, b = sorted(self.devices)[:2]
            raise ValueError(f"arrays on different simulated CUDA devices ({a} and {b}) in one operation")
        return next(iter(self.devices)) if self.devices else _current_id()


def _outs(kwargs, unwrap):
    """Unwrap ``out=`` (an array or a tuple); return the original SimArrays to hand back."""
    out = kwargs.get("out")
    if out is None:
        return None
    if isinstance(out, tuple) and len(out) == 1:  # how NumPy hands a ufunc's out= to __array_ufunc__
        if not isinstance(out[0], SimArray):
            raise TypeError(f"out: expected a simulated CUDA array, got {type(out[0]).__name__}")
        kwargs["out"] = (unwrap(out[0]),)
        return out[0]
    if isinstance(out, tuple):
        for o in out:
            if o is not None and not isinstance(o, SimArray):
                raise TypeError(f"out: expected a simulated CUDA array, got {type(o).__name__}")
        kwargs["out"] = tuple(None if o is None else unwrap(o) for o in out)
        return out
    if not isinstance(out, SimArray):
        raise TypeError(f"out: expected a simulated CUDA array, got {type(out).__name__}")
    kwargs["out"] = unwrap(out)
    return out


# Functions whose output's size depends on the data: CuPy must wait for the GPU to run them.
_BLOCKING = {"nonzero", "argwhere", "flatnonzero", "unique", "unique_values", "unique_counts",
             "unique_inverse", "unique_all", "compress", "extract", "bincount"}
# Functions that return a Python bool about the data in NumPy; CuPy returns a 0-d device array.
_DEVICE_BOOL = {"allclose", "array_equal", "array_equiv"}


# What a call would launch on a GPU. By default a call launches one kernel when it writes device
# memory: into ``out=``, or into a buffer it made (a view of an input, or a host result, launches
# nothing). The names below are the exceptions and the kinds counted apart.
_NO_KERNEL = {"empty", "empty_like"}                                   # allocation only
_FILLS = {"zeros", "zeros_like", "ones", "ones_like", "full", "full_like"}
_GEMMS = {"matmul", "dot", "tensordot", "vdot", "inner", "einsum"}
_WRITES_IN_PLACE = {"copyto", "put", "place", "putmask", "put_along_axis", "fill_diagonal"}  # return None


def _is_new_buffer(result) -> bool:
    """Whether ``result`` (a NumPy result, before wrapping) holds a buffer the simulator has not
    seen: memory the call wrote, not a view of an existing device array."""
    if isinstance(result, np.generic):
        return True
    if isinstance(result, np.ndarray):
        return id(_owner(result)) not in _buffers
    if isinstance(result, (tuple, list)):
        return builtins.any(_is_new_buffer(r) for r in result)
    return False


def _count_launch(name: str, result, wrote: bool) -> None:
    """Count the launch that a call named ``name`` would make (see ``_NO_KERNEL`` above)."""
    if name in _NO_KERNEL:
        return
    if wrote or name in _WRITES_IN_PLACE or _is_new_buffer(result):
        kind = "fill" if name in _FILLS else "gemm" if name in _GEMMS or name in (_DIRECT_GEMM, _LT_GEMM) else "kernel"
        stats._launch(name, kind)


def _call(fn, name: str, args, kwargs, allow_host: bool = False):
    """Run NumPy's ``fn`` on the arrays inside the SimArrays and wrap the result."""
    unwrap = _Unwrapper(allow_host)
    args = unwrap(args)
    kwargs = dict(kwargs)
    outs = _outs(kwargs, unwrap)
    kwargs = {k: (v if k == "out" else unwrap(v)) for k, v in kwargs.items()}
    dev = unwrap.device()
    if name in _BLOCKING or (name == "where" and len(args) == 1):
        stats._blocking(name)
    if _capture is not None:
        return _captured_call(lambda: fn(*args, **kwargs), name, outs, dev)
    result = fn(*args, **kwargs)
    _count_launch(name, result, outs is not None)
    if outs is not None:
        return outs
    if name in _DEVICE_BOOL:
        result = np.asarray(result)
    return _wrap(result, dev)


class _Ufunc:
    """A NumPy ufunc on simulated arrays (``cupy.add`` and friends), with ``at``/``reduce``/..."""

    def __init__(self, ufunc: np.ufunc):
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__
        self.nin, self.nout, self.nargs = ufunc.nin, ufunc.nout, ufunc.nargs

    def __call__(self, *args, **kwargs):
        return _call(self._ufunc, self.__name__, args, kwargs)

    def at(self, a, indices, b=None):
        if not isinstance(a, SimArray):
            raise TypeError(f"{self.__name__}.at: expected a simulated CUDA array, got {type(a).__name__}")
        unwrap = _Unwrapper()
        inner, indices = unwrap(a), _unwrap_index(indices, unwrap)
        args = (inner, indices) if b is None else (inner, indices, unwrap(b))
        unwrap.device()
        self._ufunc.at(*args)
        stats._launch(f"{self.__name__}.at")
        if _capture is not None:
            _capture.record(lambda: self._ufunc.at(*args))

    def reduce(self, *args, **kwargs):
        return _call(self._ufunc.reduce, f"{self.__name__}.reduce", args, kwargs)

    def accumulate(self, *args, **kwargs):
        return _call(self._ufunc.accumulate, f"{self.__name__}.accumulate", args, kwargs)

    def outer(self, *args, **kwargs):
        return _call(self._ufunc.outer, f"{self.__name__}.outer", args, kwargs)

    def reduceat(self, *args, **kwargs):
        return _call(self._ufunc.reduceat, f"{self.__name__}.reduceat", args, kwargs)

    def __repr__(self) -> str:
        return f"<simulated ufunc '{self.__name__}'>"


def _unwrap_index(index, unwrap):
    """An index for the array inside: SimArrays unwrapped, host index arrays and lists allowed
    (CuPy copies them to the device)."""
    items = index if isinstance(index, tuple) else (index,)
    out = []
    for item in items:
        if isinstance(item, SimArray):
            unwrap.devices.add(item._dev)
            out.append(item._a)
        elif isinstance(item, (np.ndarray, list)):
            _refuse_while_capturing("an index array from host memory (a pageable host-to-device copy)", "h2d")
            stats.host_to_device += 1
            out.append(np.asarray(item))
        else:
            out.append(item)
    return tuple(out) if isinstance(index, tuple) else out[0]


def _has_mask(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return builtins.any(getattr(i, "dtype", None) == np.bool_ and getattr(i, "ndim", 0) > 0 for i in items)


# ------------------------------------------------------------------------------------ SimArray
def _binary(ufunc, reflected=False):
    def op(self, other):
        if not isinstance(other, (SimArray, np.ndarray) + _SCALARS):
            return NotImplemented
        return _call(ufunc, ufunc.__name__, (other, self) if reflected else (self, other), {})
    return op


def _inplace(ufunc):
    def op(self, other):
        if not isinstance(other, (SimArray, np.ndarray) + _SCALARS):
            return NotImplemented
        _call(ufunc, ufunc.__name__, (self, other), {"out": self})
        return self
    return op


def _unary(ufunc):
    def op(self):
        return _call(ufunc, ufunc.__name__, (self,), {})
    return op


class SimArray:
    """``cupy.ndarray`` on the simulated device: a NumPy array that the host may not read
    implicitly. Make one with ``tinynet.sim.cupy.asarray(host_array)`` (or any creation
    function); read it back with :meth:`get`."""

    __slots__ = ("_a", "_dev", "__weakref__")
    __array_priority__ = 100  # NumPy defers binary operators to us

    @classmethod
    def _from_ndarray(cls, a: np.ndarray, dev: int) -> "SimArray":
        self = object.__new__(cls)
        self._a, self._dev = a, dev
        return self

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("SimArray: memptr/strides are not supported by the simulator")
        self._a, self._dev = _place(np.empty(shape, dtype, order=order)), _current_id()

    # ----------------------------------------------------------- metadata (host-side, free)
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)

    @property
    def device(self) -> Device:
        return Device(self._dev)

    @property
    def data(self) -> _MemoryPointer:
        return _MemoryPointer(self._a.__array_interface__["data"][0], Device(self._dev))

    @property
    def T(self):
        return _wrap(self._a.T, self._dev)

    @property
    def mT(self):
        return _wrap(self._a.mT, self._dev)

    @property
    def base(self):
        owner = _owner(self._a)
        return None if owner is self._a else _wrap(owner, self._dev)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))

    def __repr__(self) -> str:
        return f"<SimArray shape={self._a.shape} dtype={self._a.dtype} device=cuda:{self._dev} (simulated)>"

    __str__ = __repr__

    # ------------------------------------------------------------ explicit transfer to the host
    def get(self, stream=None, order="C", out=None, blocking=True) -> np.ndarray:
        """A NumPy copy of the array (the explicit device-to-host copy, as in CuPy)."""
        _refuse_while_capturing("ndarray.get() / cupy.asnumpy (a device-to-host copy)", "d2h")
        stats.device_to_host += 1
        if out is not None:
            np.copyto(out, self._a)
            return out
        return np.array(self._a, order=order, copy=True)

    # --------------------------------------------------------------- implicit transfers: refused
    def __array__(self, dtype=None, copy=None):
        raise _host_sync("numpy.asarray(<simulated CUDA array>)")

    def __float__(self):
        raise _host_sync("float(<simulated CUDA array>)")

    def __int__(self):
        raise _host_sync("int(<simulated CUDA array>)")

    def __complex__(self):
        raise _host_sync("complex(<simulated CUDA array>)")

    def __index__(self):
        raise _host_sync("operator.index(<simulated CUDA array>)")

    def __bool__(self):
        raise _host_sync("bool(<simulated CUDA array>)")

    def __contains__(self, value):
        raise _host_sync("`in` on a simulated CUDA array")

    def item(self, *args):
        raise _host_sync("<simulated CUDA array>.item()")

    def tolist(self):
        raise _host_sync("<simulated CUDA array>.tolist()")

    def tobytes(self, order="C"):
        raise _host_sync("<simulated CUDA array>.tobytes()")

    def __reduce__(self):
        raise _host_sync("pickling a simulated CUDA array")

    __reduce_ex__ = lambda self, protocol: self.__reduce__()  # noqa: E731

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    # ------------------------------------------------------------------------------ NumPy hooks
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        fn = ufunc if method == "__call__" else getattr(ufunc, method)
        if method == "at":
            return _Ufunc(ufunc).at(*inputs, **kwargs)
        return _call(fn, ufunc.__name__ if method == "__call__" else method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _call(func, func.__name__, args, kwargs)

    # ---------------------------------------------------------------------------------- indexing
    def __getitem__(self, index):
        unwrap = _Unwrapper()
        unwrap.devices.add(self._dev)
        inner = _unwrap_index(index, unwrap)
        dev = unwrap.device()
        if _has_mask(inner):
            stats._blocking("boolean-mask indexing")
        if _capture is not None:
            return _captured_call(lambda: self._a[inner], "getitem", None, dev)
        result = self._a[inner]
        _count_launch("getitem", result, False)  # a gather (advanced index); a slice is a view
        return _wrap(result, dev)

    def __setitem__(self, index, value):
        unwrap = _Unwrapper()
        unwrap.devices.add(self._dev)
        inner = _unwrap_index(index, unwrap)
        if isinstance(value, SimArray):
            unwrap.devices.add(value._dev)
            value = value._a
        elif isinstance(value, np.ndarray):
            _refuse_while_capturing("setting items from a NumPy array (a pageable host-to-device copy)", "h2d")
            stats.host_to_device += 1
        unwrap.device()
        self._a[inner] = value
        if _capture is not None:
            a = self._a
            _capture.record(lambda: a.__setitem__(inner, value))
        stats._launch("setitem", "fill" if isinstance(value, _SCALARS) else "kernel")

    # ------------------------------------------------------------------------------- methods
    def copy(self, order="C"):
        """A copy on the *current* device (CuPy's rule, which is how arrays move between GPUs)."""
        stats._launch("copy")
        if _capture is not None:
            return _captured_call(lambda: self._a.copy(order=order), "copy", None, _current_id())
        return _wrap(self._a.copy(order=order), _current_id())

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        if not copy and np.dtype(dtype) == self._a.dtype:
            return self
        stats._launch("astype")
        if _capture is not None:
            return _captured_call(lambda: self._a.astype(dtype, order=order, copy=True), "astype", None, self._dev)
        return _wrap(self._a.astype(dtype, order=order, copy=True), self._dev)

    def fill(self, value):
        stats._launch("fill", "fill")
        a, value = self._a, (value._a if isinstance(value, SimArray) else value)
        a[...] = value
        if _capture is not None:
            _capture.record(lambda: a.__setitem__(Ellipsis, value))

    def view(self, dtype=None):
        return _wrap(self._a.view() if dtype is None else self._a.view(dtype), self._dev)

    def __getattr__(self, name):
        # Only reached for names not defined above: NumPy's other ndarray methods, run on the
        # array inside and wrapped. Never dunders: NumPy must not find __array_interface__.
        if name.startswith("__") or name in ("ctypes", "flat", "tofile", "dump", "dumps", "_a", "_dev"):
            raise AttributeError(f"'SimArray' object has no attribute {name!r}")
        attr = getattr(self._a, name)
        if callable(attr):
            dev = self._dev

            def method(*args, **kwargs):
                if name in _BLOCKING:
                    stats._blocking(name)
                unwrap = _Unwrapper()
                unwrap.devices.add(dev)
                args = unwrap(args)
                kwargs = dict(kwargs)
                outs = _outs(kwargs, unwrap)
                kwargs = {k: (v if k == "out" else unwrap(v)) for k, v in kwargs.items()}
                if _capture is not None:
                    return _captured_call(lambda: attr(*args, **kwargs), name, outs, unwrap.device())
                result = attr(*args, **kwargs)
                _count_launch(name, result, outs is not None)
                return outs if outs is not None else _wrap(result, unwrap.device())
            method.__name__ = name
            return method
        return _wrap(attr, self._dev)

    # -------------------------------------------------------------------------------- operators
    __add__, __radd__, __iadd__ = _binary(np.add), _binary(np.add, True), _inplace(np.add)
    __sub__, __rsub__, __isub__ = _binary(np.subtract), _binary(np.subtract, True), _inplace(np.subtract)
    __mul__, __rmul__, __imul__ = _binary(np.multiply), _binary(np.multiply, True), _inplace(np.multiply)
    __truediv__, __rtruediv__, __itruediv__ = (_binary(np.true_divide), _binary(np.true_divide, True),
                                               _inplace(np.true_divide))
    __floordiv__, __rfloordiv__, __ifloordiv__ = (_binary(np.floor_divide), _binary(np.floor_divide, True),
                                                  _inplace(np.floor_divide))
    __mod__, __rmod__, __imod__ = _binary(np.remainder), _binary(np.remainder, True), _inplace(np.remainder)
    __pow__, __rpow__, __ipow__ = _binary(np.power), _binary(np.power, True), _inplace(np.power)
    __matmul__, __rmatmul__ = _binary(np.matmul), _binary(np.matmul, True)
    __and__, __rand__, __iand__ = _binary(np.bitwise_and), _binary(np.bitwise_and, True), _inplace(np.bitwise_and)
    __or__, __ror__, __ior__ = _binary(np.bitwise_or), _binary(np.bitwise_or, True), _inplace(np.bitwise_or)
    __xor__, __rxor__, __ixor__ = _binary(np.bitwise_xor), _binary(np.bitwise_xor, True), _inplace(np.bitwise_xor)
    __lshift__, __rshift__ = _binary(np.left_shift), _binary(np.right_shift)
    __eq__, __ne__ = _binary(np.equal), _binary(np.not_equal)
    __lt__, __le__ = _binary(np.less), _binary(np.less_equal)
    __gt__, __ge__ = _binary(np.greater), _binary(np.greater_equal)
    __neg__, __pos__, __abs__ = _unary(np.negative), _unary(np.positive), _unary(np.absolute)
    __invert__ = _unary(np.invert)
    __hash__ = None


# --------------------------------------------------------------------------- the cupy namespace
def _explicit_copy(obj, dtype=None, copy=True, order="K"):
    """``cupy.asarray`` / ``cupy.array``: a SimArray stays (copied if asked); host data is copied
    to the current device (an explicit host-to-device transfer)."""
    if isinstance(obj, SimArray):
        if dtype is not None and np.dtype(dtype) != obj.dtype:
            return obj.astype(dtype)
        return obj.copy() if copy else obj
    if isinstance(obj, (list, tuple)) and builtins.any(isinstance(o, SimArray) for o in obj):
        return _call(np.stack, "stack", ([_explicit_copy(o, dtype) for o in obj],), {})
    _refuse_while_capturing("cupy.asarray/array of host data (a pageable host-to-device copy)", "h2d")
    stats.host_to_device += 1
    stats._launch("host_to_device")  # a copy queued on the stream, like a kernel
    a = np.array(obj, dtype=dtype, copy=True, order=order)
    return SimArray._from_ndarray(_place(a), _current_id())


def _asarray(a, dtype=None, order=None, *, blocking=False):
    return _explicit_copy(a, dtype, copy=False)


def _array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    out = _explicit_copy(obj, dtype, copy=bool(copy))
    while out.ndim < ndmin:
        out = out[None]
    return out


def _asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if isinstance(a, SimArray):
        return a.get(stream=stream, order=order, out=out)
    return np.asarray(a, order=order)


class _Namespace(types.ModuleType):
    """A module whose missing attributes come from a NumPy module: functions and ufuncs wrapped
    to run on SimArrays, classes (dtypes, ``errstate``) and constants as they are."""

    def __init__(self, name: str, numpy_module, doc: str = ""):
        super().__init__(name, doc)
        self._numpy_module = numpy_module

    def __getattr__(self, name):
        if name.startswith("__") or name == "_numpy_module":
            raise AttributeError(name)
        try:
            attr = getattr(self._numpy_module, name)
        except AttributeError:
            raise AttributeError(f"the simulated cupy module has no attribute {name!r}") from None
        if isinstance(attr, np.ufunc):
            wrapped = _Ufunc(attr)
        elif isinstance(attr, types.ModuleType):
            wrapped = _Namespace(f"{self.__name__}.{name}", attr)
        elif callable(attr) and not isinstance(attr, type):
            def wrapped(*args, _fn=attr, _name=name, **kwargs):
                return _call(_fn, _name, args, kwargs)
            wrapped.__name__ = name
            wrapped.__doc__ = getattr(attr, "__doc__", None)
        else:
            wrapped = attr
        setattr(self, name, wrapped)  # cache: the next lookup is a plain attribute
        return wrapped

    def __repr__(self) -> str:
        return f"<module {self.__name__!r} (simulated CuPy on NumPy)>"


class RandomState:
    """``cupy.random.RandomState`` on NumPy's PCG64: seeded and reproducible, on the device that
    was current when it was made (not the numbers CuPy's generators draw)."""

    def __init__(self, seed=None):
        self._dev = _current_id()
        self.seed(seed)

    def seed(self, seed=None) -> None:
        self._rng = np.random.Generator(np.random.PCG64(seed))

    def _out(self, a):
        stats._launch("random")  # one curand kernel per draw
        return _wrap(np.asarray(a), self._dev)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float):
        return self._out(self._rng.uniform(low, high, size).astype(dtype, copy=False))

    def random_sample(self, size=None, dtype=float):
        dtype = np.dtype(dtype)
        return self._out(self._rng.random(size, dtype=dtype if dtype in (np.float32, np.float64) else np.float64)
                         .astype(dtype, copy=False))

    random = random_sample

    def rand(self, *size, dtype=float):
        return self.random_sample(size, dtype)

    def standard_normal(self, size=None, dtype=float):
        dtype = np.dtype(dtype)
        z = self._rng.standard_normal(size, dtype=dtype if dtype in (np.float32, np.float64) else np.float64)
        return self._out(z.astype(dtype, copy=False))

    def randn(self, *size, dtype=float):
        return self.standard_normal(size, dtype)

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=float):
        return self._out(self._rng.normal(loc, scale, size).astype(dtype, copy=False))

    def randint(self, low, high=None, size=None, dtype="l"):
        if high is None:
            low, high = 0, low
        return self._out(self._rng.integers(low, high, size, dtype=dtype))

    def permutation(self, num):
        if isinstance(num, SimArray):
            stats._launch("random")
            return _wrap(self._rng.permutation(num._a), num._dev)
        return self._out(self._rng.permutation(num))

    def shuffle(self, a) -> None:
        if not isinstance(a, SimArray):
            raise TypeError(f"shuffle: expected a simulated CUDA array, got {type(a).__name__}")
        stats._launch("random")
        self._rng.shuffle(a._a)

    def choice(self, a, size=None, replace=True, p=None):
        unwrap = _Unwrapper()
        stats._launch("random")
        return _wrap(self._rng.choice(unwrap(a), size, replace, unwrap(p)), self._dev)


def _refusing_during_capture(method):
    """cuRAND refuses a capturing stream before it draws anything: so does the stand-in."""
    def draw(self, *args, **kwargs):
        _refuse_while_capturing("cupy.random", "curand")
        return method(self, *args, **kwargs)
    draw.__name__, draw.__doc__ = method.__name__, method.__doc__
    return draw


for _name in ("seed", "uniform", "random_sample", "standard_normal", "normal", "randint", "permutation", "shuffle",
              "choice"):
    setattr(RandomState, _name, _refusing_during_capture(getattr(RandomState, _name)))
RandomState.random = RandomState.random_sample

_random_states: dict = {}


def _default_random_state() -> RandomState:
    dev = _current_id()
    if dev not in _random_states:
        with Device(dev):
            _random_states[dev] = RandomState()
    return _random_states[dev]


def _random_namespace() -> types.ModuleType:
    ns = types.ModuleType("tinynet.sim.cupy.random", "cupy.random on the simulated device")
    ns.RandomState = RandomState
    ns.get_random_state = _default_random_state

    def seed(seed=None):
        _default_random_state().seed(seed)
    ns.seed = seed
    for name in ("uniform", "random_sample", "random", "rand", "standard_normal", "randn", "normal", "randint",
                 "permutation", "shuffle", "choice"):
        def draw(*args, _name=name, **kwargs):
            return getattr(_default_random_state(), _name)(*args, **kwargs)
        draw.__name__ = name
        setattr(ns, name, draw)
    return ns


class _MemoryPool:
    """``cupy.get_default_memory_pool()``: ``used_bytes`` is the bytes alive now; ``total_bytes``
    the most alive at once since :func:`reset_peak` (what a caching pool would hold)."""

    def used_bytes(self) -> int:
        return stats.live_bytes

    def total_bytes(self) -> int:
        return stats.peak_bytes

    def free_all_blocks(self, stream=None) -> None:
        reset_peak()


_memory_pool = _MemoryPool()


def _linalg_compute_types() -> types.ModuleType:
    """``cupy._core._routines_linalg``'s GEMM compute-type switch (TF32 on Ampere and later).
    The simulator only records the setting, so tests can see that ``allow_tf32`` reaches it."""
    ns = types.ModuleType("tinynet.sim.cupy._core._routines_linalg")
    names = ["COMPUTE_TYPE_TBD", "COMPUTE_TYPE_DEFAULT", "COMPUTE_TYPE_PEDANTIC", "COMPUTE_TYPE_FP16",
             "COMPUTE_TYPE_FP32", "COMPUTE_TYPE_FP64", "COMPUTE_TYPE_BF16", "COMPUTE_TYPE_TF32"]
    for value, name in enumerate(names):
        setattr(ns, name, value)
    types_by_index = [0, 0, 0]  # float16, float32, float64: TBD

    def index(dtype) -> int:
        char = np.dtype(dtype).char
        return 0 if char == "e" else 1 if char in "fF" else 2 if char in "dD" else _unsupported(dtype)

    def _unsupported(dtype):
        raise TypeError(f"dtype is not supported: {dtype}")

    def get_compute_type(dtype):
        i = index(dtype)
        if types_by_index[i] == 0:
            types_by_index[i] = ns.COMPUTE_TYPE_DEFAULT
        return types_by_index[i]

    def set_compute_type(dtype, compute_type):
        if compute_type not in range(len(names)):
            raise ValueError(f"Unknown compute type: {compute_type}")
        types_by_index[index(dtype)] = compute_type

    ns.get_compute_type, ns.set_compute_type = get_compute_type, set_compute_type
    return ns


def _get_array_module(*args):
    return cupy if builtins.any(isinstance(a, SimArray) for a in args) else np


def _build_cupy() -> _Namespace:
    ns = _Namespace("tinynet.sim.cupy", np, "A stand-in for the cupy module, on NumPy (tinynet.sim).")
    ns.ndarray = SimArray
    ns.asarray = ns.asanyarray = _asarray
    ns.array = _array
    ns.asnumpy = _asnumpy
    ns.get_array_module = _get_array_module
    ns.get_default_memory_pool = lambda: _memory_pool

    cuda = types.ModuleType("tinynet.sim.cupy.cuda")
    cuda.Device, cuda.Stream = Device, Stream
    cuda.get_current_stream = _current_stream
    cuda.runtime = types.SimpleNamespace(getDeviceCount=device_count, deviceSynchronize=lambda: Device().synchronize(),
                                         CUDARuntimeError=CUDARuntimeError)
    cuda.Graph, cuda.MemoryPointer, cuda.Memory = Graph, MemoryPointer, Memory
    cuda.graph = types.SimpleNamespace(Graph=Graph)
    cuda.alloc, cuda.set_allocator, cuda.get_allocator, cuda.using_allocator = alloc, set_allocator, get_allocator, \
        using_allocator
    cuda.memory = types.SimpleNamespace(MemoryPointer=MemoryPointer, Memory=Memory, alloc=alloc)
    cuda.is_available = lambda: True
    ns.cuda = cuda

    ns.random = _random_namespace()
    lib = _Namespace("tinynet.sim.cupy.lib", np.lib)
    lib.stride_tricks = _Namespace("tinynet.sim.cupy.lib.stride_tricks", np.lib.stride_tricks)
    ns.lib = lib
    core = types.ModuleType("tinynet.sim.cupy._core")
    core._routines_linalg = _linalg_compute_types()
    ns._core = core
    ns.is_simulated = True
    return ns




def _erf(x):
    """``cupyx.scipy.special.erf`` on the simulated device (SciPy's, or math.erf elementwise)."""
    if not isinstance(x, SimArray):
        raise TypeError(f"erf: expected a simulated CUDA array, got {type(x).__name__}")
    stats._launch("erf")
    a = x._a
    if _capture is not None:
        return _captured_call(lambda: _erf_values(a), "erf", None, x._dev)
    return _wrap(_erf_values(a), x._dev)


def _erf_values(a: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf
        out = erf(a)
    except ImportError:  # SciPy is not a dependency: math.erf elementwise (slow; the sim tests plumbing)
        import math
        values = np.frompyfunc(math.erf, 1, 1)(a)  # an object array, or a float for 0-d input
        out = np.asarray(values, dtype=a.dtype if a.dtype.kind == "f" else np.float64)
    return np.asarray(out)


def _build_cupyx() -> types.ModuleType:
    ns = types.ModuleType("tinynet.sim.cupyx", "A stand-in for the cupyx module (only what tinynet uses).")
    ns.scipy = types.ModuleType("tinynet.sim.cupyx.scipy")
    ns.scipy.special = types.ModuleType("tinynet.sim.cupyx.scipy.special")
    ns.scipy.special.erf = _erf
    return ns




@contextlib.contextmanager
def counting():
    """``with counting() as c:`` ... ``c['device_to_host']``: the change of every counter over
    the block (``peak_bytes`` is measured from the block's start)."""
    reset_peak()
    before = stats.snapshot()
    names_before = collections.Counter(stats.blocking_names)
    launches_before = collections.Counter(stats.launch_names)
    delta: dict = {}
    try:
        yield delta
    finally:
        after = stats.snapshot()
        delta.update({k: after[k] - before[k] for k in after})
        delta["peak_bytes"] = after["peak_bytes"]
        delta["live_bytes_before"] = before["live_bytes"]
        delta["live_bytes_after"] = after["live_bytes"]
        delta["blocking_names"] = dict(stats.blocking_names - names_before)
        delta["launch_names"] = dict(stats.launch_names - launches_before)


# ============================================================================ stream capture
# CUDA graphs as CuPy makes them: ``stream.begin_capture()``, the work, ``stream.end_capture()``
# returns a Graph whose ``launch()`` runs that work again on the same buffers.
#
# How the simulator emulates it:
#
# * Nothing captured runs. Every op still computes eagerly (so shapes and values exist for the
#   Python that drives it), but ``end_capture`` puts every device buffer that existed at
#   ``begin_capture`` back as it was: parameters, optimiser state, the Philox offset and the
#   graph's own memory hold what they held before, as on a GPU, where capture only records.
# * The graph records each op as a replayable call on the same NumPy buffers: each emulated
#   CUDA C launch (:func:`capture_kernel`), each of the stand-in's array ops, each fill and copy.
#   An op that made a new buffer replays into that same buffer.
# * What real CuPy or CUDA refuses during capture raises here, with the same exception type and
#   message start: a host synchronisation (``synchronize``: CUDARuntimeError
#   cudaErrorStreamCaptureUnsupported, and the capture is invalidated), a device-to-host copy
#   (``get``/``asnumpy``/any implicit read: RuntimeError "... D2H transfers are disallowed"), a
#   pageable host-to-device copy (``asarray`` of NumPy data: "... H2D transfers are
#   disallowed"), an op whose output size depends on the data (it must synchronise), a CuPy
#   cuBLAS call (``matmul``/``dot``/``tensordot``/...: NotImplementedError, because CuPy's
#   wrappers call ``cublasSetStream``, which refuses a capturing stream) and ``cupy.random``
#   (NotImplementedError, cuRAND). :func:`cublas_gemm` stands for cuBLAS called directly,
#   which captures fine.
# * A memory-pool allocation raises too. Real CuPy would allow it, and that is the bug it
#   prevents: the block returns to the pool when its array dies after capture, the pool hands it
#   to other arrays, and every replay keeps writing it. A graph's memory must come from an
#   allocator installed with ``cupy.cuda.using_allocator(fn)`` (``fn(nbytes)`` returns a
#   :class:`MemoryPointer`), e.g. offsets in one block allocated before capture; an allocator
#   installed outside capture sees every allocation too (how a plan learns the sizes).
#
# Limits: one stream captures at a time, and it must be the current stream (``with stream:``);
# work on other streams is not modelled.
class CUDARuntimeError(RuntimeError):
    """``cupy.cuda.runtime.CUDARuntimeError``: a CUDA runtime call failed."""


_capture = None      # the _Capture of the stream capturing now, else None (checked by every op)
_allocator = None    # the allocator installed with set_allocator/using_allocator, else None (the pool)
_DIRECT_GEMM = "cublas_gemm"
_LT_GEMM = "cublaslt_gemm"     # a GEMM with a bias epilogue (kernels/gemm.py), also called directly

_CAPTURE_ERRORS = {
    "sync": (CUDARuntimeError, "cudaErrorStreamCaptureUnsupported: operation not permitted when stream is "
             "capturing ({what}); CUDA also invalidates the capture, so end_capture() raises "
             "cudaErrorStreamCaptureInvalidated"),
    "blocking": (RuntimeError, "the current stream is capturing, so synchronous API calls are disallowed "
                 "({what}: its output's size depends on the data, which CuPy must read back first)"),
    "d2h": (RuntimeError, "the current stream is capturing, so D2H transfers are disallowed ({what}): CuPy "
            "refuses to read device memory on the host while a graph is being captured"),
    "h2d": (RuntimeError, "the current stream is capturing, so H2D transfers are disallowed ({what}): copy "
            "host data to a device buffer before the capture (a graph can only copy device to device)"),
    "cublas": (NotImplementedError, "calling cuBLAS API during stream capture is currently unsupported "
               "({what}): CuPy's cuBLAS wrappers call cublasSetStream, which refuses a capturing stream; "
               "call cuBLAS directly with its stream and workspace set before the capture "
               "(tinynet.kernels.gemm)"),
    "curand": (NotImplementedError, "calling cuRAND API during stream capture is currently unsupported "
               "({what}): draw from a counter-based generator whose state is in device memory instead"),
    "alloc": (RuntimeError, "memory pool allocation during stream capture ({what}): real CuPy would hand the "
              "graph a pool block that returns to the pool when its array dies, is given to other arrays, and "
              "is still written by every replay (silent corruption); the simulator refuses it. Install an "
              "allocator over memory that lives as long as the graph: cupy.cuda.using_allocator(fn)"),
}


def _capture_error(what: str, kind: str) -> Exception:
    error_type, message = _CAPTURE_ERRORS[kind]
    if kind == "sync":
        _capture.invalidate(what)
    return error_type(message.format(what=what))


def _refuse_while_capturing(what: str, kind: str) -> None:
    """Raise what real CuPy/CUDA would raise for ``what`` while the current stream captures."""
    if _capture is not None:
        raise _capture_error(what, kind)


class _Capture:
    """The state of one stream capture: the recorded calls and what to put back at the end."""

    def __init__(self, stream):
        self.stream, self.calls, self.kernels, self.invalid = stream, [], 0, None
        # Every live device buffer's contents, to restore at end_capture (capture runs nothing).
        self.saved = [(ref, owner.copy()) for _, ref in list(_buffers.values())
                      if (owner := ref()) is not None and owner.flags.writeable]

    def record(self, call) -> None:
        self.calls.append(call)

    def invalidate(self, why: str) -> None:
        if self.invalid is None:
            self.invalid = why

    def restore(self) -> None:
        for ref, saved in self.saved:
            owner = ref()
            if owner is not None:
                np.copyto(owner, saved)
        self.saved = []


def _begin_capture(stream) -> None:
    global _capture
    if stream.ptr == 0:
        raise RuntimeError("cannot capture on the default (legacy) stream")
    if _capture is not None:
        raise CUDARuntimeError("cudaErrorIllegalState: the simulator captures one stream at a time, and "
                               f"{_capture.stream!r} is capturing")
    if _current_stream() is not stream:
        raise RuntimeError("the simulator captures the current stream only: call begin_capture() inside "
                           "`with stream:`")
    _capture = _Capture(stream)


def _end_capture(stream) -> "Graph":
    global _capture
    capture = _capture
    if capture is None or capture.stream is not stream:
        raise CUDARuntimeError("cudaErrorIllegalState: end_capture() on a stream that is not capturing")
    _capture = None
    capture.restore()
    if capture.invalid is not None:
        raise CUDARuntimeError(f"cudaErrorStreamCaptureInvalidated: the capture was invalidated by "
                               f"{capture.invalid}")
    return Graph(capture.calls, capture.kernels)


class Graph:
    """``cupy.cuda.Graph``: the work captured on a stream. ``launch()`` runs it again, in order,
    on the buffers it was captured with (one launch on the host, whatever it holds)."""

    def __init__(self, calls, kernels: int):
        self._calls, self.kernels = tuple(calls), kernels

    def launch(self, stream=None) -> None:
        stats._launch("cuda_graph")
        for call in self._calls:
            call()

    def upload(self, stream=None) -> None:
        """Make the graph resident on the device (nothing to do here)."""

    def __repr__(self) -> str:
        return f"<Graph of {self.kernels} kernels (simulated)>"


def capture_kernel(run) -> None:
    """Run an emulated kernel launch (``run()``, no arguments), recording it while capturing."""
    run()
    if _capture is not None:
        _capture.record(run)


def _array_leaves(value, found) -> list:
    if isinstance(value, (np.ndarray, np.generic)):
        found.append(value)
    elif isinstance(value, (tuple, list)):
        for item in value:
            _array_leaves(item, found)
    return found


def _captured_call(run, name: str, outs, dev):
    """An op while the current stream captures: refuse what CuPy refuses, run it, put the buffers
    it made in the allocator's memory, and record a call that redoes it into those buffers."""
    if name in _GEMMS:
        _refuse_while_capturing(f"cupy.{name}", "cublas")
    result = run()
    _count_launch(name, result, outs is not None)
    if name in _DEVICE_BOOL:
        result = np.asarray(result)
        run = (lambda inner: lambda: np.asarray(inner()))(run)
    leaves = _array_leaves(result, [])
    new = [i for i, leaf in enumerate(leaves) if _is_new_buffer(leaf)]
    if not new:
        if outs is not None or name in _WRITES_IN_PLACE:
            _capture.record(run)
        return outs if outs is not None else _wrap(result, dev)
    targets = [_place(np.asarray(leaves[i])) for i in new]

    def replay():
        values = _array_leaves(run(), [])
        for i, target in zip(new, targets):
            np.copyto(target, values[i], casting="unsafe")
    _capture.record(replay)
    placed = iter(targets)
    index = iter(range(len(leaves)))

    def rebuild(value):
        if isinstance(value, (np.ndarray, np.generic)):
            return next(placed) if next(index) in new else value
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return tuple(rebuild(v) for v in value)
        if isinstance(value, list):
            return [rebuild(v) for v in value]
        return value
    return _wrap(rebuild(result), dev)


def cublas_gemm(a, b, out=None):
    """``a @ b`` (into ``out`` if given) as tinynet calls cuBLAS directly on a GPU (not through
    CuPy's wrappers): counted as a GEMM, and allowed while a stream captures."""
    return _call(np.matmul, _DIRECT_GEMM, (a, b), {} if out is None else {"out": out})


def _lt_gemm(a, b, bias, out, kind):
    np.matmul(a, b, out=out)
    if kind == "bias":
        out += bias
    else:
        np.sum(a, axis=1, out=bias)


def cublaslt_gemm(a, b, bias, out, kind: str):
    """``out = a @ b`` with a cuBLASLt epilogue, as ``tinynet.kernels.gemm`` calls it on a GPU:
    ``kind`` 'bias' adds ``bias`` to every row of ``out``; 'bias_grad' writes ``a.sum(axis=1)``
    into ``bias``. One launch, counted as a GEMM, allowed while a stream captures."""
    if kind not in ("bias", "bias_grad"):
        raise ValueError(f"cublaslt_gemm: kind must be 'bias' or 'bias_grad', got {kind!r}")
    _call(lambda a, b, out: _lt_gemm(a, b, out[0], out[1], kind), _LT_GEMM, (a, b),
          {"out": (bias, out)})
    return out


# ----------------------------------------------------------------------- allocators, memory
class Memory:
    """``cupy.cuda.Memory``: ``size`` bytes of device memory of its own."""

    def __init__(self, size: int):
        self.size = int(size)
        self._bytes = np.empty(self.size, np.uint8)
        _track(self._bytes)
        self.device_id = _current_id()

    @property
    def ptr(self) -> int:
        return self._bytes.__array_interface__["data"][0]


class MemoryPointer:
    """``cupy.cuda.MemoryPointer``: ``offset`` bytes into a :class:`Memory`; what an allocator
    returns. ``ptr + n`` is another pointer into the same memory."""

    def __init__(self, mem: Memory, offset: int):
        self.mem, self.offset = mem, int(offset)
        self.device_id = mem.device_id

    @property
    def ptr(self) -> int:
        return self.mem.ptr + self.offset

    @property
    def device(self) -> Device:
        return Device(self.device_id)

    def __add__(self, offset: int) -> "MemoryPointer":
        return MemoryPointer(self.mem, self.offset + int(offset))

    def _view(self, nbytes: int) -> np.ndarray:
        if self.offset < 0 or self.offset + nbytes > self.mem.size:
            raise ValueError(f"MemoryPointer: {nbytes} bytes at offset {self.offset} run past the end of a "
                             f"{self.mem.size}-byte Memory")
        return self.mem._bytes[self.offset:self.offset + nbytes]


def _pool_malloc(size: int) -> MemoryPointer:
    _refuse_while_capturing(f"{int(size)} bytes", "alloc")
    return MemoryPointer(Memory(size), 0)


def alloc(size: int) -> MemoryPointer:
    """``cupy.cuda.alloc``: ``size`` bytes from the current allocator (the pool by default)."""
    return (_allocator or _pool_malloc)(size)


def set_allocator(allocator=None) -> None:
    """``cupy.cuda.set_allocator``: every later device allocation calls ``allocator(nbytes)``
    (None: the memory pool again)."""
    global _allocator
    _allocator = allocator


def get_allocator():
    return _allocator or _pool_malloc


@contextlib.contextmanager
def using_allocator(allocator=None):
    """``cupy.cuda.using_allocator``: :func:`set_allocator` for the block."""
    global _allocator
    previous, _allocator = _allocator, allocator
    try:
        yield
    finally:
        _allocator = previous


def _place(a: np.ndarray) -> np.ndarray:
    """Where a buffer an op just made lives: the pool (``a`` itself, counted) unless an allocator
    is installed, which then gives the memory that ``a``'s values are copied into. Views of
    existing buffers stay as they are. While capturing without an allocator: refused."""
    if _allocator is None and _capture is None:  # the usual case
        _track(a)
        return a
    if a.nbytes == 0 or id(_owner(a)) in _buffers:
        _track(a)
        return a
    if _allocator is None:
        _refuse_while_capturing(f"{a.nbytes} bytes for an array of shape {a.shape}", "alloc")
    pointer = _allocator(a.nbytes)
    if not isinstance(pointer, MemoryPointer):
        raise TypeError(f"the installed allocator returned {type(pointer).__name__}, expected a "
                        "cupy.cuda.MemoryPointer")
    order = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
    placed = np.ndarray(a.shape, a.dtype, buffer=pointer._view(a.nbytes), order=order)
    placed[...] = a
    _track(placed)
    return placed


_memory_pool.malloc = _pool_malloc


cupy = _build_cupy()
cupyx = _build_cupyx()


# Register with tinynet.backend, so that get_array_module recognises SimArrays.
import sys  # noqa: E402

from . import backend as _backend  # noqa: E402

_backend._sim = sys.modules[__name__]
