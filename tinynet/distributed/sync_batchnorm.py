"""``SyncBatchNorm``: batch normalisation with the statistics of the whole global batch, all
ranks together, so that N ranks at batch b normalise exactly as one process at batch N*b.

Forward all-reduces, per channel, the sum of x and the element count (-> global mean), then the
sum of squared deviations from that mean (-> global biased variance; two passes, as the
single-process kernel, so no cancellation). Backward needs the global sums of the two
directions that normalisation removes; with ``dxhat = dL/dy * gamma``::

    dx_i = inv_std / M * (M * dxhat_i - sum_all(dxhat) - x_hat_i * sum_all(dxhat * x_hat))

where ``M`` is the global element count per channel and ``sum_all`` runs over every rank's
elements (one more all-reduce). This is the gradient of the *sum* of the ranks' losses;
DistributedDataParallel then divides the parameters' gradients by the world size, which makes
it the gradient of the full batch's mean loss. ``dgamma = sum(dL/dy * x_hat)`` and ``dbeta =
sum(dL/dy)`` stay local: they are parameter gradients, which DDP all-reduces.

The collectives run inside the op's forward and backward, so a compiled step's replay (which
calls them again) all-reduces every time.
"""
from __future__ import annotations

from ..autograd import Function
from ..functional.norm import _check_batch_norm_args, _normalize_affine, _update_running_stat
from ..nn.layers.normalization import _BatchNorm
from ..nn.module import Module
from .process_group import ReduceOp, get_world_size, is_initialized, require_group

__all__ = ["SyncBatchNorm"]


def _all_reduce_array(array, what: str):
    """Sum ``array`` over the ranks, in place (the op's own arrays, no Tensor)."""
    group = require_group(what)
    group.wait([group.start_all_reduce(array, ReduceOp.SUM)], what)
    return array


class SyncBatchNormFunction(Function):
    """Batch normalisation in training over the global batch (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, *, momentum, eps):
        xp = ctx.xp
        axes = (0,) + tuple(range(2, x.ndim))
        channel_shape = (1, -1) + (1,) * (x.ndim - 2)
        channels = x.shape[1]
        sums = xp.empty(channels + 1, dtype=x.dtype)
        sums[:channels] = x.sum(axis=axes)
        sums[channels] = x.size // channels
        _all_reduce_array(sums, "SyncBatchNorm forward")
        count = sums[channels]  # kept as an array: no read on the host
        mean = sums[:channels] / count
        centered = x - mean.reshape(channel_shape)
        var = _all_reduce_array((centered * centered).sum(axis=axes), "SyncBatchNorm forward") / count
        if running_mean is not None:
            _update_running_stat(running_mean, mean, momentum)
        if running_var is not None:
            _update_running_stat(running_var, var * (count / (count - 1)), momentum)
        inv_std = 1 / xp.sqrt(var + eps).reshape(channel_shape)
        y, x_hat, gamma = _normalize_affine(centered, inv_std, weight, bias, channel_shape)
        ctx.axes, ctx.count = axes, count
        ctx.save_for_backward(x_hat, inv_std, gamma)
        return y

    @staticmethod
    def backward(ctx, grad):
        x_hat, inv_std, gamma = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        axes, count = ctx.axes, ctx.count
        grad_weight = (grad * x_hat).sum(axis=axes) if need_weight else None
        grad_bias = grad.sum(axis=axes) if need_bias else None
        grad_x = None
        if need_x:
            xp = ctx.xp
            dxhat = grad if gamma is None else grad * gamma
            channels = x_hat.shape[1]
            sums = xp.empty(2 * channels, dtype=dxhat.dtype)
            sums[:channels] = dxhat.sum(axis=axes)
            sums[channels:] = (dxhat * x_hat).sum(axis=axes)
            _all_reduce_array(sums, "SyncBatchNorm backward")
            shape = (1, -1) + (1,) * (x_hat.ndim - 2)
            grad_x = inv_std / count * (count * dxhat - sums[:channels].reshape(shape)
                                        - x_hat * sums[channels:].reshape(shape))
        return grad_x, grad_weight, grad_bias, None, None


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over every rank's samples together (PyTorch's ``nn.SyncBatchNorm``), for input
    of shape (N, C) or (N, C, *). In evaluation, or without a process group of more than one
    rank, it is the ordinary batch normalisation. Same arguments as ``BatchNorm2d``
    (``process_group`` accepted for PyTorch's signature: the default group only)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group=None, device=None, dtype=None):
        if process_group is not None:
            raise ValueError("SyncBatchNorm: only the default process group is supported (process_group=None)")
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)

    def _check_input_dim(self, input) -> None:
        if input.ndim < 2:
            raise ValueError(f"SyncBatchNorm: expected at least 2D input (N, C, ...), got {input.ndim}D input")

    def forward(self, input):
        if not (self.training and is_initialized() and get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        if input.shape[1] != self.num_features:
            raise RuntimeError(f"SyncBatchNorm({self.num_features}): expected input with {self.num_features} "
                               f"channels in dimension 1, got input of shape {tuple(input.shape)}")
        if self.momentum is None:
            raise NotImplementedError("SyncBatchNorm: momentum=None (a cumulative average) is not supported")
        track = self.track_running_stats
        if track:
            self.num_batches_tracked.add_(1)
        _check_batch_norm_args(input, self.running_mean, self.running_var, self.weight, self.bias, True)
        return SyncBatchNormFunction.apply(input, self.weight, self.bias, self.running_mean if track else None,
                                           self.running_var if track else None, momentum=self.momentum, eps=self.eps)

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group=None) -> Module:
        """``module`` with every BatchNorm layer replaced by a SyncBatchNorm holding the same
        parameters and buffers (the tensors themselves, not copies)."""
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, process_group)
            for name in ("weight", "bias"):
                if name in module._parameters:
                    converted.register_parameter(name, module._parameters[name])
            for name, buffer in module._buffers.items():
                converted.register_buffer(name, buffer)
            converted.train(module.training)
            return converted
        for name, child in list(module.named_children()):
            module.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return module
