"""How each tinynet op becomes ONNX nodes: one small function per Function class.

Each function takes the builder ``g`` and the recorded :class:`~tinynet.onnx.trace.Call` and
returns the ONNX name of each output (one name, or a tuple for ops with several outputs). The
options an op was called with are in ``call.kwargs`` / ``call.args`` exactly as the Function
received them, already normalised by the op's wrapper (e.g. conv padding is always
``((top, bottom), (left, right))``), so each mapping is a direct translation.

``OPS`` maps Function classes to these functions; an op that is not in it cannot be exported.
"""
from __future__ import annotations

import math

import numpy as np

from ..functional import activation, conv, conversion, elementwise, linalg, norm, pool, reduce, shape
from ..functional.dropout import Dropout, DropoutDraw  # (the package's ``dropout`` is the function)
from ..tensor import Tensor
from .graph import to_host

_INT64_MAX = np.iinfo(np.int64).max


def _arg(g, call, i: int = 0, dtype=None) -> str:
    """The ONNX name of positional argument ``i``; a number becomes a constant of the op's dtype."""
    return g.value(call.args[i], call.dtype if dtype is None else dtype)


def _option(call, name: str, position: int, default=None):
    """An option passed by keyword or by position (``Add.apply(a, b, alpha=2)``)."""
    if name in call.kwargs:
        return call.kwargs[name]
    return call.args[position] if len(call.args) > position else default


# ------------------------------------------------------------------------------ elementwise
def _unary(op_type):
    return lambda g, call: g.op(op_type, _arg(g, call))


def _binary(op_type):
    return lambda g, call: g.op(op_type, _arg(g, call, 0), _arg(g, call, 1))


def _add_or_sub(op_type):
    def emit(g, call):
        other, alpha = _arg(g, call, 1), _option(call, "alpha", 2, 1)
        if alpha != 1:  # a + alpha * b
            other = g.op("Mul", other, g.value(alpha, call.dtype))
        return g.op(op_type, _arg(g, call, 0), other)
    return emit


def _clamp(g, call):
    x, low, high = call.args
    if isinstance(low, Tensor) or isinstance(high, Tensor):  # tensor bounds: Clip takes scalars only
        y = _arg(g, call)
        y = y if low is None else g.op("Max", y, _arg(g, call, 1))
        return y if high is None else g.op("Min", y, _arg(g, call, 2))
    bounds = ["" if bound is None else _arg(g, call, i) for i, bound in ((1, low), (2, high))]
    return g.op("Clip", _arg(g, call), *bounds)


_COMPARISONS = {"equal": "Equal", "less": "Less", "less_equal": "LessOrEqual", "greater": "Greater",
                "greater_equal": "GreaterOrEqual", "logical_and": "And", "logical_or": "Or"}


def _bool_op(g, call):
    """Comparisons and logic (bool outputs); numbers take the dtype of the tensor beside them."""
    ufunc = call.kwargs["ufunc"]
    dtype = next(a.dtype for a in call.args if isinstance(a, Tensor))
    inputs = [_arg(g, call, i, dtype) for i in range(len(call.args))]
    if ufunc.startswith("logical") and dtype != np.bool_:  # And/Or/Not take bools: x != 0
        inputs = [g.op("Cast", x, to=g.onnx.TensorProto.BOOL) for x in inputs]
    if ufunc == "logical_not":
        return g.op("Not", *inputs)
    if ufunc == "not_equal":
        return g.op("Not", g.op("Equal", *inputs))
    return g.op(_COMPARISONS[ufunc], *inputs)


# ------------------------------------------------------------------------------ activations
def _prelu(g, call):
    x, weight = call.args
    slope = _arg(g, call, 1)
    if weight.numel() > 1:  # one slope per channel: (C,) -> (C, 1, 1) to broadcast over dim 1 of x
        slope = g.op("Reshape", slope, g.ints((weight.numel(),) + (1,) * (x.ndim - 2)))
    return g.op("PRelu", _arg(g, call), slope)


def _gelu(g, call):
    x, approximate = _arg(g, call), call.args[1]
    half = g.op("Mul", x, g.value(0.5, call.dtype))
    if approximate == "tanh":  # x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
        cube = g.op("Mul", g.op("Mul", x, x), x)
        inner = g.op("Add", x, g.op("Mul", cube, g.value(0.044715, call.dtype)))
        squash = g.op("Tanh", g.op("Mul", inner, g.value(math.sqrt(2 / math.pi), call.dtype)))
    else:  # x/2 * (1 + erf(x / sqrt(2)))
        squash = g.op("Erf", g.op("Mul", x, g.value(1 / math.sqrt(2), call.dtype)))
    return g.op("Mul", half, g.op("Add", squash, g.value(1, call.dtype)))


