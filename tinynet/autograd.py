"""The autograd engine: how a forward call records a node, and how ``backward`` walks the graph.

Recording
---------
Every differentiable op is a :class:`Function` subclass with two static methods on raw arrays::

    class Exp(Function):
        @staticmethod
        def forward(ctx, x):            # x is a NumPy/CuPy array
            y = ctx.xp.exp(x)
            ctx.save_for_backward(y)    # what backward will need
            return y

        @staticmethod
        def backward(ctx, grad_y):      # dL/dy, same shape as y
            (y,) = ctx.saved_tensors
            return grad_y * y           # dL/dx = dL/dy * exp(x)

``Exp.apply(t)`` unwraps the tensors, runs ``forward``, wraps the result in a Tensor and, when
some input requires grad and grad mode is on, makes the context the result's ``grad_fn``: a
node of the backward graph that remembers where each input's gradient must go (its *edges*).

Walking
-------
``loss.backward()`` counts, for every node reachable from the loss, how many consumers feed it
a gradient; then it runs nodes in topological order (a node runs once all its consumers have
run, Kahn's algorithm; no recursion, so a 100,000-op chain is fine). Gradients arriving at a
node are summed; a gradient leaving towards an input that was broadcast is summed back to that
input's shape; leaves (tensors made by the user) accumulate into ``.grad``. Saved arrays are
freed once a node has run, unless ``retain_graph=True``.
"""
from __future__ import annotations

import contextlib
import functools
import threading
import weakref

import numpy as np

from . import recording
from .backend import device_of, get_array_module, to_host
from .tensor import Tensor

__all__ = [
    "Function", "Context", "backward", "no_grad", "enable_grad", "set_grad_enabled",
    "is_grad_enabled", "unbroadcast", "reserve_grad", "implicit_seed", "is_implicit_seed",
]

# ---------------------------------------------------------------------------------------------
# Grad mode
_state = threading.local()


def is_grad_enabled() -> bool:
    """Whether ops record the backward graph (False inside ``no_grad()``)."""
    return getattr(_state, "grad_enabled", True)


class set_grad_enabled:
    """Switch graph recording on or off: a context manager, a decorator, or a plain call."""

    def __init__(self, mode: bool):
        self.prev = is_grad_enabled()
        self.mode = bool(mode)
        _state.grad_enabled = self.mode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _state.grad_enabled = self.prev
        return False


class _GradModeContext:
    """Base for ``no_grad`` / ``enable_grad``: usable as ``with`` block and as decorator."""

    mode = True

    def __enter__(self):
        self.prev = is_grad_enabled()
        _state.grad_enabled = self.mode
        return self

    def __exit__(self, *exc):
        _state.grad_enabled = self.prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradModeContext):
    """Context manager / decorator: ops inside do not record the graph (evaluation, updates)."""

    mode = False


class enable_grad(_GradModeContext):
    """Context manager / decorator: switch recording back on inside a ``no_grad`` block."""

    mode = True


# ---------------------------------------------------------------------------------------------
# Nodes
class Context:
    """What a Function's forward leaves for its backward; also the node of the backward graph.

    Attributes set by the engine:
      ``xp``               the array module of the inputs (numpy or cupy)
      ``needs_input_grad`` one bool per positional input of ``forward``
      ``grad_out``         None, or per input an array that ``backward`` may write that
                           input's gradient into (and return): a leaf's reserved ``.grad``
    ``forward`` may set any other attribute (shapes, axes, ...) for ``backward`` to read.
    """

    def __init__(self, fn_cls, xp):
        self.fn_cls = fn_cls
        self.xp = xp
        self._saved = ()
        self._freed = False
        self.edges = ()          # per input: (next node, output_nr), a leaf Tensor, or None
        self.input_meta = ()     # per input: (shape, dtype) or None, to shape its gradient
        self.n_outputs = 1
        self.output_meta = ()    # per output: (shape, dtype), to make zero gradients if needed
        self.hooks = None        # {output_nr: [fn, ...]} from register_hook on non-leaf outputs
        self.grad_out = None     # per input: an array backward may write that input's gradient into

    @property
    def name(self) -> str:
        return self.fn_cls.__name__ + "Backward"

    def save_for_backward(self, *arrays) -> None:
        """Keep arrays for backward (freed after backward unless ``retain_graph=True``)."""
        self._saved = arrays

    @property
    def saved_tensors(self) -> tuple:
        if self._freed:
            raise RuntimeError(
                f"{self.name}: trying to backward through the graph a second time (or to read saved "
                "arrays after they were freed). Saved arrays are freed after the first backward; "
                "call backward(retain_graph=True) the first time if you need to go through it again.")
        return self._saved

    def free(self) -> None:
        self._saved = ()
        self._freed = True

    def __repr__(self) -> str:
        return f"<{self.name}>"


