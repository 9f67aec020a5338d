"""Record once, replay fast: :func:`compile_step` turns a training (or evaluation) step into a
flat list of kernel calls.

Most of a small model's step is not arithmetic: it is Python building the graph (modules,
argument checks, Tensor and Context objects) and walking it backwards. A step does the same
work every time, so ``compile_step`` runs it eagerly while a :class:`~tinynet.recording.Recorder`
writes down each kernel call (each op's ``forward``, each node's ``backward``, each gradient
sum, the optimiser's update), and from then on *replays* that list on each new batch::

    def train_step(x, y):
        optimizer.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    step = tinynet.compile_step(train_step, model=model)
    for x, y in loader:
        loss = step(x, y)        # calls 1: eager; 2 and 3: recorded; then replayed

How it stays correct:

- The step is recorded twice, on two different batches, and the two recordings must match:
  the same calls in the same order, and every array that came from outside the recorded calls
  either the same object both times (a parameter, a running mean) or equal in value. A
  difference means the step's work depends on its data in a way the recording cannot see
  (Python ``if`` on a value, an array computed without tinynet's ops), and compile_step falls
  back to eager execution, printing the reason.
- A step that reads device memory on the host (``loss.item()``, ``float(loss)``, printing a
  tensor) cannot be replayed without the read: it falls back too, naming the line.
- Each distinct input signature (shapes, dtypes, devices, non-tensor arguments, grad mode and,
  with ``model=``, the train/eval mode of its modules) gets its own recording, so the smaller
  last batch of an epoch and ``model.eval()`` are handled.
- Random ops (dropout masks) are recorded as calls of the generator, so every replay draws new
  numbers from the same seeded sequence as eager steps would. Optimiser steps are replayed as
  calls of ``optimizer.step()``, so a scheduler's new learning rate is used at once.

What the recording cannot see: Python code that writes into arrays directly (``t.data[...] =
...``, ``t.data += ...``) rather than through tinynet's ops and in-place methods. tinynet's own
in-place paths (``relu(inplace=True)``, ``add_``, ``copy_``, ...) are recorded.

Python side effects of the step itself (printing, appending to a list, a module's forward
hooks) happen on the eager and recorded calls only: a replay runs none of the step's Python.
Gradient hooks (``register_hook``) are part of the backward pass and do run on every replay.

What a replay returns: the step's return value with every tensor detached (the graph is not
built, so there is nothing to call ``backward`` on).

On the CPU the replay is the executor. On a CUDA device (``cuda_graph=True``, the default), the
first replay of a signature also captures the program into a CUDA graph
(:mod:`tinynet.cuda_graph`), and every later call is one graph launch: the batch is copied into
static input buffers, and **the returned tensors are the graph's output buffers, overwritten by
the next call** (``clone()`` what must outlive it). A step that cannot be captured keeps
replaying its list, with a message naming the call that prevented capture.
"""
from __future__ import annotations

import functools
import sys

import numpy as np

from . import cuda_graph as _cuda_graph
from .autograd import Context, is_grad_enabled
from .backend import get_array_module, item
from . import recording
from .recording import CONST, LITERAL, REG, SEQUENCE, TENSOR, Recorder
from .tensor import Tensor

__all__ = ["compile_step", "CompiledStep"]


def compile_step(step_fn=None, *, model=None, warmup: int = 1, verbose: bool = True, cuda_graph: bool = True):
    """Compile ``step_fn(*tensors_and_values)`` by recording it and replaying the recording.

    Args:
        step_fn: the step; it may take tensors and other (hashable) values and return a tensor,
            or a tuple, list or dict of them, or None.
        model: the module(s) the step trains (a Module or a list of them): their train/eval
            modes become part of the signature, so switching mode records a new program.
        warmup: eager calls before recording starts (per input signature), e.g. so that the
            optimiser has made its state buffers.
        verbose: print why a step falls back to eager execution (or to the list replay).
        cuda_graph: on a CUDA device, capture the replayed program into one CUDA graph per
            signature (see the module docstring: the returned tensors are then overwritten by
            the next call).

    Returns a :class:`CompiledStep`; usable as a decorator too (``@compile_step(model=m)``).
    """
    if step_fn is None:
        return lambda fn: CompiledStep(fn, model=model, warmup=warmup, verbose=verbose, cuda_graph=cuda_graph)
    return CompiledStep(step_fn, model=model, warmup=warmup, verbose=verbose, cuda_graph=cuda_graph)


