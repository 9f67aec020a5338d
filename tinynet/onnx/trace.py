"""Recording every op of one forward pass: ``record_calls()``.

Every differentiable op in tinynet goes through ``Function.apply`` (see ``autograd.py``). While
``record_calls()`` is active, ``apply`` is replaced by a wrapper that runs the op as usual and
then appends a :class:`Call` (the Function class, the arguments exactly as the op received them,
the keyword options, and the output tensors) to a list. That list, in execution order, is the
program that the exporter translates to ONNX.
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple

from ..autograd import Function


class Call(NamedTuple):
    """One recorded ``fn.apply(*args, **kwargs)`` and the tensors it returned."""

    fn: type            # the Function subclass, e.g. tinynet.functional.conv.Conv2d
    args: tuple         # positional arguments: Tensors, numbers, None, ...
    kwargs: dict        # keyword options: stride=..., axes=...
    outputs: tuple      # the output Tensors (one or more)

    @property
    def dtype(self):
        """The dtype of the first output: numbers among the arguments become constants of it."""
        return self.outputs[0].dtype


@contextlib.contextmanager
def record_calls():
    """Within the block, record every ``Function.apply`` into the yielded list of Calls.

    The original ``apply`` is restored on exit, also after an error. Calls from other threads
    during the block are recorded too, so trace one model at a time.
    """
    calls = []
    original = Function.__dict__["apply"]  # the classmethod object itself, to put back as it was

    def recording_apply(cls, *args, **kwargs):
        result = original.__func__(cls, *args, **kwargs)
        outputs = result if isinstance(result, tuple) else (result,)
        calls.append(Call(cls, args, dict(kwargs), outputs))
        return result

    Function.apply = classmethod(recording_apply)
    try:
        yield calls
    finally:
        Function.apply = original
