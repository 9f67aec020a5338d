"""Shape and indexing ops: reshape and its relatives, transpose/permute, expand, indexing,
cat/stack/split, pad.

None of these ops does arithmetic: each only moves values around. So each backward moves the
gradient back to where the value came from:

* reshape-like ops (``view``, ``flatten``, ``squeeze``, ``unsqueeze``) reshape it back;
* ``permute`` / ``transpose`` apply the inverse permutation;
* ``expand`` sums the copies (a value used n times gets n gradients);
* ``getitem`` scatters it into zeros of the input's shape, adding where an element was picked
  twice;
* ``cat`` and ``split`` are each other's backward; ``pad`` crops it.

Dims may be negative (``-1`` is the last dim) and are checked as PyTorch checks them.
"""
from __future__ import annotations

import functools
import math
import operator

import numpy as np

from .. import backend
from .. import dtypes as _dt
from ..autograd import Function, _check_same_device
from ..tensor import Tensor

__all__ = [
    "reshape", "view", "flatten", "squeeze", "unsqueeze", "transpose", "permute", "t", "expand",
    "contiguous", "getitem", "cat", "concat", "concatenate", "stack", "split", "chunk", "pad",
]


# ------------------------------------------------------------------------------------ helpers
def _dim(op: str, dim, ndim: int) -> int:
    """``dim`` wrapped into ``[0, ndim)``; PyTorch's IndexError if it is out of range. A 0-d
    tensor accepts dims 0 and -1, as in PyTorch."""
    dim = operator.index(dim)
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{op}: dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {dim})")
    return dim % n


def _ints(op: str, name: str, values) -> tuple:
    """``values`` (an int or a sequence of ints) as a tuple of Python ints, or a TypeError."""
    values = values if isinstance(values, (tuple, list)) else (values,)
    try:
        return tuple(operator.index(v) for v in values)
    except TypeError:
        raise TypeError(f"{op}: {name} must be a tuple of ints, got {tuple(values)}") from None


def _target_shape(op: str, shape, input_shape) -> tuple:
    """``shape`` with its ``-1`` (if any) replaced by the size that keeps the element count."""
    shape = _ints(op, "shape", shape)
    size = math.prod(input_shape)
    for i, s in enumerate(shape):
        if s < -1:
            raise RuntimeError(f"{op}: invalid shape dimension {s} at index {i} of shape {list(shape)}")
    unknown = [i for i, s in enumerate(shape) if s == -1]
    if len(unknown) > 1:
        raise RuntimeError(f"{op}: only one dimension can be inferred, got shape {list(shape)}")
    known = math.prod(s for s in shape if s != -1)
    if unknown:
        if known == 0:
            raise RuntimeError(f"{op}: cannot infer the -1 in shape {list(shape)} for input of shape "
                               f"{tuple(input_shape)}: the other sizes multiply to 0")
        shape = shape[:unknown[0]] + (size // known,) + shape[unknown[0] + 1:]
    if math.prod(shape) != size:
        raise RuntimeError(f"{op}: shape {list(shape)} is invalid for input of shape {tuple(input_shape)} "
                           f"(size {size})")
    return shape


# ------------------------------------------------------------------------- reshape and friends
class Reshape(Function):
    """y = x with a new shape (same elements, same order).  Backward: dx = dy reshaped to x's
    shape. ``view``, ``flatten``, ``squeeze`` and ``unsqueeze`` are all this op."""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.input_shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.input_shape)


def reshape(input, shape):
    """``input`` with shape ``shape``; one entry may be -1, inferred from the others.
    Backward: the gradient reshaped back to ``input``'s shape."""
    return Reshape.apply(input, shape=_target_shape("reshape", shape, input.shape))


def view(input, shape):
    """Same as :func:`reshape` here: NumPy/CuPy copy when a view is impossible, so tinynet does
    not reject non-contiguous inputs as PyTorch's ``view`` does."""
    return Reshape.apply(input, shape=_target_shape("view", shape, input.shape))


