"""``export``: trace one forward pass and write it as an ONNX model."""
from __future__ import annotations

import contextlib

import numpy as np

from ..autograd import enable_grad
from ..tensor import Tensor
from .graph import GraphBuilder
from .ops import export_call
from .trace import record_calls

_MIN_OPSET = 13  # Softmax over one axis, Squeeze/Split/ReduceSum with tensor inputs


def _import_onnx():
    try:
        import onnx
        import onnx.checker
        import onnx.helper
        import onnx.numpy_helper
        import onnx.shape_inference
    except ImportError as error:
        raise ImportError("tinynet.onnx.export needs the onnx package: pip install tinynet[onnx] "
                          "(or pip install onnx)") from error
    return onnx


@contextlib.contextmanager
def _eval_mode(model):
    """Evaluation mode for the trace, then every submodule's own mode back (they may differ)."""
    modules = list(model.modules()) if hasattr(model, "modules") else []
    modes = [m.training for m in modules]
    if hasattr(model, "eval"):
        model.eval()
    try:
        yield
    finally:
        for module, mode in zip(modules, modes):
            module.training = mode


def _names(kind: str, given, count: int) -> list:
    if given is None:
        return [kind] if count == 1 else [f"{kind}_{i}" for i in range(count)]
    given = [given] if isinstance(given, str) else list(given)
    if len(given) != count or len(set(given)) != count:
        raise ValueError(f"onnx.export: expected {count} distinct {kind}_names, got {given}")
    return given


def _as_tensors(kind: str, value) -> tuple:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    for v in values:
        if not isinstance(v, Tensor):
            raise TypeError(f"onnx.export: the model's {kind}s must be Tensors (or a tuple of them), "
                            f"got {type(v).__name__}")
    return values


def _read_by(call):
    """What a call read: its arguments and options, with tuples opened, since an index
    (``GetItem``'s ``index=``) holds raw arrays that earlier calls may have computed."""
    for value in list(call.args) + list(call.kwargs.values()):
        yield from value if isinstance(value, tuple) else (value,)


def _needed_calls(calls, outputs) -> list:
    """The calls that the outputs depend on, in execution order (side computations are left out,
    so an unsupported op there does not stop the export)."""
    # A call's outputs are known by the tensor, and by its array (which an index holds).
    producer = {id(key): i for i, call in enumerate(calls) for out in call.outputs for key in (out, out.data)}
    needed, stack = set(), [producer[id(t)] for t in outputs if id(t) in producer]
    while stack:
        i = stack.pop()
        if i not in needed:
            needed.add(i)
            stack.extend(producer[id(a)] for a in _read_by(calls[i]) if id(a) in producer)
    return [calls[i] for i in sorted(needed)]


def _value_info(onnx, name, tensor, batch_major, shape_known=True):
    """The declared type of a graph input or output: its dims, dim 0 named ``'batch'`` when it
    is the batch, or no shape at all (left to :func:`_infer_output_shapes`)."""
    dims = list(tensor.shape) if shape_known else None
    if batch_major and dims:
        dims[0] = "batch"
    elem_type = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(tensor.dtype))
    return onnx.helper.make_tensor_value_info(name, elem_type, dims)