class _Entry:
    """What a CompiledStep knows about one input signature."""

    def __init__(self):
        self.calls = 0
        self.first = None        # (Recorder, output spec) of the first recording
        self.program = None      # the instructions to replay
        self.n_registers = 0
        self.n_inputs = 0
        self.output = None       # how to build the return value from the registers
        self.fallback = None     # why this signature runs eagerly, or None
        self.guards = ()         # (tensor, requires_grad, shape, dtype) of the tensors the program reads
        self.graph = None        # the cuda_graph.GraphStep that replays the program in one launch
        self.graph_fallback = None   # why the program could not be captured, or None


class CompiledStep:
    """A step function that is recorded on its first calls and replayed afterwards; see
    :func:`compile_step`. ``program(*args)`` shows the recorded instructions for a signature,
    ``fallback_reason(*args)`` why it runs eagerly (None when it replays)."""

    def __init__(self, step_fn, *, model=None, warmup: int = 1, verbose: bool = True, cuda_graph: bool = True):
        self.step_fn = step_fn
        self.cuda_graph = cuda_graph
        self.models = [] if model is None else (list(model) if isinstance(model, (list, tuple)) else [model])
        self.warmup = int(warmup)
        self.verbose = verbose
        self._entries: dict = {}
        self._unhashable = None  # the entry of calls whose arguments cannot be a signature
        functools.update_wrapper(self, step_fn)

    # ------------------------------------------------------------------ calling
    def __call__(self, *args):
        entry = self._entry(args)
        entry.calls += 1
        if entry.program is not None:
            if _guards_hold(entry.guards):
                if entry.graph is not None:
                    registers = entry.graph.launch([a.data for a in args if isinstance(a, Tensor)])
                    return _build(entry.output, registers)
                if self.cuda_graph and entry.graph_fallback is None:
                    return self._capture(entry, args)
                return self._replay(entry, args)
            # A parameter was frozen, unfrozen, cast or resized since recording: record again.
            entry = self._entries[self._signature(args)] = _Entry()
            entry.calls = 1
        if entry.fallback is not None or entry.calls <= self.warmup:
            return self.step_fn(*args)
        return self._record(entry, args)

    def _signature(self, args):
        parts = []
        for a in args:
            if isinstance(a, Tensor):
                parts.append(("tensor", a.data.shape, a.data.dtype.str, str(a.device), a.requires_grad))
            else:
                parts.append(("value", type(a).__name__, a))
        modes = tuple(m.training for model in self.models for m in model.modules())
        return tuple(parts), is_grad_enabled(), modes

    def _entry(self, args) -> _Entry:
        try:
            key = self._signature(args)
            entry = self._entries.get(key)
        except TypeError:  # an unhashable argument: record nothing, run eagerly
            entry = self._unhashable
            if entry is None:
                entry = self._unhashable = _Entry()
                self._fall_back(entry, "an argument is not hashable (pass tensors and plain values)")
            return entry
        if entry is None:
            entry = self._entries[key] = _Entry()
            if any(isinstance(a, Tensor) and a.requires_grad for a in args):
                entry.fallback = "an input tensor requires grad (gradients of step inputs are not recorded)"
        return entry

    # ------------------------------------------------------------------ recording
    def _record(self, entry: _Entry, args):
        inputs = [a.data for a in args if isinstance(a, Tensor)]
        with Recorder(inputs) as recorder:
            result = self.step_fn(*args)
            output = recorder.output_spec(result)
        if recorder.failure is None and _returns_outside_arrays(output):
            recorder.fail("the step returns an array it did not make (return tensors the step computes)")
        if recorder.failure is not None:
            self._fall_back(entry, recorder.failure)
        elif entry.first is None:
            entry.first = (recorder, output)
        else:
            difference = _difference(entry.first, (recorder, output))
            entry.first = None  # let the first recording's arrays go
            if difference is not None:
                self._fall_back(entry, difference)
            else:
                entry.program = recorder.program
                _plan_releases(entry.program, output, recorder.n_inputs)
                entry.guards = tuple((t, t.requires_grad, t.data.shape, t.data.dtype)
                                     for t in recorder.constants.values() if isinstance(t, Tensor))
                entry.n_registers = len(recorder.values)
                entry.n_inputs = recorder.n_inputs
                entry.output = output
        return result

    def _fall_back(self, entry: _Entry, reason: str) -> None:
        entry.fallback = reason
        entry.first = None
        if self.verbose:
            name = getattr(self.step_fn, "__name__", "step")
            print(f"compile_step({name}): running eagerly: {reason}", file=sys.stderr)

    # ------------------------------------------------------------------ replaying
    def _replay(self, entry: _Entry, args):
        return _build(entry.output, _run_program(entry, [a.data for a in args if isinstance(a, Tensor)]))

    def _capture(self, entry: _Entry, args):
        """Replay this call and capture the program into a CUDA graph on the way (CUDA only)."""
        arrays = [a.data for a in args if isinstance(a, Tensor)]
        if not _cuda_graph.is_cuda(arrays):
            entry.graph_fallback = "not on a CUDA device"
            return self._replay(entry, args)
        registers, entry.graph, reason = _cuda_graph.capture_step(lambda inputs: _run_program(entry, inputs), arrays)
        if reason is not None:
            entry.graph_fallback = reason
            if self.verbose:
                name = getattr(self.step_fn, "__name__", "step")
                print(f"compile_step({name}): replaying the recorded calls one by one: {reason}", file=sys.stderr)
        return _build(entry.output, registers)

    # ------------------------------------------------------------------ inspection
    def program(self, *args) -> list:
        """The recorded instructions for the signature of ``args`` (empty if not recorded)."""
        entry = self._entry(args)
        return list(entry.program) if entry.program is not None else []

    def fallback_reason(self, *args):
        """Why calls with the signature of ``args`` run eagerly, or None."""
        return self._entry(args).fallback

    def graph(self, *args):
        """The CUDA graph (:class:`tinynet.cuda_graph.GraphStep`) that runs calls with the
        signature of ``args``, or None (not captured yet, or not capturable)."""
        return self._entry(args).graph

    def graph_fallback_reason(self, *args):
        """Why calls with the signature of ``args`` are not run as a CUDA graph, or None."""
        return self._entry(args).graph_fallback