class Function:
    """Base class of every differentiable op. Subclasses define static ``forward(ctx, *args,
    **kwargs)`` and ``backward(ctx, *grad_outputs)`` on raw arrays; users call ``apply``.

    ``backward`` returns one gradient per positional input of ``forward`` (an array, or None
    for inputs that are not tensors or need no gradient); a single value is allowed for a
    single input. Gradients may have the broadcast shape: the engine sums them back.
    Integer and bool outputs never require grad.
    """

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        tensors = [a for a in args if isinstance(a, Tensor)]
        first = tensors[0].data if tensors else None
        xp = get_array_module(first)
        if len(tensors) > 1:
            _check_same_device(cls.__name__, tensors)
        ctx = Context(cls, xp)
        record = is_grad_enabled() and any(t.requires_grad for t in tensors)
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args) \
            if record else (False,) * len(args)
        raw = [a.data if isinstance(a, Tensor) else a for a in args]
        recorder = recording.active_recorder()
        if recorder is None:
            out = cls.forward(ctx, *raw, **kwargs)
        else:  # compile_step is recording: note this kernel call, to replay it without the Python here
            out = recorder.call(_run_forward, (cls.forward, ctx, *raw), kwargs, as_arrays=True,
                                named=(cls.forward, ctx, *args))

        if not record:
            if isinstance(out, tuple):
                return tuple(_output_without_graph(o) for o in out)
            return _output_without_graph(out)

        ctx.edges = tuple(_edge(a) for a in args)
        ctx.input_meta = tuple((a.data.shape, a.data.dtype) if isinstance(a, Tensor) and a.requires_grad
                               else None for a in args)
        if isinstance(out, tuple):
            ctx.n_outputs = len(out)
            ctx.output_meta = tuple((o.shape, o.dtype) for o in out)
            return tuple(_output(o, ctx, i) for i, o in enumerate(out))
        ctx.output_meta = ((out.shape, out.dtype),)
        return _output(out, ctx, 0)


def _run_forward(forward, ctx, *args, **kwargs):
    """``forward(ctx, *args)``, as a replay of a recorded step calls it again with the same
    context: the context gets its new saved arrays, and can be walked by backward again."""
    ctx._freed = False
    out = forward(ctx, *args, **kwargs)
    if not any(ctx.needs_input_grad):  # no backward will read them: let them go now, as eager does
        ctx._saved = ()
    # The recorder names arrays, as the graph does: NumPy's 0-d scalars become arrays here.
    return tuple(_as_array(o) for o in out) if isinstance(out, tuple) else _as_array(out)


def _edge(arg):
    """Where the gradient for this input goes: its producer node, itself if it is a leaf, or
    nowhere."""
    if not isinstance(arg, Tensor) or not arg.requires_grad:
        return None
    if arg.grad_fn is None:
        return arg
    return (arg.grad_fn, arg._output_nr)


def _as_array(value):
    """NumPy turns 0-d results into scalars (``np.generic``); tensors and the recorder hold
    arrays, so make them 0-d arrays again. Anything else is returned as it is."""
    return np.asarray(value) if isinstance(value, np.generic) else value


def _output(array, ctx, index):
    array = _as_array(array)
    if array.dtype.kind not in "fc":
        return Tensor._wrap(array)
    return Tensor._wrap(array, requires_grad=True, grad_fn=ctx, output_nr=index)


def _output_without_graph(array):
    return Tensor._wrap(_as_array(array))


def _check_same_device(op: str, tensors) -> None:
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        names = " and ".join(sorted(str(d) for d in devices))
        raise RuntimeError(f"{op}: expected all tensors on the same device, but found tensors on {names}")


# ---------------------------------------------------------------------------------------------
# Backward
def unbroadcast(grad, shape, out=None):
    """Sum ``grad`` back to ``shape``: the gradient of a broadcast is the sum over the copies.

    Leading dimensions that broadcasting added are summed away; dimensions that were 1 in the
    input and grew are summed with keepdims.
    """
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    grown = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    if extra > 0:
        # ``out``: where to write the sum when it is the last step (a leaf's reserved .grad storage)
        grad = grad.sum(axis=tuple(range(extra)), out=None if grown else out)
    if grown:
        grad = grad.sum(axis=grown, keepdims=True)
    return grad


