"""Export trained models to ONNX: ``tinynet.onnx.export(model, example_input, "model.onnx")``.

How tracing works
-----------------
Every op in tinynet is a ``Function`` subclass called through ``Function.apply`` (see
``tinynet/autograd.py``). ``export`` runs one forward pass of the model in evaluation mode while
``trace.record_calls()`` has swapped ``apply`` for a wrapper that also appends each call (the
Function class, its arguments and options, its output tensors) to a list; the original
``apply`` is put back afterwards. That list is the model's program, in execution order.

``exporter.export`` then walks the list backwards from the model's outputs to keep the calls
they depend on, and ``ops.OPS`` translates each one (``Conv2d`` with its stride and padding
-> an ONNX ``Conv`` node, ``Linear`` -> ``Gemm``, ...). ``graph.GraphBuilder`` names the
values: model inputs, parameters and buffers (initializers named ``conv1.weight``), op
outputs, and constants for anything else an op read. An op without a translation stops the
export with a ``NotImplementedError`` that names it.

Like every tracer, this records the ops that ran for the example input: Python control flow
(an ``if`` on a value) is frozen into the branch that was taken.

Indexing exports in every form the engine takes (ints, slices, ``None``, ``...``, Python bools,
integer tensors and bool masks; see ``ops._getitem``). An index array that an op of the model
computed (the mask of ``x[x > 0]``) or that is a model input stays computed in the file; one
made outside tinynet's ops (``argmax``, NumPy) is stored as a constant, like any other tensor
the model made. With ``dynamic_batch=True`` the shapes of the outputs come from ONNX's shape
inference, so that a dim that follows the batch (or a mask's count) is not fixed at the
example's size.

The ``onnx`` package is imported only inside ``export`` (``pip install tinynet[onnx]``).
"""
from .exporter import export

__all__ = ["export"]