def _infer_output_shapes(onnx, proto) -> None:
    """Fill in the shapes of the outputs declared without one, from ONNX's shape inference.
    With a symbolic batch, an output's dims may depend on the input in more ways than "dim 0
    is the batch" (``x[None]`` is (1, batch, ...), ``x[:, mask]`` has as many columns as the
    mask has true values): inference names the dims it can follow and leaves the others
    unknown, where the example's sizes would be wrong for other inputs."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    for output, found in zip(proto.graph.output, inferred.graph.output):
        if not output.type.tensor_type.HasField("shape"):
            output.type.CopyFrom(found.type)


def export(model, example_input, path, input_names=None, output_names=None, dynamic_batch=True, opset=17):
    """Write ``model`` as an ONNX file at ``path``, by tracing one forward pass on ``example_input``.

    The model runs once in evaluation mode (Dropout is the identity, BatchNorm uses its running
    statistics); every op it calls is recorded and translated to ONNX nodes. Parameters and
    buffers become initializers under their ``named_parameters()`` names (``'conv1.weight'``).
    Control flow is not recorded: the file holds the ops that ran for this input.

    Args:
        model: a ``Module`` (or any callable taking and returning Tensors).
        example_input: a Tensor, or a tuple of Tensors for several inputs.
        path: where to write the ``.onnx`` file.
        input_names, output_names: names of the graph inputs/outputs. Default ``'input'`` and
            ``'output'`` (``'input_0'``, ``'input_1'``, ... when there are several).
        dynamic_batch: make dim 0 of the inputs, and of the outputs that keep it, symbolic
            (``'batch'``), so that the file runs on any batch size.
        opset: the ONNX opset to target (13 or newer).

    Returns:
        The ``onnx.ModelProto`` that was written (it has passed ``onnx.checker.check_model``).

    Raises:
        NotImplementedError: an op has no ONNX translation (the message names it).
        ValueError: an op cannot be exported as called (e.g. dropout in training mode, or a
            reshape that splits the batch dim across dims while ``dynamic_batch=True``).

    Example::

        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> tinynet.onnx.export(model, tinynet.randn(3, 4), "mlp.onnx")
    """
    onnx = _import_onnx()
    if not _MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"onnx.export: opset must be between {_MIN_OPSET} and "
                         f"{onnx.defs.onnx_opset_version()} (this onnx package's newest), got {opset}")
    inputs = _as_tensors("input", example_input)
    input_names = _names("input", input_names, len(inputs))
    if dynamic_batch and any(x.ndim == 0 for x in inputs):
        raise ValueError("onnx.export: dynamic_batch=True needs inputs with a batch dim (dim 0); "
                         "pass dynamic_batch=False for 0-d inputs")

    # Inputs that require grad make every op record out of place (an in-place op such as
    # ReLU(inplace=True) would otherwise change an array without any Function call to see).
    traced = tuple(x.detach().requires_grad_(x.dtype.kind == "f") for x in inputs)
    with _eval_mode(model), enable_grad(), record_calls() as calls:
        outputs = _as_tensors("output", model(*traced))
    output_names = _names("output", output_names, len(outputs))

    parameters = {}
    for method in ("named_parameters", "named_buffers"):
        for name, tensor in getattr(model, method, lambda: ())():
            parameters.setdefault(id(tensor), name)
    g = GraphBuilder(onnx, opset, inputs[0].shape[0] if dynamic_batch else None, parameters)
    for x, name in zip(traced, input_names):
        g.bind(x, name, batch_major=dynamic_batch)
    for call in _needed_calls(calls, outputs):
        tensor_args = [a for a in call.args if isinstance(a, Tensor)]
        for out, name in zip(call.outputs, export_call(g, call)):
            if name is None:
                continue
            # Unless the op said otherwise: dim 0 is the batch if it was in an input and has its size.
            follows = g.dynamic and out.ndim > 0 and out.shape[0] == g.batch_size \
                and any(g.is_batch_major(a) for a in tensor_args)
            g.bind(out, name, batch_major=follows)

    graph_outputs = []
    for out, name in zip(outputs, output_names):
        value = g.value(out)
        if not g.produced(value) or value in output_names or value in input_names:
            # an input, a parameter, or a value already given out under another name: copy it
            value, source = g.op("Identity", value), value
            g.batch_major[value] = g.batch_major.get(source, False)
        g.rename(value, name)
        g.names[id(out)] = name
        graph_outputs.append(_value_info(onnx, name, out, False, shape_known=not g.dynamic))
    graph_inputs = [_value_info(onnx, name, x, dynamic_batch) for x, name in zip(inputs, input_names)]

    graph = onnx.helper.make_graph(g.nodes, type(model).__name__, graph_inputs, graph_outputs, g.initializers)
    opsets = [onnx.helper.make_opsetid("", opset)]
    proto = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="tinynet")
    proto.ir_version = onnx.helper.find_min_ir_version_for(opsets)  # the oldest runtime that can read it
    _infer_output_shapes(onnx, proto)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return proto
