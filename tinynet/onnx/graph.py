"""``GraphBuilder``: the ONNX graph being written, and the ONNX name of every traced tensor.

A traced tensor gets its name in one of three ways: it is a model input (``'input'``), a
parameter or buffer of the model (its dotted name, ``'conv1.weight'``, stored as an
initializer), or the output of an exported op (``'Conv_3'``). Any other tensor that an op reads
(something created inside ``forward``) is a constant: its current value is stored as an
initializer. Python numbers among an op's arguments become 0-d constants of the op's dtype.

The builder also tracks which values have the batch as their dim 0 (``is_batch_major``), so
that with ``dynamic_batch=True`` reshapes can keep that dim symbolic.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..tensor import Tensor


def to_host(array) -> np.ndarray:
    """A NumPy copy-or-view of a NumPy/CuPy array (initializers are written from the host)."""
    return np.asarray(backend.to_device(array, "cpu"))


class GraphBuilder:
    """Collects nodes and initializers; ``value(x)`` gives the ONNX name of an op's argument."""

    def __init__(self, onnx, opset: int, batch_size: int | None, parameter_names: dict):
        self.onnx = onnx
        self.opset = opset
        self.batch_size = batch_size          # None: static shapes, no batch tracking
        self.parameter_names = parameter_names  # id(tensor) -> 'conv1.weight'
        self.nodes, self.initializers = [], []
        self.names = {}           # id(tensor) -> ONNX value name
        self.array_names = {}     # id(tensor.data) -> (the array, ONNX value name): indices computed in the model
        self.unavailable = {}     # id(tensor) -> why no ONNX value can stand for it
        self.batch_major = {}     # value name -> whether its dim 0 is the batch
        self._keep = []           # tensors named here, kept alive so that their ids stay unique
        self._count = 0

    @property
    def dynamic(self) -> bool:
        return self.batch_size is not None

    # ------------------------------------------------------------------ naming tensors
    def bind(self, tensor: Tensor, name: str, batch_major: bool = False) -> None:
        """``tensor`` is known in the graph as ``name``."""
        self._keep.append(tensor)
        self.names[id(tensor)] = name
        self.array_names.setdefault(id(tensor.data), (tensor.data, name))
        self.batch_major.setdefault(name, batch_major)

    def is_batch_major(self, x) -> bool:
        return isinstance(x, Tensor) and self.batch_major.get(self.names.get(id(x)), False)

    def value(self, x, dtype=None) -> str:
        """The ONNX name of an op argument: a traced tensor, a parameter, or a constant."""
        if not isinstance(x, Tensor):
            return self.constant(np.asarray(x, dtype=dtype))
        key = id(x)
        if key in self.unavailable:
            raise ValueError(f"onnx.export: {self.unavailable[key]}")
        if key not in self.names:
            name = self.parameter_names.get(key)
            if name is None:
                name = self.constant(to_host(x.data))
            else:
                self.initializers.append(self.onnx.numpy_helper.from_array(to_host(x.data), name))
            self.bind(x, name)
        return self.names[key]

    def traced_array(self, array) -> str | None:
        """The ONNX name of the traced tensor whose data is ``array``, or None. Indexing passes
        raw arrays to ``GetItem`` (the mask of ``x[x > 0]``, an index given as a model input):
        those computed in the model must stay computed, not be frozen into constants."""
        entry = self.array_names.get(id(array))
        return None if entry is None else entry[1]

    def constant(self, array, hint: str = "const") -> str:
        """Store ``array`` as an initializer and return its (new) name."""
        self._count += 1
        name = f"{hint}_{self._count}"
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def ints(self, values) -> str:
        """An int64 1-D constant (shapes, axes, pads: ONNX wants these as tensors)."""
        return self.constant(np.asarray(list(values), dtype=np.int64), "ints")

    # ------------------------------------------------------------------ adding nodes
    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attributes):
        """Add one node; return its output name (or a list of names when ``outputs > 1``).
        An input of ``''`` is an omitted optional input; attributes that are None are left out."""
        self._count += 1
        name = f"{op_type}_{self._count}"
        names = [name] if outputs == 1 else [f"{name}:{i}" for i in range(outputs)]
        attributes = {k: v for k, v in attributes.items() if v is not None}
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), names, name=name, **attributes))
        return names[0] if outputs == 1 else names

    def rename(self, old: str, new: str) -> None:
        """Call the value ``old`` ``new`` everywhere (to give graph outputs the requested names)."""
        for node in self.nodes:
            for field in (node.input, node.output):
                for i, name in enumerate(field):
                    if name == old:
                        field[i] = new
        self.batch_major[new] = self.batch_major.get(old, False)

    def produced(self, name: str) -> bool:
        """Whether ``name`` is the output of some node (rather than an input or initializer)."""
        return any(name in node.output for node in self.nodes)