def _grad_fits(grad, meta) -> bool:
    """Whether ``grad`` already is an array of the input's (shape, dtype): nothing to shape."""
    return grad.shape == meta[0] and grad.dtype == meta[1] and not isinstance(grad, np.generic)


def _shape_grad(op: str, grad, meta, out=None):
    """Give an input's gradient the input's shape and dtype (see :func:`_grad_fits`), written
    into ``out`` where that saves a copy (see :func:`_grad_destinations`)."""
    shape, dtype = meta
    if grad.shape != shape:
        grad = unbroadcast(grad, shape, out if out is not None and out.dtype == grad.dtype else None)
        if grad.shape != shape:
            raise RuntimeError(f"{op}: backward returned a gradient of shape {grad.shape} for an input "
                               f"of shape {shape}")
    if grad.dtype != dtype:
        grad = grad.astype(dtype)
    return _as_array(grad)


def _run_hooks(hooks, grad_array):
    if is_implicit_seed(grad_array):  # a hook may change its gradient in place: never the shared seed
        grad_array = grad_array.copy()
    for hook in hooks:
        result = hook(Tensor._wrap(grad_array))
        if result is not None:
            grad_array = result.data if isinstance(result, Tensor) else result
    return grad_array


# Gradient storage reserved for leaves: id(leaf) -> (weak reference to the leaf, array). An
# optimiser whose kernels address the gradients through a device table of pointers reserves each
# parameter's gradient array, so that after ``zero_grad(set_to_none=True)`` the next gradient is
# written where the last one was and the table stays valid (no new table, no host-to-device copy).
_reserved_grads: dict = {}


def reserve_grad(leaf: Tensor, array) -> None:
    """Make ``array`` (of the leaf's shape and dtype) the storage of ``leaf.grad``: when
    backward reaches the leaf and ``leaf.grad`` is None, the gradient is copied into ``array``
    (as it would be into a new array) and ``leaf.grad`` wraps it. A Tensor that still holds
    ``array`` from an earlier step sees the new values then. ``array=None`` releases it."""
    key = id(leaf)
    if array is None:
        _reserved_grads.pop(key, None)
    elif _reserved_grads.get(key, (None, None))[1] is not array:  # (called at every optimiser step)
        _reserved_grads[key] = (weakref.ref(leaf, lambda _, key=key: _reserved_grads.pop(key, None)), array)


def _grad_destinations(node):
    """Per input of ``node``: the reserved ``.grad`` storage of a leaf input that has no
    ``.grad`` yet (for its first edge only), which backward may write the gradient into, so that
    no copy is needed (see :func:`reserve_grad`); else None. None when no input has one."""
    destinations, seen = [], set()
    for edge, meta in zip(node.edges, node.input_meta):
        array = None
        if isinstance(edge, Tensor) and edge.grad is None and not edge._hooks and id(edge) not in seen:
            reserved = _reserved_grads.get(id(edge))
            if (reserved is not None and reserved[0]() is edge and (reserved[1].shape, reserved[1].dtype) == meta
                    and type(reserved[1]) is type(edge.data) and reserved[1].device == edge.data.device):
                array = reserved[1]
                seen.add(id(edge))
        destinations.append(array)
    return tuple(destinations) if any(a is not None for a in destinations) else None


def _accumulate_leaf(leaf: Tensor, grad_array, owned: bool = False) -> None:
    """Add ``grad_array`` into ``leaf.grad`` (made on the first gradient). ``owned``: the engine
    knows no one else holds ``grad_array`` (:func:`_owned_by`), so it may become ``.grad`` itself."""
    if leaf._hooks:
        grad_array = _run_hooks(leaf._hooks, grad_array)
    if leaf.grad is None:
        # Copy, unless owned: the same array may also flow to another leaf, or be an array the
        # graph still holds, and .grad is later updated in place.
        reserved = _reserved_grads.get(id(leaf)) if _reserved_grads else None
        if reserved is not None and reserved[1] is grad_array and reserved[0]() is leaf:
            leaf.grad = Tensor._wrap(grad_array)  # backward wrote it where it belongs: no copy
        elif (reserved is not None and reserved[0]() is leaf and type(reserved[1]) is type(grad_array)
                and reserved[1].shape == grad_array.shape and reserved[1].dtype == grad_array.dtype
                and reserved[1].device == grad_array.device):
            get_array_module(grad_array).copyto(reserved[1], grad_array)
            leaf.grad = Tensor._wrap(reserved[1])
        else:
            leaf.grad = Tensor._wrap(grad_array if owned and not leaf._hooks else grad_array.copy())
    else:
        leaf.grad.data += grad_array
    if leaf._post_accumulate_hooks:
        for hook in leaf._post_accumulate_hooks:
            hook(leaf)