def _softmax(op_type):
    def emit(g, call):
        axis = call.args[1]
        if axis is None:
            raise ValueError(f"onnx.export: {op_type} of a 0-d tensor cannot be exported")
        return g.op(op_type, _arg(g, call), axis=axis)
    return emit


# ------------------------------------------------------------------------------ linear algebra
def _linear(g, call):
    x, weight = call.args[:2]
    bias = call.args[2] if len(call.args) > 2 else None
    if x.ndim == 2:  # y = x @ W^T + b in one Gemm
        return g.op("Gemm", _arg(g, call, 0), _arg(g, call, 1), "" if bias is None else _arg(g, call, 2), transB=1)
    y = g.op("MatMul", _arg(g, call, 0), g.op("Transpose", _arg(g, call, 1), perm=[1, 0]))
    return y if bias is None else g.op("Add", y, _arg(g, call, 2))


# ------------------------------------------------------------------------------ conv and pooling
def _window(kwargs, kernel) -> dict:
    """ONNX attributes of a sliding window; tinynet's padding is ((top, bottom), (left, right))."""
    (top, bottom), (left, right) = kwargs["padding"]
    return dict(kernel_shape=list(kernel), strides=list(kwargs["stride"]), pads=[top, left, bottom, right])


def _check_batched(call, what):
    if call.args[0].ndim != 4:
        raise ValueError(f"onnx.export: {what} of an unbatched (C, H, W) input cannot be exported; "
                         "add the batch dim (x.unsqueeze(0))")


def _conv2d(g, call):
    _check_batched(call, "conv2d")
    weight, bias = call.args[1], call.args[2]
    inputs = [_arg(g, call, 0), _arg(g, call, 1)] + ([] if bias is None else [_arg(g, call, 2)])
    return g.op("Conv", *inputs, dilations=list(call.kwargs["dilation"]), group=call.kwargs["groups"],
                **_window(call.kwargs, weight.shape[2:]))


def _max_pool2d(g, call):
    _check_batched(call, "max_pool2d")
    # ONNX's indices count over the whole (N, C, H, W) tensor, PyTorch's within each plane.
    g.unavailable[id(call.outputs[1])] = "the indices of max_pool2d(return_indices=True) cannot be exported"
    y = g.op("MaxPool", _arg(g, call), dilations=list(call.kwargs["dilation"]),
             **_window(call.kwargs, call.kwargs["kernel_size"]))
    return y, None


def _avg_pool2d(g, call):
    """AveragePool counting the padding divides every window by kh*kw (the explicit pads cover
    ceil_mode's last window); tinynet's own divisor per position is then one Mul away."""
    _check_batched(call, "avg_pool2d")
    kernel = call.kwargs["kernel_size"]
    y = g.op("AveragePool", _arg(g, call), count_include_pad=1, **_window(call.kwargs, kernel))
    correction = kernel[0] * kernel[1] / to_host(call.kwargs["divisor"]).astype(np.float64)
    if np.allclose(correction, 1.0, rtol=0, atol=1e-12):
        return y
    return g.op("Mul", y, g.constant(correction.astype(call.dtype)))


