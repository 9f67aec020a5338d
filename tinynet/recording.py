"""Recording one run of a step as a flat program of kernel calls, for :func:`tinynet.compile_step`.

While a :class:`Recorder` is active, every call that makes or changes arrays is written down as
one *instruction*: which Python function ran, which arrays it read and which it returned.
Arrays are named by *registers*: an array made during the step gets the next register; an
array that existed before (a parameter, a BatchNorm running mean, the step's input buffers) is
a *constant*, held by reference. Replaying the program calls the same functions again, in the
same order, on the new arrays, with none of the Python around them: no modules, no argument
checks, no Tensor objects, no graph to build or walk.

Three kinds of call are recorded, and together they cover everything a step does to arrays:

- ``Function.apply`` records the op's ``forward`` (see ``autograd.py``);
- the backward pass records its engine steps (the ones gradient, each node's ``backward``,
  gradient sums and reshapes, accumulation into ``.grad``);
- functions decorated with :func:`recordable` record themselves as one opaque call: factories
  and random draws, in-place tensor updates, ``optimizer.step()`` and ``zero_grad()``. Their
  inner ops are not recorded separately: replay calls the function itself again.

What cannot be recorded is noted with :meth:`Recorder.fail` (a read of device memory on the
host, as ``loss.item()``, whose value Python code might branch on): the step still runs to the
end, eagerly, and ``compile_step`` then falls back to eager execution, naming the reason.
"""
from __future__ import annotations

import collections.abc
import functools
import os
import traceback

import numpy as np

from . import backend

__all__ = ["Recorder", "recordable", "active_recorder", "note_host_read"]

_active = None  # the Recorder while a step is being recorded, else None
Tensor = None   # tinynet.Tensor, set by tensor.py (which imports this module before defining it)

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def active_recorder():
    """The Recorder that should note the next call: the active one, unless it is paused inside
    an opaque call it is already recording; else None."""
    recorder = _active
    return None if recorder is None or recorder.paused else recorder


def recordable(fn):
    """Decorator for a function that makes or updates arrays outside ``Function.apply`` (a
    factory, a random draw, an in-place update, an optimiser step): while a step is recorded,
    a call to it becomes one instruction, and replay calls it again with that replay's arrays.
    Costs one global lookup when nothing is recorded."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        recorder = active_recorder()
        if recorder is None:
            return fn(*args, **kwargs)
        return recorder.call(fn, args, kwargs)
    return wrapper


def note_host_read(what: str) -> None:
    """Called where device memory is read on the host: a recorded step cannot contain that."""
    if _active is not None:
        _active.fail(f"{what} reads a value from the device on the host{_user_location()}; a replayed "
                     "step cannot read values (log every N steps outside the step instead)")


def _user_location() -> str:
    """' at FILE:LINE (code)' of the innermost frame outside tinynet, for error messages."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if not os.path.abspath(frame.filename).startswith(_PACKAGE_DIR):
            code = f" ({frame.line.strip()})" if frame.line else ""
            return f" at {os.path.basename(frame.filename)}:{frame.lineno}{code}"
    return ""


# ------------------------------------------------------------------------------ the program
# An argument of an instruction is a pair (kind, value):
REG = 0       # value: a register index; the array made earlier in this replay
CONST = 1     # value: an array that existed before the step, held by reference
TENSOR = 2    # value: a Tensor that existed before the step (a parameter): passed as itself to
#               opaque calls, and as its current ``.data`` to kernels (so a reloaded weight is seen)
LITERAL = 3   # value: a Python value (a number, a shape, a Context, a Function class)
SEQUENCE = 4  # value: (type, [argument, ...]) for a list or tuple that holds arrays or tensors