def _run_program(entry: _Entry, inputs) -> list:
    """Run the recorded program on ``inputs`` (the step's input arrays); returns the registers.
    An error names the recorded call that raised it (``error.tinynet_instruction``)."""
    registers = [None] * entry.n_registers
    registers[:entry.n_inputs] = inputs
    for instruction in entry.program:
        try:
            instruction.run(registers)
        except Exception as error:
            if not hasattr(error, "tinynet_instruction"):
                error.tinynet_instruction = repr(instruction)
            raise
    return registers


def _plan_releases(program, output, n_inputs) -> None:
    """Give each instruction the registers to drop after it runs: those it is the last reader
    (or, if never read, the writer) of, except the step's inputs and what the step returns. A
    replay then holds no more arrays at once than the eager step did."""
    returned = []
    recording._collect_registers(output, returned)
    kept = set(range(n_inputs)) | set(returned)
    last = {}
    for index, instruction in enumerate(program):
        for register in instruction.registers_written():
            last.setdefault(register, index)
        for register in instruction.registers_read():
            last[register] = index
    releases = [[] for _ in program]
    for register, index in last.items():
        if register not in kept:
            releases[index].append(register)
    for instruction, release in zip(program, releases):
        instruction.release = tuple(release)


def _guards_hold(guards) -> bool:
    """Whether every tensor the program reads still requires grad (or not), and has the shape
    and dtype, that it had when the program was recorded."""
    for tensor, requires_grad, shape, dtype in guards:
        if tensor._requires_grad != requires_grad or tensor.data.shape != shape or tensor.data.dtype != dtype:
            return False
    return True


def _build(spec, registers):
    kind, value = spec
    if kind == REG:
        return Tensor._wrap(registers[value])
    if kind == TENSOR:
        return Tensor._wrap(value.data)
    if kind == CONST:
        return Tensor._wrap(value)
    if kind == SEQUENCE:
        container, items = value
        return container(_build(item, registers) for item in items)
    if kind == "dict":
        return {k: _build(v, registers) for k, v in value.items()}
    return value