def _adaptive_avg_pool2d(g, call):
    _check_batched(call, "adaptive_avg_pool2d")
    x = call.args[0]
    (height, width), (out_h, out_w) = x.shape[2:], call.kwargs["output_size"]
    if (out_h, out_w) == (1, 1):
        return g.op("GlobalAveragePool", _arg(g, call))
    if height % out_h == 0 and width % out_w == 0:  # equal, non-overlapping windows
        kernel = (height // out_h, width // out_w)
        return g.op("AveragePool", _arg(g, call), kernel_shape=list(kernel), strides=list(kernel))
    # General case, as tinynet computes it: rows @ x @ columns.T with averaging matrices.
    rows = pool._averaging_matrix(height, out_h).astype(call.dtype)
    columns = pool._averaging_matrix(width, out_w).T.astype(call.dtype)
    return g.op("MatMul", g.op("MatMul", g.constant(rows), _arg(g, call)), g.constant(columns))


def _batch_norm(g, call):
    x, weight, bias, running_mean, running_var = call.args
    if call.kwargs["training"]:
        raise ValueError("onnx.export: batch_norm with batch statistics (training=True, or a BatchNorm "
                         "without running statistics) cannot be exported; export the model in eval mode")
    channels = x.shape[1]
    scale = g.constant(np.ones(channels, call.dtype)) if weight is None else _arg(g, call, 1)
    shift = g.constant(np.zeros(channels, call.dtype)) if bias is None else _arg(g, call, 2)
    return g.op("BatchNormalization", _arg(g, call), scale, shift, _arg(g, call, 3), _arg(g, call, 4),
                epsilon=float(call.kwargs["eps"]))


def _dropout(g, call):
    raise ValueError("onnx.export: dropout in training mode (a random mask) cannot be exported; "
                     "dropout with training=False is the identity and needs no export")


# ------------------------------------------------------------------------------ shapes
def _reshape(g, call):
    """Keep the batch symbolic: ``0`` in an ONNX Reshape's shape copies the input's dim."""
    x, target = call.args[0], tuple(call.kwargs["shape"])
    keeps_batch = g.is_batch_major(x) and len(target) >= 1 and target[0] == x.shape[0]
    if g.dynamic and g.is_batch_major(x) and not keeps_batch:
        raise ValueError(f"onnx.export: reshape from {tuple(x.shape)} to {target} does not keep the batch "
                         "as dim 0, so it cannot be exported with dynamic_batch=True; pass dynamic_batch=False")
    if keeps_batch and len(target) == 2 and x.ndim > 2:  # (N, C, H, W) -> (N, C*H*W)
        y = g.op("Flatten", _arg(g, call), axis=1)
    else:
        y = g.op("Reshape", _arg(g, call), g.ints((0,) + target[1:] if keeps_batch else target))
    g.batch_major[y] = keeps_batch
    return y


def _permute(g, call):
    dims = list(call.kwargs["dims"])
    y = g.op("Transpose", _arg(g, call), perm=dims)
    g.batch_major[y] = g.is_batch_major(call.args[0]) and dims[:1] == [0]
    return y


def _expand(g, call):
    x, target = call.args[0], list(call.kwargs["shape"])
    if g.is_batch_major(x) and len(target) == x.ndim:
        target[0] = 1  # Expand broadcasts both ways: 1 keeps the input's (symbolic) batch
    return g.op("Expand", _arg(g, call), g.ints(target))


def _getitem(g, call):
    """Ints and slices (positive steps) as one Slice, then Squeeze for the ints' dims."""
    x, index = call.args[0], call.kwargs["index"]
    # A 0-d integer array is an int (PyTorch and the getitem wrapper treat it so).
    items = [int(i) if getattr(i, "ndim", None) == 0 and i.dtype.kind in "iu" else i for i in index]
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at:at + 1] = [slice(None)] * (x.ndim - len(items) + 1)
    if len(items) > x.ndim or not all(isinstance(i, (int, slice)) and not isinstance(i, bool) for i in items):
        raise NotImplementedError(f"onnx.export: cannot export indexing with {index!r}; only ints, slices "
                                  "and ... are supported")
    starts, ends, axes, steps, dropped = [], [], [], [], []
    for axis, item in enumerate(items):
        if isinstance(item, int):  # x[i] is x[i:i+1] without that dim
            dropped.append(axis)
            item = slice(item, item + 1 if item != -1 else None)
        if item.start is None and item.stop is None and item.step in (None, 1):
            continue  # ':' keeps the whole dim
        starts.append(0 if item.start is None else item.start)
        ends.append(_INT64_MAX if item.stop is None else item.stop)
        axes.append(axis)
        steps.append(1 if item.step is None else item.step)
    y = _arg(g, call)
    if axes:
        y = g.op("Slice", y, g.ints(starts), g.ints(ends), g.ints(axes), g.ints(steps))
    if dropped:
        y = g.op("Squeeze", y, g.ints(dropped))
    elif not axes:
        y = g.op("Identity", y)
    g.batch_major[y] = g.is_batch_major(x) and 0 not in axes
    return y


def _cat(g, call):
    return g.op("Concat", *(_arg(g, call, i) for i in range(len(call.args))), axis=call.kwargs["dim"])


def _split(g, call):
    sizes = call.kwargs["sizes"]
    names = g.op("Split", _arg(g, call), g.ints(sizes), axis=call.kwargs["dim"], outputs=len(sizes))
    return tuple([names] if len(sizes) == 1 else names)


def _pad(g, call):
    pads = call.kwargs["pads"]  # ((before, after), ...) per dim; ONNX wants all befores, then afters
    return g.op("Pad", _arg(g, call), g.ints([lo for lo, _ in pads] + [hi for _, hi in pads]),
                g.value(call.kwargs["value"], call.dtype))