def flatten(input, start_dim=0, end_dim=-1):
    """``input`` with dims ``start_dim..end_dim`` merged into one (a 0-d input becomes 1-D).
    Backward: the gradient reshaped back."""
    start, end = _dim("flatten", start_dim, input.ndim), _dim("flatten", end_dim, input.ndim)
    if start > end:
        raise RuntimeError(f"flatten: start_dim cannot come after end_dim, got start_dim={start_dim} "
                           f"and end_dim={end_dim} for a tensor of shape {tuple(input.shape)}")
    shape = input.shape
    merged = math.prod(shape[start:end + 1])
    return Reshape.apply(input, shape=shape[:start] + (merged,) + shape[end + 1:])


def squeeze(input, dim=None):
    """``input`` without its size-1 dims (all of them, or those in ``dim``, an int or a tuple;
    a listed dim whose size is not 1 is left alone, as in PyTorch). Backward: reshape back."""
    dims = range(input.ndim) if dim is None else _ints("squeeze", "dim", dim)
    drop = {_dim("squeeze", d, input.ndim) for d in dims}
    shape = tuple(n for i, n in enumerate(input.shape) if not (i in drop and n == 1))
    return Reshape.apply(input, shape=shape)


def unsqueeze(input, dim):
    """``input`` with a new size-1 dim at position ``dim`` (in ``[-ndim-1, ndim]``).
    Backward: reshape back."""
    dim = _dim("unsqueeze", dim, input.ndim + 1)
    shape = input.shape
    return Reshape.apply(input, shape=shape[:dim] + (1,) + shape[dim:])


# ---------------------------------------------------------------------------- permute, expand
class Permute(Function):
    """y = x with its dims reordered: y's dim i is x's dim ``dims[i]``.  Backward: dx = dy with
    the inverse reordering (where each of x's dims went)."""

    @staticmethod
    def forward(ctx, x, dims):
        ctx.dims = dims
        return x.transpose(dims)

    @staticmethod
    def backward(ctx, grad):
        inverse = tuple(int(i) for i in np.argsort(ctx.dims))  # host-side: dims are Python ints
        return grad.transpose(inverse)


def permute(input, dims):
    """``input`` with its dims reordered by ``dims`` (a permutation of ``range(ndim)``).
    Backward: the gradient permuted back."""
    dims = _ints("permute", "dims", dims)
    if len(dims) != input.ndim:
        raise RuntimeError(f"permute: number of dims don't match: the tensor has shape {tuple(input.shape)} "
                           f"({input.ndim} dims) but dims={dims} has {len(dims)}")
    dims = tuple(_dim("permute", d, input.ndim) for d in dims)
    if len(set(dims)) != len(dims):
        raise RuntimeError(f"permute: duplicate dims are not allowed, got dims={dims}")
    return Permute.apply(input, dims=dims)


def transpose(input, dim0, dim1):
    """``input`` with dims ``dim0`` and ``dim1`` swapped. Backward: swap them back."""
    dims = list(range(input.ndim))
    d0, d1 = _dim("transpose", dim0, input.ndim), _dim("transpose", dim1, input.ndim)
    if input.ndim == 0:
        return Permute.apply(input, dims=())
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return Permute.apply(input, dims=tuple(dims))


def t(input):
    """The transpose of a matrix; 0-d and 1-D inputs come back as they are (a new node).
    Backward: transpose back."""
    if input.ndim > 2:
        raise RuntimeError(f"t: expects a tensor with <= 2 dimensions, but got shape {tuple(input.shape)} "
                           f"({input.ndim}-D); use transpose(dim0, dim1) or permute")
    return Permute.apply(input, dims=tuple(range(input.ndim - 1, -1, -1)))


class Expand(Function):
    """y = x broadcast to a larger shape (no copy: every copy is the same memory).
    Backward: dx = dy summed over the copies (the expanded dims), since each element of x was
    used once per copy."""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.input_shape = x.shape
        return ctx.xp.broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, grad):
        shape = ctx.input_shape
        new = grad.ndim - len(shape)  # leading dims that expand added
        grown = tuple(new + i for i, n in enumerate(shape) if n == 1 and grad.shape[new + i] != 1)
        axes = tuple(range(new)) + grown
        # keepdims + reshape (not a plain sum) so a 0-d input gets a 0-d array, not a scalar
        return grad.sum(axis=axes, keepdims=True).reshape(shape) if axes else grad