class Instruction:
    """One recorded call: ``outputs = fn(*args, **kwargs)``.

    ``as_arrays`` says how tensors made in the step are passed: as raw arrays (kernels:
    ``forward``, ``backward`` and the engine's steps) or wrapped in Tensors (opaque
    :func:`recordable` calls, which take tensors). ``outputs`` is a register, None (nothing
    kept), or a list of (register or None) for a tuple result.
    """

    __slots__ = ("fn", "args", "kwargs", "outputs", "as_arrays", "release")

    def __init__(self, fn, args, kwargs, outputs, as_arrays):
        self.fn, self.args, self.kwargs, self.outputs, self.as_arrays = fn, args, kwargs, outputs, as_arrays
        self.release = ()  # registers whose last use is this call: dropped after it (set by compile_step)

    def run(self, registers) -> None:
        args = [_resolve(a, registers, self.as_arrays) for a in self.args]
        kwargs = {k: _resolve(a, registers, self.as_arrays) for k, a in self.kwargs.items()} \
            if self.kwargs else {}
        result = self.fn(*args, **kwargs)
        outputs = self.outputs
        if type(outputs) is int:
            registers[outputs] = _array_of(result)
        elif outputs is not None:
            for register, value in zip(outputs, result):
                if register is not None:
                    registers[register] = _array_of(value)
        for register in self.release:  # as eager execution would, free what is no longer needed
            registers[register] = None

    def registers_read(self):
        """The registers this call reads."""
        found = []
        for arg in list(self.args) + list(self.kwargs.values()):
            _collect_registers(arg, found)
        return found

    def registers_written(self):
        """The registers this call writes."""
        if self.outputs is None:
            return []
        return [self.outputs] if type(self.outputs) is int else [r for r in self.outputs if r is not None]

    def __repr__(self) -> str:
        name = _show_literal(self.fn)
        args = ", ".join(_show(a) for a in self.args)
        return f"{_show_outputs(self.outputs)} = {name}({args})"


def _resolve(arg, registers, as_arrays: bool):
    kind, value = arg
    if kind == REG:
        array = registers[value]
        return array if as_arrays else Tensor._wrap(array)
    if kind == TENSOR:
        return value.data if as_arrays else value
    if kind == SEQUENCE:
        container, items = value
        return container(_resolve(item, registers, as_arrays) for item in items)
    return value  # CONST and LITERAL


def _collect_registers(arg, found) -> None:
    kind, value = arg
    if kind == REG:
        found.append(value)
    elif kind == SEQUENCE:
        for item in value[1]:
            _collect_registers(item, found)
    elif kind == "dict":
        for item in value.values():
            _collect_registers(item, found)


def _array_of(value):
    """The array inside a result (Tensor or array), or the value itself."""
    return value.data if isinstance(value, Tensor) else value


def _show(arg) -> str:
    kind, value = arg
    if kind == REG:
        return f"r{value}"
    if kind == CONST:
        return f"const{tuple(value.shape)}"
    if kind == TENSOR:
        return f"tensor{tuple(value.shape)}"
    if kind == SEQUENCE:
        return "[" + ", ".join(_show(a) for a in value[1]) + "]"
    return _show_literal(value)


def _show_literal(value) -> str:
    if isinstance(value, functools.partial):
        return f"{_show_literal(value.func)}[{', '.join(_show_literal(a) for a in value.args)}]"
    if Tensor is not None and isinstance(value, Tensor):
        return f"tensor{tuple(value.shape)}"
    if callable(value) and hasattr(value, "__qualname__"):
        return value.__qualname__
    text = repr(value)
    if len(text) > 40 or "\n" in text:
        return f"<{type(value).__name__}>"
    return text


def _show_outputs(outputs) -> str:
    if outputs is None:
        return "_"
    if type(outputs) is int:
        return f"r{outputs}"
    return "(" + ", ".join("_" if r is None else f"r{r}" for r in outputs) + ")"


