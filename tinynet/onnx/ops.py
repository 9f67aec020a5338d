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
from typing import NamedTuple

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
    x, weight, bias, running_mean, running_var = call.args[:5]   # the 6th, the step counter, is None in eval
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
    """Reshape (also view, flatten, squeeze, unsqueeze), keeping the batch symbolic. When dim 0
    stays the batch, ``0`` in the ONNX shape copies it. When the batch moves or merges with the
    dims after it (``unsqueeze(0)``, ``flatten(0, 1)``, ``reshape(-1)``), the first target dim
    that is not 1 holds it: a ``-1`` there lets ONNX compute it for any batch. A reshape that
    splits the batch has no such form."""
    x, target = call.args[0], tuple(call.kwargs["shape"])
    if not (g.dynamic and g.is_batch_major(x)):
        y = g.op("Reshape", _arg(g, call), g.ints(target))
        g.batch_major[y] = False
        return y
    batch = x.shape[0]
    if target[:1] == (batch,):
        if len(target) == 2 and x.ndim > 2:  # (N, C, H, W) -> (N, C*H*W)
            y = g.op("Flatten", _arg(g, call), axis=1)
        else:
            y = g.op("Reshape", _arg(g, call), g.ints((0,) + target[1:]))
        g.batch_major[y] = True
        return y
    holder = next((i for i, n in enumerate(target) if n != 1), None)
    if batch == 1 or holder is None or target[holder] % batch:
        raise ValueError(f"onnx.export: reshape from {tuple(x.shape)} to {target} splits the batch (dim 0, "
                         f"{batch} in the example input) across dims, so it cannot be exported with "
                         "dynamic_batch=True; pass dynamic_batch=False"
                         + (" or trace with a batch of 2 or more" if batch == 1 else ""))
    y = g.op("Reshape", _arg(g, call), g.ints(target[:holder] + (-1,) + target[holder + 1:]))
    g.batch_major[y] = False
    return y


def _permute(g, call):
    dims = list(call.kwargs["dims"])
    y = g.op("Transpose", _arg(g, call), perm=dims)
    g.batch_major[y] = g.is_batch_major(call.args[0]) and dims[:1] == [0]
    return y


def _expand(g, call):
    x, target = call.args[0], list(call.kwargs["shape"])
    if g.is_batch_major(x):  # Expand broadcasts both ways: 1 keeps the input's (symbolic) batch
        target[len(target) - x.ndim] = 1
    y = g.op("Expand", _arg(g, call), g.ints(target))
    g.batch_major[y] = g.is_batch_major(x) and len(target) == x.ndim
    return y


_INDEX_FORMS = ("ints (negative too), slices with positive steps (negative starts and stops too), None, ..., "
                "True/False, integer tensors, arrays or lists, and bool masks (constant, or computed in the model)")


class _Advanced(NamedTuple):
    """An integer array or a mask in an index, as the int64 index arrays it stands for: one for
    an integer array, one per covered dim for a mask (its nonzero positions)."""

    names: list   # ONNX names of the int64 index arrays
    covers: int   # how many dims of the input it indexes (a mask's ndim, else 1)
    ndim: int     # the rank of each index array


def _advanced(g, array, index) -> _Advanced:
    """An array of an index as a ``_Advanced``: a constant when the array is, computed (Cast,
    NonZero) when it came out of an op of the model, so that it changes with the input."""
    traced = g.traced_array(array)
    if array.dtype == np.bool_:
        if array.ndim == 0:  # one number decides whether the result has one row or none
            raise _index_error(index, "a 0-d bool mask computed in the model")
        if traced is None:
            return _Advanced([g.constant(d.astype(np.int64), "index") for d in np.nonzero(to_host(array))],
                             array.ndim, 1)
        nonzero = g.op("NonZero", traced)  # (k, M): the positions of the M true values
        rows = [g.op("Gather", nonzero, g.constant(np.asarray(d, np.int64)), axis=0) for d in range(array.ndim)]
        return _Advanced(rows, array.ndim, 1)
    if traced is None:
        return _Advanced([g.constant(to_host(array).astype(np.int64), "index")], 1, array.ndim)
    if array.dtype != np.int64:
        traced = g.op("Cast", traced, to=g.onnx.TensorProto.INT64)
    return _Advanced([traced], 1, array.ndim)


def _index_error(index, why: str) -> NotImplementedError:
    return NotImplementedError(f"onnx.export: cannot export indexing with {index!r}: {why}; the forms that export "
                               f"are {_INDEX_FORMS}")


def _is_bool(item) -> bool:
    return isinstance(item, (bool, np.bool_))