def _returns_outside_arrays(spec) -> bool:
    """Whether the return value holds an array that existed before the step (a parameter, say):
    a replay could only hand back that same array, not a result of its own."""
    kind, value = spec
    if kind in (CONST, TENSOR):
        return True
    if kind == SEQUENCE:
        return any(_returns_outside_arrays(s) for s in value[1])
    if kind == "dict":
        return any(_returns_outside_arrays(s) for s in value.values())
    return False


# ---------------------------------------------------------------------- comparing recordings
def _difference(first, second):
    """None when two recordings of a step did the same work, else a sentence saying where they
    differ (the reason compile_step falls back to eager execution)."""
    (rec_a, out_a), (rec_b, out_b) = first, second
    prog_a, prog_b = rec_a.program, rec_b.program
    if len(prog_a) != len(prog_b):
        return (f"two calls of the step did different work ({len(prog_a)} and {len(prog_b)} recorded calls): "
                "its Python code depends on the data, or makes arrays outside tinynet's ops")
    for index, (a, b) in enumerate(zip(prog_a, prog_b)):
        problem = _instruction_difference(a, b)
        if problem is not None:
            return (f"two calls of the step did different work at recorded call {index} ({b!r}): {problem}; "
                    "its Python code depends on the data, or makes arrays outside tinynet's ops")
    problem = _argument_difference(out_a, out_b)
    if problem is not None:
        return f"the step's return value differs between two calls: {problem}"
    return None


def _instruction_difference(a, b):
    if not _same_literal(a.fn, b.fn) or a.as_arrays != b.as_arrays or a.outputs != b.outputs:
        return "a different function or result"
    if len(a.args) != len(b.args) or a.kwargs.keys() != b.kwargs.keys():
        return "different arguments"
    for x, y in zip(list(a.args) + [a.kwargs[k] for k in a.kwargs], list(b.args) + [b.kwargs[k] for k in a.kwargs]):
        problem = _argument_difference(x, y)
        if problem is not None:
            return problem
    return None


def _argument_difference(x, y):
    (kind_x, x), (kind_y, y) = x, y
    if kind_x != kind_y:
        return "an argument changed kind (an array made inside the step in one call, outside in the other)"
    if kind_x == REG:
        return None if x == y else "an argument came from a different earlier call"
    if kind_x in (CONST, TENSOR):
        if x is y:
            return None
        arr_x, arr_y = (x.data, y.data) if kind_x == TENSOR else (x, y)
        if arr_x.shape != arr_y.shape or arr_x.dtype != arr_y.dtype or not _equal_arrays(arr_x, arr_y):
            return (f"an array of shape {tuple(arr_y.shape)} made outside the recorded calls has different "
                    "values in the two calls")
        return None
    if kind_x == SEQUENCE:
        if x[0] is not y[0] or len(x[1]) != len(y[1]):
            return "a list argument changed"
        for p, q in zip(x[1], y[1]):
            problem = _argument_difference((p[0], p[1]), (q[0], q[1]))
            if problem is not None:
                return problem
        return None
    if kind_x == "dict":
        if x.keys() != y.keys():
            return "a dict changed its keys"
        for k in x:
            problem = _argument_difference(x[k], y[k])
            if problem is not None:
                return problem
        return None
    return None if _same_literal(x, y) else f"a value changed ({x!r} then {y!r})"


def _equal_arrays(a, b) -> bool:
    """Equal values (NaNs equal); one read from the device, once per compiled signature."""
    xp = get_array_module(a)
    same = (a == b) | ((a != a) & (b != b))
    return bool(item(same.all()))


def _same_literal(x, y) -> bool:
    if x is y:
        return True
    if type(x) is not type(y):
        return False
    if isinstance(x, Context):  # a new node for each recording: the same op is what matters
        return x.fn_cls is y.fn_cls
    if isinstance(x, functools.partial):
        return _same_literal(x.func, y.func) and len(x.args) == len(y.args) and \
            all(_same_literal(p, q) for p, q in zip(x.args, y.args)) and x.keywords == y.keywords
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(_same_literal(p, q) for p, q in zip(x, y))
    if isinstance(x, Tensor) or isinstance(x, np.ndarray):
        return False  # tensors in literals are compared by identity only
    try:
        return bool(x == y)
    except Exception:  # objects without a meaningful ==
        return False