def expand(input, sizes):
    """``input`` broadcast to ``sizes``: size-1 dims may grow, new dims may be added in front,
    -1 keeps a dim's size. Backward: the gradient summed over the expanded dims."""
    sizes = _ints("expand", "sizes", sizes)
    shape = input.shape
    new = len(sizes) - len(shape)
    if new < 0:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}, sizes={list(sizes)}) must be "
                           f"greater or equal to the number of dimensions of the tensor (shape {tuple(shape)})")
    target = []
    for i, size in enumerate(sizes):
        old = shape[i - new] if i >= new else None
        if size == -1:
            if old is None:
                raise RuntimeError(f"expand: size -1 isn't allowed in a leading, new dimension {i} "
                                   f"(sizes={list(sizes)}, tensor shape {tuple(shape)})")
            size = old
        elif size < 0 or (old is not None and old != 1 and old != size):
            raise RuntimeError(f"expand: the expanded size ({size}) must match the existing size ({old}) at "
                               f"non-singleton dimension {i}. Target sizes: {list(sizes)}. Tensor shape: "
                               f"{tuple(shape)}")
        target.append(size)
    return Expand.apply(input, shape=tuple(target))


class Contiguous(Function):
    """y = a C-contiguous copy of x.  Backward: dx = dy (same values, same shape)."""

    @staticmethod
    def forward(ctx, x):
        return ctx.xp.ascontiguousarray(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def contiguous(input):
    """``input`` itself when its memory is already C-contiguous, else a contiguous copy that
    stays in the graph (its gradient passes straight through)."""
    if input.data.flags.c_contiguous:
        return input
    return Contiguous.apply(input)


# ------------------------------------------------------------------------------------ indexing
class GetItem(Function):
    """y = x[index].  Backward: dx = zeros of x's shape with dy scattered to the indexed places.
    Integer-array indices may pick the same element twice, so their gradients must *add up*:
    ``xp.add.at`` accumulates, where ``dx[index] = dy`` would keep only the last one."""

    @staticmethod
    def forward(ctx, x, index):
        ctx.input_shape, ctx.index = x.shape, index
        return x[index]

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        grad_x = xp.zeros(ctx.input_shape, grad.dtype)
        if any(_is_integer_array(i) for i in ctx.index):
            xp.add.at(grad_x, ctx.index, grad)
        else:  # ints, slices, masks: every element is picked at most once
            grad_x[ctx.index] = grad
        return grad_x


def getitem(input, index):
    """``input[index]`` as in PyTorch (``Tensor.__getitem__``): ints, slices with positive
    steps, ``None``, ``...``, integer tensors/arrays/lists (advanced indexing) and bool masks.
    Backward: the gradient scattered back into zeros, summed where an index repeats.

    Index tensors must be on the CPU or on ``input``'s device. Out-of-range integers are
    checked whenever the index is on the host; an index array already on the GPU is not
    checked, because that would wait for the GPU (like PyTorch, which reports it later).
    """
    items = index if isinstance(index, tuple) else (index,)
    items = tuple(_index_item(input, item) for item in items)
    _check_index(input.shape, items)
    xp = input.xp
    items = tuple(xp.asarray(i) if isinstance(i, np.ndarray) else i for i in items)  # to input's device
    if any(_is_select(i) for i in items) and any(hasattr(i, "dtype") and not _is_select(i) for i in items):
        # PyTorch applies integers first (each removes its dim), then the arrays. NumPy counts
        # integers as arrays too, which puts the result's dims elsewhere when a slice separates
        # them (x[0, :, [1, 2]] is (2, n) in NumPy, (n, 2) in PyTorch); two steps give PyTorch's.
        selects, arrays = _split_selects(items)
        return GetItem.apply(GetItem.apply(input, index=selects), index=arrays)
    return GetItem.apply(input, index=items)


def _is_integer_array(item) -> bool:
    return hasattr(item, "dtype") and item.dtype.kind in "iu"


def _is_select(item) -> bool:
    """An int, or a 0-d integer array, which PyTorch treats as an int."""
    return (isinstance(item, int) and not isinstance(item, bool)) or (_is_integer_array(item) and item.ndim == 0)


def _split_selects(items):
    """Split an index into (ints, None, slices, with ':' for the arrays) and (the arrays, with
    ':' for the dims the first step kept), so that ``x[items]`` is ``x[first][second]`` with
    PyTorch's placement of the arrays' dims."""
    first, second = [], []
    for item in items:
        if _is_select(item):
            first.append(item)  # its dim is gone after the first step
        elif item is Ellipsis:
            first.append(item)
            second.append(item)
        elif hasattr(item, "dtype"):  # an integer array or a mask (covering item.ndim dims)
            first.extend([slice(None)] * (item.ndim if item.dtype == bool else 1))
            second.append(item)
        else:  # a slice, None or a Python bool: applied in the first step, kept whole in the second
            first.append(item)
            second.append(slice(None))
    return tuple(first), tuple(second)


def _index_item(input, item):
    """One entry of an index as NumPy/CuPy understands it: index tensors and lists become
    arrays (kept on the host when they come from it, for the range check)."""
    if item is None or item is Ellipsis or isinstance(item, (bool, np.bool_)):
        return item
    if isinstance(item, slice):
        if item.step is not None and operator.index(item.step) <= 0:
            raise ValueError(f"getitem: step must be greater than zero, got slice {item}")
        return item
    if isinstance(item, (int, np.integer)):
        return int(item)
    if isinstance(item, Tensor):
        if item.device != input.device and item.device.type != "cpu":
            raise RuntimeError(f"getitem: indices should be either on cpu or on the same device as the "
                               f"indexed tensor ({input.device}), got an index on {item.device}")
        array = item.data
    elif isinstance(item, (list, np.ndarray)):
        array = np.asarray(item)
        if array.size == 0 and isinstance(item, list):
            array = array.astype(np.int64)  # x[[]] selects nothing (np.asarray([]) is float)
    elif backend.get_array_module(item) is not np:  # a CuPy array
        array = item
    else:
        raise IndexError(f"getitem: only integers, slices (`:`), ellipsis (`...`), None and integer or bool "
                         f"tensors are valid indices, got {type(item).__name__}")
    if array.dtype == np.uint8:
        array = array.astype(bool)  # PyTorch still reads uint8 indices as masks
    if array.dtype.kind not in "biu":
        raise IndexError(f"getitem: tensors used as indices must be long, int, byte or bool tensors, got "
                         f"dtype {array.dtype}")
    return array


def _check_index(shape, items) -> None:
    """Raise PyTorch's IndexError for too many indices, out-of-range integers and masks whose
    shape does not match the dims they cover."""
    ndim = len(shape)
    if sum(i is Ellipsis for i in items) > 1:
        raise IndexError("getitem: an index can only have a single ellipsis ('...')")
    consumed = sum(i.ndim if hasattr(i, "dtype") and i.dtype == bool else 1 for i in items
                   if i is not None and i is not Ellipsis and not isinstance(i, (bool, np.bool_)))
    if consumed > ndim:
        raise IndexError(f"getitem: too many indices for tensor of dimension {ndim} (shape {tuple(shape)})")
    dim = 0
    for item in items:
        if item is Ellipsis:
            dim += ndim - consumed
        elif item is None or isinstance(item, (bool, np.bool_)):
            continue
        elif isinstance(item, int):
            if not -shape[dim] <= item < shape[dim]:
                raise IndexError(f"getitem: index {item} is out of bounds for dimension {dim} with size "
                                 f"{shape[dim]}")
            dim += 1
        elif isinstance(item, slice):
            dim += 1
        elif item.dtype == bool:
            covered = tuple(shape[dim:dim + item.ndim])
            if item.shape != covered:
                raise IndexError(f"getitem: the shape of the mask {list(item.shape)} does not match the shape "
                                 f"{list(covered)} of the indexed tensor (shape {tuple(shape)}) at dimension {dim}")
            dim += item.ndim
        else:
            if isinstance(item, np.ndarray) and item.size:  # host data: checking costs nothing
                bad = item[(item < -shape[dim]) | (item >= shape[dim])]
                if bad.size:
                    raise IndexError(f"getitem: index {int(bad[0])} is out of bounds for dimension {dim} with "
                                     f"size {shape[dim]}")
            dim += 1


# ---------------------------------------------------------------------------- cat, stack, split
class Cat(Function):
    """y = the inputs joined along ``dim``.  Backward: dy split at the same offsets; each input
    gets its own piece."""

    @staticmethod
    def forward(ctx, *arrays, dim):
        ctx.dim = dim
        ctx.offsets = [int(o) for o in np.cumsum([a.shape[dim] for a in arrays])[:-1]]
        return ctx.xp.concatenate(arrays, axis=dim)

    @staticmethod
    def backward(ctx, grad):
        return tuple(ctx.xp.split(grad, ctx.offsets, axis=ctx.dim))


def cat(tensors, dim=0):
    """The tensors joined along ``dim``; all other sizes must match. Dtypes are promoted as in
    PyTorch, and 1-D empty tensors count as empty slabs (so ``cat([tensor([]), x])`` works).
    Backward: each input gets its slice of the gradient."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of Tensors")
    for i, x in enumerate(tensors):
        if not isinstance(x, Tensor):
            raise TypeError(f"cat: expected a sequence of Tensors, got {type(x).__name__} at position {i}")
    dtype = functools.reduce(_dt.promote_types, (x.dtype for x in tensors))
    # PyTorch lets 1-D empty tensors join anything (a common start when building a result in a
    # loop), so the shapes are checked against the first tensor that is not one.
    first = next((x for x in tensors if x.shape != (0,)), tensors[0])
    if first.ndim == 0:
        raise RuntimeError("cat: zero-dimensional tensors cannot be concatenated; use stack")
    dim = _dim("cat", dim, first.ndim)
    empty_slab = first.shape[:dim] + (0,) + first.shape[dim + 1:]
    tensors = [reshape(x, empty_slab) if x.shape == (0,) else x for x in tensors]
    for i, x in enumerate(tensors):
        if x.ndim != first.ndim or x.shape[:dim] + x.shape[dim + 1:] != empty_slab[:dim] + empty_slab[dim + 1:]:
            raise RuntimeError(f"cat: sizes of tensors must match except in dimension {dim}, but got shapes "
                               f"{tuple(first.shape)} and {tuple(x.shape)} (tensor {i})")
    _check_same_device("cat", tensors)
    tensors = [x if x.dtype == dtype else x.to(dtype) for x in tensors]
    return Cat.apply(*tensors, dim=dim)


concat = cat
concatenate = cat


def stack(tensors, dim=0):
    """The tensors (all of one shape) stacked along a new dim ``dim``: ``cat`` of the tensors
    each unsqueezed at ``dim``. Backward: each input gets its slice of the gradient."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of Tensors")
    for i, x in enumerate(tensors):
        if not isinstance(x, Tensor):
            raise TypeError(f"stack: expected a sequence of Tensors, got {type(x).__name__} at position {i}")
        if x.shape != tensors[0].shape:
            raise RuntimeError(f"stack: expects each tensor to be equal size, but got {tuple(tensors[0].shape)} "
                               f"at entry 0 and {tuple(x.shape)} at entry {i}")
    dim = _dim("stack", dim, tensors[0].ndim + 1)
    return cat([unsqueeze(x, dim) for x in tensors], dim)


