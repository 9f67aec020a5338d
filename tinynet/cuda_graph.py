"""One CUDA graph per step: :func:`tinynet.compile_step`'s executor on a CUDA device.

``compile_step`` records a step as a flat list of kernel calls (:mod:`tinynet.recording`).
Replaying the list still costs a host-side launch per kernel, about 10 us each through CuPy,
which on a small model is most of the step. CUDA can record the kernels a stream runs into a
*graph* and launch the whole graph at once: one launch per step, however many kernels it holds.
:func:`capture_step` turns a recorded program into such a graph:

1. **Static inputs.** A graph reads and writes fixed addresses, so the step's inputs get fixed
   device buffers; each call copies its batch into them (device to device) before launching.
2. **A memory plan.** Nothing may be allocated from the memory pool during capture (a pool
   block freed after capture would be handed to other arrays while every replay still writes
   it). So the program first runs once as a plain replay (this is the call's real step) with an
   allocator that writes down every allocation's size; then one block big enough for all of
   them (the *arena*) is allocated, and the capture runs with an allocator that hands out
   consecutive pieces of it. The arena lives as long as the graph. (No piece is reused within
   the step: simple and safe, at the price of more memory than the eager step's peak.)
3. **The numbers that change.** Kernel arguments are frozen into the graph, so the learning
   rate and Adam's bias corrections are read from device memory
   (:mod:`tinynet.kernels.cuda.scalars`): the optimiser's host part (advance the step count,
   read ``group['lr']``) runs before each launch and writes them there, with no host
   synchronisation. Dropout's Philox offset is already in device memory and advanced by a
   kernel, so every replay draws a new mask.
4. **Capture** on a private stream (the legacy default stream cannot capture), with cuBLAS's
   stream and workspace set before it (:func:`tinynet.kernels.gemm.prepare_capture`). The
   graph is then launched on the caller's current stream, so it is ordered with everything
   else the program does.

Each call then: copy the batch in, write the device scalars, launch. The returned tensors are
views of the graph's output buffers: **the next call overwrites them** (copy with ``clone()``
what must outlive the next step). Loss and metrics stay on the device.

A step that cannot be captured (an op that copies host data to the device, a random draw from
CuPy's generator, a host synchronisation...) raises during the capture; :func:`capture_step`
then returns the reason, naming the recorded call that raised, and ``compile_step`` keeps
replaying the list for that signature. The simulated device (:mod:`tinynet.sim`) emulates
capture and its refusals, so all of this runs in CI without a GPU.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .backend import get_array_module
from .kernels import gemm
from .kernels.cuda import scalars

__all__ = ["GraphStep", "capture_step", "is_cuda", "ALIGNMENT"]

ALIGNMENT = 256   # bytes: CuPy's pool rounds to 512; cuBLAS and vector loads want 256-byte alignment


def _aligned(nbytes: int) -> int:
    return -(-int(nbytes) // ALIGNMENT) * ALIGNMENT


class GraphStep:
    """A captured step: static input buffers, the graph, its arena, the device scalars to write
    before each launch, and the registers that hold the step's outputs."""

    def __init__(self, xp, inputs, graph, arena, hooks, registers, kernels):
        self.xp, self.inputs, self.graph, self.arena = xp, inputs, graph, arena
        self.hooks, self.registers, self.kernels = hooks, registers, kernels

    def launch(self, arrays) -> list:
        """Run the step on new input ``arrays``; returns the registers (outputs are in them)."""
        for static, array in zip(self.inputs, arrays):
            static[...] = array             # device to device: the batch into the static buffers
        for values, array in self.hooks:    # the optimiser's host part: lr, step counts
            scalars.write(array, values())
        self.graph.launch(stream=self.xp.cuda.get_current_stream())
        return self.registers


def is_cuda(arrays) -> bool:
    """Whether these arrays live on a CUDA device (CuPy or the simulated one)."""
    return bool(arrays) and all(get_array_module(a) is not np for a in arrays)


def capture_step(run_program, arrays):
    """Capture the program that ``run_program(inputs)`` replays (it returns the register list)
    into a CUDA graph, running it once on the way (on ``arrays``, the call's inputs).

    Returns ``(registers, graph_step, reason)``: the registers of this call's run (its
    results), then either a :class:`GraphStep` and None, or None and the reason the step
    could not be captured (the list replay goes on for it)."""
    xp = get_array_module(arrays[0])
    inputs = [xp.empty(a.shape, dtype=a.dtype) for a in arrays]
    for static, array in zip(inputs, arrays):
        static[...] = array

    # 1. This call's step, as a plain replay, writing down every allocation's size.
    sizes = []
    pool = xp.get_default_memory_pool()

    def measuring(nbytes):
        sizes.append(nbytes)
        return pool.malloc(nbytes)
    with xp.cuda.using_allocator(measuring):
        registers = run_program(inputs)

    # 2. The arena, and an allocator that hands out its pieces in order.
    total = sum(_aligned(n) for n in sizes)
    arena = xp.cuda.alloc(max(total, ALIGNMENT))
    used = [0]

    def from_arena(nbytes):
        offset = used[0]
        used[0] += _aligned(nbytes)
        if used[0] > total:
            raise MemoryError(f"the captured step allocates more than its plain replay did ({used[0]} > {total} "
                              "bytes): its allocations depend on something other than the recording")
        return arena + offset

    # 3. The capture, on a private stream.
    stream = xp.cuda.Stream(non_blocking=True)
    gemm.prepare_capture(xp, stream)
    failure, graph, captured = None, None, None
    with contextlib.ExitStack() as stack:
        stack.enter_context(stream)
        stack.enter_context(xp.cuda.using_allocator(from_arena))
        hooks = stack.enter_context(scalars.deferred())
        stream.begin_capture()
        try:
            captured = run_program(inputs)
        except Exception as error:  # noqa: BLE001 - any refusal means: not capturable
            failure = error
        try:
            graph = stream.end_capture()
        except Exception as error:  # noqa: BLE001
            failure = failure or error
    if failure is not None:
        return registers, None, _reason(failure)
    kernels = getattr(graph, "kernels", None)
    return registers, GraphStep(xp, inputs, graph, arena, list(hooks), captured, kernels), None


def _reason(error) -> str:
    where = getattr(error, "tinynet_instruction", None)
    at = f" at recorded call {where}" if where else ""
    return f"the step cannot be captured into a CUDA graph{at}: {type(error).__name__}: {error}"
