"""``DistributedDataParallel``: the same model on every rank, each rank on its own share of the
batch, gradients averaged over the ranks before the optimiser step, as PyTorch's DDP.

Why the result equals one process on the whole batch: with a loss that is a mean over the
batch, the gradient of the full batch of ``n * b`` samples is the mean of the ``n`` ranks'
gradients on their ``b`` samples each. So after the all-reduce (sum) and a division by ``n``,
every rank holds the full batch's gradient and makes the same update from the same weights.

How the all-reduce overlaps backward (the buckets):

- At construction the parameters are grouped, in reverse order of registration (backward
  produces the last layer's gradients first), into buckets of about ``bucket_cap_mb``; each
  bucket owns one flat array. Rank 0's parameters and buffers are broadcast to all ranks.
- Each forward (in training, with grad mode on) walks the new graph from the output and counts
  how many paths lead into each parameter: the number of times backward will accumulate into
  its ``.grad``. A parameter that the forward did not use is ready at once (its share is zero).
- A post-accumulate-grad hook on each parameter counts the accumulations. When the last one
  has arrived, the parameter's gradient is copied into its bucket; when a bucket is full its
  all-reduce is *started* (non-blocking, ``Iallreduce`` or NCCL on the stream) while backward
  goes on with the earlier layers. Buckets are started in index order on every rank, as MPI
  and NCCL need the same collectives in the same order everywhere.
- The hook of the very last gradient waits for every bucket, divides by the world size and
  copies the averages back into the ``.grad`` arrays: when ``loss.backward()`` returns, the
  gradients are averaged and ``optimizer.step()`` can run as usual.

BatchNorm: each rank normalises with its own batch's statistics (as PyTorch's DDP); with
``broadcast_buffers=True`` (the default) rank 0's buffers (running mean and variance) are
broadcast at the start of every training forward, so all ranks evaluate with the same ones.
:class:`~tinynet.distributed.SyncBatchNorm` uses statistics over all ranks' samples instead.

With :func:`tinynet.compile_step`: the hooks run inside the recorded accumulation into
``.grad``, so every replay starts and waits for the all-reduces again; the buffer broadcast is
a recorded call of its own. The walk of the graph needs no replay: a replay does the same work
as the recording.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ..autograd import is_grad_enabled
from ..nn.module import Module
from ..recording import recordable
from ..tensor import Tensor
from .process_group import ReduceOp, broadcast, require_group

__all__ = ["DistributedDataParallel"]


class _Bucket:
    """Gradients of a few parameters, all-reduced as one flat array."""

    def __init__(self, params, xp):
        self.params = params
        self.offsets = np.cumsum([0] + [p.data.size for p in params]).tolist()
        self.flat = xp.zeros(self.offsets[-1], dtype=params[0].data.dtype)
        self.expected = len(params)  # parameters that will get a gradient in this backward
        self.pending = len(params)   # of those, not ready yet
        self.request = None          # the started all-reduce, until waited on


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training over the process group (see the module
    docstring for how it works).

    Args:
        module: the model; its parameters and buffers are overwritten by rank 0's at once.
        device_ids, output_device, dim: accepted for PyTorch's signature (one device per
            process, inputs on the module's device).
        broadcast_buffers: broadcast rank 0's buffers at the start of each training forward.
        bucket_cap_mb: the size of a gradient bucket in MiB (PyTorch's default, 25).
        find_unused_parameters: accepted for PyTorch's signature; unused parameters are always
            found (the forward walks the graph anyway) and contribute zero.
        gradient_as_bucket_view, static_graph: accepted; gradients are copied into the buckets.

    The wrapped module is ``.module``; ``state_dict()`` keys start with ``module.`` as in
    PyTorch (save ``ddp.module.state_dict()`` to load into an unwrapped model).
    """

    def __init__(self, module: Module, device_ids=None, output_device=None, dim: int = 0,
                 broadcast_buffers: bool = True, process_group=None, bucket_cap_mb: float = 25,
                 find_unused_parameters: bool = False, gradient_as_bucket_view: bool = False,
                 static_graph: bool = False):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected a Module, got {type(module).__name__}")
        if process_group is not None:
            raise ValueError("DistributedDataParallel: only the default process group is supported "
                             "(process_group=None)")
        if not bucket_cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be positive, got {bucket_cap_mb}")
        self._group = require_group("DistributedDataParallel")
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        self.bucket_cap_mb = bucket_cap_mb
        self.find_unused_parameters = find_unused_parameters
        self._params = [p for _, p in module.named_parameters() if p.requires_grad]
        self._names = {id(p): name for name, p in module.named_parameters()}
        if not self._params:
            raise RuntimeError("DistributedDataParallel: the module has no parameter that requires grad")
        for p in self._params:
            self._group.check_array("DistributedDataParallel", p.data)
        self._buffers_list = [b for b in module.buffers()]
        _broadcast_tensors(self._params + self._buffers_list)
        self._buckets, self._slot = self._make_buckets(int(bucket_cap_mb * 2 ** 20))
        self._expected = {id(p): 1 for p in self._params}  # accumulations per backward, set by forward
        self._arrived = {id(p): 0 for p in self._params}
        self._next_bucket = 0  # the first bucket not started yet
        self._sync = True      # False inside no_sync()
        self._grad_hooks = [p.register_post_accumulate_grad_hook(self._on_grad_accumulated) for p in self._params]

    def _make_buckets(self, cap_bytes: int):
        """Buckets in reverse registration order, split where the cap is reached or the
        dtype changes; returns (buckets, {id(param): (bucket, index in bucket)})."""
        buckets, current, size = [], [], 0
        for p in reversed(self._params):
            if current and (size + p.data.nbytes > cap_bytes or p.data.dtype != current[0].data.dtype):
                buckets.append(current)
                current, size = [], 0
            current.append(p)
            size += p.data.nbytes
        buckets.append(current)
        made = [_Bucket(params, params[0].xp) for params in buckets]
        slot = {id(p): (b, i) for b in made for i, p in enumerate(b.params)}
        return made, slot

    # ------------------------------------------------------------------ forward
    def forward(self, *inputs, **kwargs):
        if self.training and is_grad_enabled() and self._sync:
            self._check_finished()
        if self.training and self.broadcast_buffers and self._buffers_list and self._group.world_size > 1:
            _broadcast_tensors(self._buffers_list)
        output = self.module(*inputs, **kwargs)
        if self.training and is_grad_enabled() and self._sync:
            self._prepare_for_backward(output)
        return output

    @contextlib.contextmanager
    def no_sync(self):
        """Inside, backward accumulates local gradients without all-reducing them (gradient
        accumulation); the first backward after it averages the accumulated sum."""
        previous, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = previous

    def _check_finished(self) -> None:
        """A new forward while the previous backward's reduction is half done: some parameter
        got fewer gradients than its paths promised (a second forward before backward?)."""
        if any(self._arrived.values()) or self._next_bucket:
            missing = [self._names[id(p)] for p in self._params if self._arrived[id(p)] < self._expected[id(p)]]
            self._reset()
            raise RuntimeError(
                "DistributedDataParallel: the previous backward did not finish its gradient reduction (no "
                f"complete gradient for {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}); "
                "call backward once per forward, on a loss computed from this forward's output")

    def _prepare_for_backward(self, output) -> None:
        """Count the paths from ``output`` into each parameter (backward accumulates once per
        path), and make the buckets expect the parameters that got none as zeros."""
        counts = _leaf_paths(output)
        self._expected = {id(p): counts.get(id(p), 0) for p in self._params}
        self._reset()

    def _reset(self) -> None:
        for b in self._buckets:
            b.expected = sum(1 for p in b.params if self._expected[id(p)] > 0)
        self._rearm()

    def _rearm(self) -> None:
        """Ready for the next backward: nothing arrived, no bucket started, and the slots of the
        parameters this forward did not use hold zeros (their share of the sum)."""
        for b in self._buckets:
            b.pending, b.request = b.expected, None
            if b.expected < len(b.params):
                for i, p in enumerate(b.params):
                    if self._expected[id(p)] == 0:
                        b.flat[b.offsets[i]:b.offsets[i + 1]] = 0
        self._arrived = dict.fromkeys(self._arrived, 0)
        self._next_bucket = 0

    # ------------------------------------------------------------------ backward
    def _on_grad_accumulated(self, param: Tensor) -> None:
        if not self._sync:
            return
        key = id(param)
        self._arrived[key] += 1
        if self._arrived[key] != self._expected[key]:
            return  # more paths into this parameter are still to come
        bucket, i = self._slot[key]
        bucket.flat[bucket.offsets[i]:bucket.offsets[i + 1]] = param.grad.data.reshape(-1)
        bucket.pending -= 1
        self._start_ready_buckets()
        if self._next_bucket == len(self._buckets):
            self._finish()

    def _start_ready_buckets(self) -> None:
        """Start the all-reduce of every full bucket whose predecessors have started."""
        while self._next_bucket < len(self._buckets) and self._buckets[self._next_bucket].pending == 0:
            bucket = self._buckets[self._next_bucket]
            bucket.request = self._group.start_all_reduce(bucket.flat, ReduceOp.SUM)
            self._next_bucket += 1

    def _finish(self) -> None:
        """Wait for every bucket, average, and write the averages into the gradients."""
        self._group.wait([b.request for b in self._buckets], "DistributedDataParallel's gradient all-reduce")
        scale = 1.0 / self._group.world_size
        for b in self._buckets:
            b.flat *= b.flat.dtype.type(scale)
            for i, p in enumerate(b.params):
                averaged = b.flat[b.offsets[i]:b.offsets[i + 1]].reshape(p.data.shape)
                if p.grad is None:  # a parameter this rank did not use
                    p.grad = Tensor._wrap(averaged.copy())
                else:
                    p.grad.data[...] = averaged
        # The next backward of the same graph (a compiled step's replay runs no forward Python).
        self._rearm()

    def extra_repr(self) -> str:
        sizes = ", ".join(str(len(b.params)) for b in self._buckets)
        return f"world_size={self._group.world_size}, buckets=[{sizes}] parameters"


@recordable
def _broadcast_tensors(tensors) -> None:
    """Overwrite every rank's ``tensors`` by rank 0's (recorded whole by compile_step)."""
    for t in tensors:
        broadcast(t, 0)


def _leaf_paths(output) -> dict:
    """{id(leaf tensor): number of graph edges into it} over the graph that produced
    ``output`` (a tensor, or a tuple, list or dict of them): how many times backward from
    ``output`` will accumulate into each leaf's ``.grad``."""
    roots = []
    stack = [output]
    while stack:  # the tensors inside the output structure
        value = stack.pop()
        if isinstance(value, Tensor):
            if value.grad_fn is not None:
                roots.append(value.grad_fn)
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
    counts, seen = {}, set(map(id, roots))
    while roots:
        node = roots.pop()
        for edge in node.edges:
            if edge is None:
                continue
            if type(edge) is tuple:
                if id(edge[0]) not in seen:
                    seen.add(id(edge[0]))
                    roots.append(edge[0])
            else:
                counts[id(edge)] = counts.get(id(edge), 0) + 1
    return counts