class Split(Function):
    """ys = consecutive pieces of x along ``dim`` with the given sizes.  Backward: dx = the
    pieces' gradients joined back (the engine passes zeros for pieces that did not reach the
    loss)."""

    @staticmethod
    def forward(ctx, x, sizes, dim):
        ctx.dim = dim
        offsets = [int(o) for o in np.cumsum(sizes)[:-1]]
        return tuple(ctx.xp.split(x, offsets, axis=dim))

    @staticmethod
    def backward(ctx, *grads):
        return ctx.xp.concatenate(grads, axis=ctx.dim)


def split(tensor, split_size_or_sections, dim=0):
    """A tuple of pieces of ``tensor`` along ``dim``: of ``split_size_or_sections`` each (the
    last may be smaller) if it is an int, else of the listed sizes (which must add up to the
    dim's size). Backward: the pieces' gradients joined back together."""
    dim = _dim("split", dim, tensor.ndim)
    n = tensor.shape[dim]
    if isinstance(split_size_or_sections, (list, tuple)):
        sizes = _ints("split", "split_size_or_sections", split_size_or_sections)
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise RuntimeError(f"split: split sizes must be non-negative and sum exactly to {n} (the size of "
                               f"dimension {dim} of shape {tuple(tensor.shape)}), got {list(sizes)}")
    else:
        size = operator.index(split_size_or_sections)
        if size < 0 or (size == 0 and n != 0):
            raise RuntimeError(f"split: split_size must be positive (0 only for an empty dimension), got "
                               f"{size} for dimension {dim} of shape {tuple(tensor.shape)}")
        sizes = [size] * (n // size) + ([n % size] if n % size else []) if n else [0]
    return Split.apply(tensor, sizes=sizes, dim=dim)


def chunk(input, chunks, dim=0):
    """``input`` split into ``chunks`` pieces of ``ceil(size / chunks)`` along ``dim`` (fewer
    pieces when they run out, as in PyTorch). Backward: the pieces' gradients joined back."""
    chunks = operator.index(chunks)
    if chunks <= 0:
        raise RuntimeError(f"chunk: expects chunks to be greater than 0, got {chunks}")
    dim = _dim("chunk", dim, input.ndim)
    n = input.shape[dim]
    if n == 0:
        return split(input, [0] * chunks, dim)
    return split(input, -(-n // chunks), dim)


# ------------------------------------------------------------------------------------------ pad
class Pad(Function):
    """y = x with borders of ``value`` added around it; a negative pad crops instead.
    Backward: dx = the part of dy that lies over x's kept elements (the border's gradient goes
    nowhere; cropped elements get 0)."""

    @staticmethod
    def forward(ctx, x, pads, value):
        out_shape = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, pads))
        # The kept part of x (cropping where a pad is negative) and where it lands in y.
        ctx.src = tuple(slice(max(-lo, 0), n - max(-hi, 0)) for n, (lo, hi) in zip(x.shape, pads))
        ctx.dst = tuple(slice(max(lo, 0), m - max(hi, 0)) for m, (lo, hi) in zip(out_shape, pads))
        ctx.input_shape = x.shape
        y = ctx.xp.full(out_shape, value, dtype=x.dtype)
        y[ctx.dst] = x[ctx.src]
        return y

    @staticmethod
    def backward(ctx, grad):
        grad_x = ctx.xp.zeros(ctx.input_shape, grad.dtype)
        grad_x[ctx.src] = grad[ctx.dst]
        return grad_x


def pad(input, pad, mode="constant", value=None):
    """``input`` padded with ``value`` (default 0). ``pad`` lists (before, after) amounts
    starting from the LAST dim: ``(left, right)``, ``(left, right, top, bottom)``, ...; negative
    amounts crop. Only ``mode='constant'``. Backward: the gradient cropped back to ``input``."""
    if mode != "constant":
        raise NotImplementedError(f"pad: mode {mode!r} is not implemented; tinynet supports mode='constant' only")
    amounts = _ints("pad", "pad", pad)
    ndim = input.ndim
    if len(amounts) % 2:
        raise RuntimeError(f"pad: padding length must be divisible by 2, got {len(amounts)} values {amounts}")
    if len(amounts) // 2 > ndim:
        raise RuntimeError(f"pad: padding length {len(amounts)} ({amounts}) is too long for a tensor of shape "
                           f"{tuple(input.shape)}: at most two values per dimension")
    pads = [(0, 0)] * ndim
    for k in range(len(amounts) // 2):
        pads[ndim - 1 - k] = (amounts[2 * k], amounts[2 * k + 1])
    for d, (n, (lo, hi)) in enumerate(zip(input.shape, pads)):
        if n - max(-lo, 0) - max(-hi, 0) < 0 or n + lo + hi < 0:
            raise RuntimeError(f"pad: negative padding ({lo}, {hi}) crops more than the size {n} of dimension "
                               f"{d} (input shape {tuple(input.shape)})")
    return Pad.apply(input, pads=tuple(pads), value=0 if value is None else value)