def _cast(g, call):
    return g.op("Cast", _arg(g, call), to=g.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(call.dtype)))


# ------------------------------------------------------------------------------ reductions
def _reduce(op_type):
    def emit(g, call):
        x, axes = call.args[0], list(call.kwargs["axes"])
        y = _arg(g, call)
        dtype = call.kwargs.get("dtype")
        if dtype is not None and np.dtype(dtype) != x.dtype:
            y = g.op("Cast", y, to=g.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))
        keepdims = int(bool(call.kwargs["keepdim"]))
        # ReduceSum takes its axes as an input from opset 13, the others from opset 18.
        if op_type == "ReduceSum" or g.opset >= 18:
            y = g.op(op_type, y, g.ints(axes), keepdims=keepdims)
        else:
            y = g.op(op_type, y, axes=axes, keepdims=keepdims)
        g.batch_major[y] = g.is_batch_major(x) and 0 not in axes
        return y
    return emit


OPS = {
    elementwise.Add: _add_or_sub("Add"), elementwise.Sub: _add_or_sub("Sub"),
    elementwise.Mul: _binary("Mul"), elementwise.Div: _binary("Div"), elementwise.Pow: _binary("Pow"),
    elementwise.Maximum: _binary("Max"), elementwise.Minimum: _binary("Min"),
    elementwise.Neg: _unary("Neg"), elementwise.Exp: _unary("Exp"), elementwise.Log: _unary("Log"),
    elementwise.Sqrt: _unary("Sqrt"), elementwise.Abs: _unary("Abs"), elementwise.Sign: _unary("Sign"),
    elementwise.Sin: _unary("Sin"), elementwise.Cos: _unary("Cos"), elementwise.Tanh: _unary("Tanh"),
    elementwise.Sigmoid: _unary("Sigmoid"), elementwise.Relu: _unary("Relu"),
    elementwise.Rsqrt: lambda g, call: g.op("Reciprocal", g.op("Sqrt", _arg(g, call))),
    elementwise.Square: lambda g, call: g.op("Mul", _arg(g, call), _arg(g, call)),
    elementwise.Clamp: _clamp,
    elementwise.Where: lambda g, call: g.op("Where", *(_arg(g, call, i) for i in range(3))),
    elementwise.BoolOp: _bool_op,
    activation.LeakyReLU: lambda g, call: g.op("LeakyRelu", _arg(g, call), alpha=float(call.args[1])),
    activation.PReLU: _prelu,
    activation.ELU: lambda g, call: g.op("Elu", _arg(g, call), alpha=float(call.args[1])),
    activation.GELU: _gelu,
    activation.SiLU: lambda g, call: g.op("Mul", _arg(g, call), g.op("Sigmoid", _arg(g, call))),
    activation.Softmax: _softmax("Softmax"), activation.LogSoftmax: _softmax("LogSoftmax"),
    linalg.MatMul: _binary("MatMul"), linalg.Linear: _linear,
    conv.Conv2d: _conv2d,
    pool.MaxPool2d: _max_pool2d, pool.AvgPool2d: _avg_pool2d, pool.AdaptiveAvgPool2d: _adaptive_avg_pool2d,
    norm.BatchNorm: _batch_norm,
    Dropout: _dropout, DropoutDraw: _dropout,
    shape.Reshape: _reshape, shape.Permute: _permute, shape.Expand: _expand, shape.GetItem: _getitem,
    shape.Cat: _cat, shape.Split: _split, shape.Pad: _pad,
    shape.Contiguous: _unary("Identity"), conversion.Clone: _unary("Identity"),
    conversion.ToDevice: _unary("Identity"), conversion.Cast: _cast,
    reduce.Sum: _reduce("ReduceSum"), reduce.Mean: _reduce("ReduceMean"),
    reduce.Amax: _reduce("ReduceMax"), reduce.Amin: _reduce("ReduceMin"),
}


def export_call(g, call) -> tuple:
    """Add the nodes for one recorded call; return one ONNX name (or None) per output."""
    emit = OPS.get(call.fn)
    if emit is None:
        name = call.fn.__name__
        raise NotImplementedError(f"onnx.export: cannot export op '{name}' ({name}Backward): tinynet.onnx has "
                                  f"no ONNX translation for it; supported ops: "
                                  f"{', '.join(sorted({fn.__name__ for fn in OPS}))}")
    names = emit(g, call)
    return names if isinstance(names, tuple) else (names,)