def _topological_order(root):
    """Count, for each node reachable from ``root``, how many edges point at it (iteratively)."""
    dependencies = {root: 0}
    stack = [root]
    while stack:
        node = stack.pop()
        for edge in node.edges:
            if type(edge) is tuple:
                nxt = edge[0]
                if nxt in dependencies:
                    dependencies[nxt] += 1
                else:
                    dependencies[nxt] = 1
                    stack.append(nxt)
    return dependencies


_tracer = None  # set by trace() to a callable(node, grads) for teaching output


def _run_node(node, grads, retain_graph):
    """One node's backward: the gradients of its inputs from those of its outputs (a tuple,
    one entry per input). Frees the node's saved arrays unless ``retain_graph``."""
    input_grads = node.fn_cls.backward(node, *grads)
    if not isinstance(input_grads, tuple):
        input_grads = (input_grads,)
    if len(input_grads) < len(node.edges):
        raise RuntimeError(f"{node.name}: backward returned {len(input_grads)} gradients for "
                           f"{len(node.edges)} inputs")
    if _tracer is not None:
        _tracer(node, grads, input_grads)
    if not retain_graph:
        node.free()
    return input_grads


# The implicit seed. ``loss.backward()`` without ``gradient=`` starts from dloss/dloss = 1.
# Filling a new array with 1 at every call would cost a kernel launch per training step on a
# GPU, so the engine hands the root node one cached array of ones per (device, dtype, shape),
# made on first use and never written: read-only where the array library can say so (NumPy and
# the simulated device; CuPy arrays have no such flag), and copied before a hook sees it (hooks
# are where user code gets the engine's gradient arrays, and may change them in place; no
# Function's backward writes into its incoming gradient). A backward may recognise it with
# :func:`is_implicit_seed` and skip multiplying by 1: the fused losses then return the gradient
# their forward already computed, so the whole backward of the loss launches nothing.
_implicit_seeds: dict = {}
_implicit_seed_ids: set = set()


def implicit_seed(array):
    """The shared read-only array of ones shaped and typed like ``array`` (one element), on its
    device: the gradient ``backward`` starts from when none is given."""
    key = (device_of(array), array.dtype, array.shape)
    seed = _implicit_seeds.get(key)
    if seed is None:
        seed = get_array_module(array).ones_like(array)  # one launch per key, ever
        try:
            seed.flags.writeable = False
        except (AttributeError, ValueError):  # CuPy: no read-only arrays
            pass
        _implicit_seeds[key] = seed
        _implicit_seed_ids.add(id(seed))  # (the dict keeps it alive, so its id stays unique)
    return seed


def is_implicit_seed(grad) -> bool:
    """Whether ``grad`` is the implicit seed of ``backward`` (a gradient known to be 1)."""
    return id(grad) in _implicit_seed_ids


def _add(a, b):
    return a + b


def _call(fn, *args):
    return fn(*args)


def _engine_runner():
    """How backward runs each step that makes an array: directly, or, while compile_step
    records, through the recorder, which notes the call so that a replay repeats it."""
    recorder = recording.active_recorder()
    if recorder is None:
        return _call
    return lambda fn, *args: recorder.call(fn, args, {}, as_arrays=True)