# ------------------------------------------------------------------------------ the recorder
class Recorder:
    """Writes down one eager run of a step as a list of :class:`Instruction`.

    Use as a context manager around the step; ``inputs`` are the arrays the step reads its
    batch from (registers 0, 1, ...). Every array seen is kept alive until the recorder is
    dropped, so that ``id()`` names one array only.
    """

    def __init__(self, inputs=()):
        self.program: list[Instruction] = []
        self.register_of: dict[int, int] = {}   # id(array) -> register
        self.values: list = []                  # register -> the array it held while recording
        self.constants: dict = {}               # id -> array or tensor that existed before the step
        self.failure: str | None = None
        self.paused = 0
        self.n_inputs = len(inputs)
        for array in inputs:
            self._new_register(array)

    def __enter__(self):
        global _active
        if _active is not None:
            raise RuntimeError("compile_step: a step is already being recorded (nested compiled steps are "
                               "not supported)")
        _active = self
        return self

    def __exit__(self, *exc):
        global _active
        _active = None
        return False

    def fail(self, reason: str) -> None:
        """Mark the recording unusable (the first reason is kept); the step itself goes on."""
        if self.failure is None:
            self.failure = reason

    # ---------------------------------------------------------------- recording calls
    def call(self, fn, args, kwargs, as_arrays: bool = False, named=None):
        """Run ``fn(*args, **kwargs)`` eagerly (its inner calls unrecorded) and record it.
        ``named``, if given, are the values to record in place of ``args`` (the tensors whose
        arrays ``args`` holds, so that a replay reads each parameter's current array)."""
        # A one-shot iterator (``model.parameters()``) would be empty on replay: take it as a list.
        args = [list(a) if isinstance(a, collections.abc.Iterator) else a for a in args]
        arg_specs = [self._argument(a) for a in (args if named is None else named)]
        kwarg_specs = {k: self._argument(v) for k, v in kwargs.items()}
        self.paused += 1
        try:
            result = fn(*args, **kwargs)
        finally:
            self.paused -= 1
        inputs = {id(a) for a in args} | {id(a.data) for a in args if isinstance(a, Tensor)}
        self.program.append(Instruction(fn, arg_specs, kwarg_specs, self._bind(result, inputs), as_arrays))
        return result

    def _argument(self, value):
        if isinstance(value, Tensor):
            register = self.register_of.get(id(value.data))
            if register is not None:
                return (REG, register)
            self._remember(value)
            return (TENSOR, value)
        if _is_array(value) or isinstance(value, np.generic):
            register = self.register_of.get(id(value))  # a scalar may be a result of an earlier call
            if register is not None:
                return (REG, register)
            if isinstance(value, np.generic):
                return (LITERAL, value)
            self._remember(value)
            return (CONST, value)
        if isinstance(value, (list, tuple)) and _holds_arrays(value):
            container = list if isinstance(value, list) else tuple
            return (SEQUENCE, (container, [self._argument(v) for v in value]))
        return (LITERAL, value)

    def _remember(self, value) -> None:
        self.constants.setdefault(id(value), value)

    def _bind(self, result, inputs):
        """Registers for the arrays in ``result``. An input returned as it is (an in-place
        update returning ``self``) keeps the name it had."""
        if result is None:
            return None
        if isinstance(result, (tuple, list)):
            return [self._bind_one(r, inputs) for r in result]
        return self._bind_one(result, inputs)

    def _bind_one(self, value, inputs):
        array = _array_of(value)
        if not (_is_array(array) or isinstance(array, np.generic)) or id(value) in inputs or id(array) in inputs:
            return None
        return self._new_register(array)

    def _new_register(self, array) -> int:
        register = len(self.values)
        self.values.append(array)
        self.register_of[id(array)] = register
        return register

    # ---------------------------------------------------------------- results
    def output_spec(self, value):
        """How to rebuild the step's return value from a replay's registers."""
        if isinstance(value, Tensor) or _is_array(value):
            return self._argument(value)
        if isinstance(value, (list, tuple)):
            return (SEQUENCE, (type(value) if type(value) in (list, tuple) else tuple,
                               [self.output_spec(v) for v in value]))
        if isinstance(value, dict):
            return ("dict", {k: self.output_spec(v) for k, v in value.items()})
        return (LITERAL, value)


def _holds_arrays(value) -> bool:
    """Whether a (nested) list or tuple holds a tensor or an array."""
    return any(isinstance(v, Tensor) or _is_array(v) or (isinstance(v, (list, tuple)) and _holds_arrays(v))
               for v in value)


def _is_array(value) -> bool:
    """A NumPy, CuPy or simulated-device array (not a NumPy scalar: those are literals)."""
    return isinstance(value, np.ndarray) or backend._is_cupy_array(value) or backend._is_sim_array(value)