def _getitem(g, call):
    """``x[index]`` with NumPy's rules (the getitem wrapper has already brought them in line
    with PyTorch's), in four steps:

    1. ``None`` and Python bools add a dim (Unsqueeze; ``False`` then selects nothing from it);
       every other item covers dims of the result one to one (a k-dim mask covers k).
    2. Slices: one Slice (negative starts and stops count from the end, as in Python).
    3. Ints, when the index has no arrays: a one-wide Slice, then Squeeze of their dims.
    4. Integer arrays and masks (a mask stands for the integer arrays of its nonzero
       positions): Gather for one array. For several, GatherND with their broadcast stacked
       along its last dim, on the input transposed so that the indexed dims come first; NumPy
       puts the broadcast dims where the arrays were when they are adjacent, else in front.
    """
    x, index = call.args[0], call.kwargs["index"]
    items = []
    for item in index:
        if hasattr(item, "dtype") and item.ndim == 0 and item.dtype.kind in "biu" and g.traced_array(item) is None:
            # a constant 0-d integer array is an int, as in PyTorch, and a 0-d mask a Python bool
            item = bool(to_host(item)) if item.dtype == np.bool_ else int(to_host(item))
        elif hasattr(item, "dtype"):
            item = _advanced(g, item, index)
        items.append(item)
    has_arrays = any(isinstance(i, _Advanced) for i in items)
    if has_arrays and any(_is_bool(i) for i in items):
        raise _index_error(index, "a Python bool beside integer arrays or masks")
    if has_arrays:  # beside arrays, NumPy takes an int as a 0-d array (broadcast with the others)
        items = [_Advanced([g.constant(np.asarray(i, np.int64))], 1, 0) if isinstance(i, int) and not _is_bool(i)
                 else i for i in items]
    covered = sum(i.covers if isinstance(i, _Advanced) else 1 for i in items
                  if i is not None and i is not Ellipsis and not _is_bool(i))
    at = next((k for k, i in enumerate(items) if i is Ellipsis), len(items))  # ':' for the dims left
    items[at:at + 1] = [slice(None)] * (x.ndim - covered)

    source = _arg(g, call)
    y, new_dims, empty, placed, dim = source, [], [], [], 0  # dims numbered as after step 1
    for item in items:
        if item is None or _is_bool(item):
            new_dims.append(dim)
            if item is False or item is np.False_:
                empty.append(dim)
            dim += 1
        else:
            placed.append((dim, item))
            dim += item.covers if isinstance(item, _Advanced) else 1
    if new_dims:
        y = g.op("Unsqueeze", y, g.ints(new_dims))

    starts, ends, axes, steps, dropped = [], [], [], [], []
    for d, item in placed + [(d, slice(0, 0)) for d in empty]:
        if isinstance(item, int):  # x[i] is x[i:i+1] without that dim
            dropped.append(d)
            item = slice(item, item + 1 if item != -1 else None)
        if not isinstance(item, slice) or (item.start is None and item.stop is None and item.step in (None, 1)):
            continue  # an array, or ':' that keeps the whole dim
        starts.append(0 if item.start is None else item.start)
        ends.append(_INT64_MAX if item.stop is None else item.stop)
        axes.append(d)
        steps.append(1 if item.step is None else item.step)
    if axes:
        y = g.op("Slice", y, g.ints(starts), g.ints(ends), g.ints(axes), g.ints(steps))
    if dropped:
        y = g.op("Squeeze", y, g.ints(dropped))

    gathered = [(d + j, name) for d, item in placed if isinstance(item, _Advanced)
                for j, name in enumerate(item.names)]
    if len(gathered) == 1:
        y = g.op("Gather", y, gathered[0][1], axis=gathered[0][0])
    elif gathered:
        broadcast_ndim = max(item.ndim for _, item in placed if isinstance(item, _Advanced))
        y = _gather_nd(g, y, [d for d, _ in gathered], [n for _, n in gathered], dim, broadcast_ndim)
    if y == source:
        y = g.op("Identity", y)
    # dim 0 is still the batch if the index keeps it whole and puts nothing before it
    dims = [d for d, _ in gathered]
    adjacent = dims == list(range(dims[0], dims[0] + len(dims))) if dims else True
    g.batch_major[y] = g.is_batch_major(x) and items[:1] in ([], [slice(None)]) and adjacent
    return y


def _gather_nd(g, y, dims, names, rank, broadcast_ndim):
    """``y`` indexed by several integer arrays (``names``) at ``dims``, NumPy's way: the arrays
    broadcast against each other to a shape B, and the result is B followed by the other dims,
    with B moved to where the arrays were when their dims are adjacent."""
    others = [d for d in range(rank) if d not in dims]
    if dims + others != list(range(rank)):
        y = g.op("Transpose", y, perm=dims + others)  # GatherND indexes the leading dims
    zero = g.constant(np.asarray(0, np.int64))
    shape = None  # zeros of the broadcast shape, made at run time (an index may depend on the input)
    for name in names:
        zeros = g.op("Mul", name, zero)
        shape = zeros if shape is None else g.op("Add", shape, zeros)
    columns = [g.op("Unsqueeze", g.op("Add", name, shape), g.ints([-1])) for name in names]
    y = g.op("GatherND", y, g.op("Concat", *columns, axis=-1))  # B + the other dims
    if dims == list(range(dims[0], dims[0] + len(dims))) and dims[0] > 0:  # adjacent, not in front
        before = dims[0]
        perm = (list(range(broadcast_ndim, broadcast_ndim + before)) + list(range(broadcast_ndim))
                + list(range(broadcast_ndim + before, broadcast_ndim + len(others))))
        y = g.op("Transpose", y, perm=perm)
    return y


def _cat(g, call):
    return g.op("Concat", *(_arg(g, call, i) for i in range(len(call.args))), axis=call.kwargs["dim"])


def _split(g, call):
    sizes = call.kwargs["sizes"]
    if g.dynamic and g.is_batch_major(call.args[0]) and call.kwargs["dim"] == 0:
        raise ValueError(f"onnx.export: split/chunk along the batch (dim 0) into sizes {list(sizes)} cannot be "
                         "exported with dynamic_batch=True, as the sizes depend on the batch; pass "
                         "dynamic_batch=False")
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