def backward(tensor: Tensor, gradient=None, retain_graph: bool = False) -> None:
    """Compute the gradient of ``tensor`` with respect to every leaf that requires grad, and
    accumulate it into the leaves' ``.grad``. See the module docstring for the algorithm."""
    run = _engine_runner()
    if not tensor.requires_grad:
        raise RuntimeError("backward: the tensor does not require grad and has no grad_fn "
                           "(was it computed inside no_grad(), or from tensors without requires_grad=True?)")
    if gradient is None:
        if tensor.data.size != 1:
            raise RuntimeError(f"backward: grad can be implicitly created only for scalar outputs; got a "
                               f"tensor of shape {tuple(tensor.shape)}. Pass gradient= of the same shape.")
        grad_root = implicit_seed(tensor.data)  # cached: no launch (a recording holds it as a constant)
    else:
        grad_root = gradient.data if isinstance(gradient, Tensor) else tensor.xp.asarray(gradient)
        if grad_root.shape != tensor.data.shape:
            raise RuntimeError(f"backward: gradient has shape {tuple(grad_root.shape)} but the tensor has "
                               f"shape {tuple(tensor.shape)}")
        if grad_root.dtype != tensor.dtype:
            grad_root = grad_root.astype(tensor.dtype)

    if tensor.grad_fn is None:  # a leaf: nothing to walk
        run(functools.partial(_accumulate_leaf, tensor), grad_root)
        return

    root = tensor.grad_fn
    dependencies = _topological_order(root)
    pending = {root: [None] * root.n_outputs}
    pending[root][tensor._output_nr] = grad_root
    ready = [root]
    while ready:
        node = ready.pop()
        grads = pending.pop(node)
        for i, g in enumerate(grads):
            if g is None:  # an output that did not reach the loss: its gradient is zero
                shape, dtype = node.output_meta[i]
                if dtype.kind in "fc":  # (an integer output, max-pool's argmax, has none: no zeros to launch)
                    grads[i] = run(node.xp.zeros, shape, dtype)
            if node.hooks and i in node.hooks:
                grads[i] = run(functools.partial(_run_hooks, node.hooks[i]), grads[i])
        if node._freed:
            node.saved_tensors  # raises the "backward a second time" error
        node.grad_out = _grad_destinations(node) if _reserved_grads else None
        input_grads = run(_run_node, node, grads, retain_graph)
        for i, (edge, meta, g) in enumerate(zip(node.edges, node.input_meta, input_grads)):
            if edge is None or g is None:
                continue
            if not _grad_fits(g, meta):  # checked first, so no call is recorded for nothing
                g = run(_shape_grad, node.name, g, meta, node.grad_out[i] if node.grad_out else None)
            if type(edge) is tuple:
                nxt, slot = edge
                slots = pending.get(nxt)
                if slots is None:
                    slots = pending[nxt] = [None] * nxt.n_outputs
                slots[slot] = g if slots[slot] is None else run(_add, slots[slot], g)
                dependencies[nxt] -= 1
                if dependencies[nxt] == 0:
                    ready.append(nxt)
            else:
                run(functools.partial(_accumulate_leaf, edge, owned=_owned_by(g, grads, input_grads, retain_graph)), g)


def _owned_by(g, grads, input_grads, retain_graph: bool) -> bool:
    """Whether ``g``, one input gradient a node's backward returned, belongs to that input alone,
    so that a leaf may keep it as its ``.grad`` without a copy (a Linear weight's gradient
    straight from its GEMM: the copy was 30 ms of a vgg_bn step on the CPU). Only a NumPy array
    that owns its memory and is writeable qualifies (not a view, not the read-only implicit
    seed), and not when it is one of the gradients the node received (passed through, as an
    add's), when the node returned it for another input too, or when the graph is kept
    (``retain_graph``: a node may return an array it saved, and would return it again)."""
    return (not retain_graph and type(g) is np.ndarray and g.base is None and g.flags.writeable
            and all(g is not other for other in grads) and sum(other is g for other in input_grads) == 1)


@contextlib.contextmanager
def trace(printer=print):
    """While active, print each node as backward visits it: its op, and the shape and norm of
    every gradient it receives and sends. For learning how backward walks a graph."""
    global _tracer
    def xp_norm(a):  # an explicit read from the device: trace() is for learning, not for speed
        return float(to_host(get_array_module(a).sqrt((a.astype("float64") ** 2).sum())))

    def show(node, grads_in, grads_out):
        ins = ", ".join("-" if g is None else f"{tuple(g.shape)} |g|={xp_norm(g):.4g}" for g in grads_in)
        outs = ", ".join("-" if g is None else f"{tuple(g.shape)} |g|={xp_norm(g):.4g}" for g in grads_out)
        printer(f"{node.name}: grad in [{ins}] -> grads out [{outs}]")

    previous, _tracer = _tracer, show
    try:
        yield
    finally:
        _tracer = previous
