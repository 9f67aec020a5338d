"""Batch normalisation layers: ``BatchNorm1d`` and ``BatchNorm2d``.

In training, each channel is normalised with the mean and variance of the current batch, and
running averages of those statistics are updated; in evaluation, the running averages are
used instead, so the output of one sample no longer depends on the rest of the batch.
"""
from __future__ import annotations

from ... import backend
from ... import dtypes as _dt
from ...creation import empty, ones, tensor, zeros
from ...functional.norm import _batch_norm
from .. import init
from ..module import Module
from ..parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    """What BatchNorm1d and BatchNorm2d share; they differ only in which input ranks they accept."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None, *, bias: bool = True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = Parameter(empty(num_features, device=device, dtype=dtype))
            if bias:
                self.bias = Parameter(empty(num_features, device=device, dtype=dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features, device=device, dtype=dtype))
            self.register_buffer("running_var", ones(num_features, device=device, dtype=dtype))
            self.register_buffer("num_batches_tracked", tensor(0, dtype=_dt.int64, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Running mean 0, running variance 1; scale (weight) 1 and shift (bias) 0."""
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def _check_input_dim(self, input) -> None:
        raise NotImplementedError

    def forward(self, input):
        self._check_input_dim(input)
        if input.shape[1] != self.num_features:
            raise RuntimeError(f"{type(self).__name__}({self.num_features}): expected input with "
                               f"{self.num_features} channels in dimension 1, got input of shape {tuple(input.shape)}")
        momentum = 0.0 if self.momentum is None else self.momentum
        counter = None  # the step counter, when batch_norm is to add 1 to it
        if self.training and self.track_running_stats:
            if self.momentum is None:
                # Cumulative average: the n-th batch gets weight 1/n, so the running statistics
                # are the plain mean over all batches seen. An explicit read of the counter from
                # the device, as PyTorch does (the kernels take momentum as a number), after
                # adding this batch; the default momentum=0.1 never reads.
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / backend.item(self.num_batches_tracked.data)
            else:
                # Added inside the fused GPU kernel when that runs (no launch of its own), else
                # by an add_(1): see _batch_norm.
                counter = self.num_batches_tracked
        # Batch statistics in training; in evaluation too if there are no running statistics.
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        # Running statistics are passed when they are to be updated (training and tracked) or
        # to be used (evaluation).
        pass_running = not self.training or self.track_running_stats
        return _batch_norm(input,
                           self.running_mean if pass_running else None,
                           self.running_var if pass_running else None,
                           self.weight, self.bias, use_batch_stats, momentum, self.eps, counter)

    def _load_from_state_dict(self, state_dict, prefix, missing_keys, unexpected_keys, error_msgs) -> None:
        # Checkpoints written before PyTorch added num_batches_tracked lack it; like PyTorch,
        # accept them and keep the current count rather than reporting a missing key.
        key = prefix + "num_batches_tracked"
        if self.track_running_stats and key not in state_dict:
            state_dict = {**state_dict, key: self.num_batches_tracked}
        super()._load_from_state_dict(state_dict, prefix, missing_keys, unexpected_keys, error_msgs)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Normalises each feature (channel) over the batch, then scales and shifts it::

        y = (x - mean) / sqrt(var + eps) * weight + bias

    with ``mean`` and ``var`` (biased) taken over the batch (and length) dimensions in
    training, and the running estimates in evaluation. In training the running estimates are
    updated as ``running = (1 - momentum) * running + momentum * batch_stat`` (``var`` unbiased
    there); ``momentum=None`` gives a cumulative average.

    Backward (done by ``F.batch_norm``): in training, the gradient also flows through the batch
    mean and variance, so ``dx = (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)) / std``
    per channel, with ``dx_hat = dy * weight``; ``dweight = sum(dy * x_hat)``, ``dbias = sum(dy)``.

    Args:
        num_features: C, the number of channels.
        eps: added to the variance for numerical stability. Default: 1e-5.
        momentum: weight of the new batch in the running statistics (None: cumulative
            average). Default: 0.1.
        affine: learn a per-channel scale and shift. Default: True.
        track_running_stats: keep running statistics (else batch statistics are used in
            evaluation too). Default: True.

    Shape:
        - Input: ``(N, C)`` or ``(N, C, L)``.
        - Output: same as the input.

    Example::

        >>> bn = nn.BatchNorm1d(100)
        >>> bn(tinynet.randn(20, 100)).shape
        (20, 100)
    """

    def _check_input_dim(self, input) -> None:
        if input.ndim not in (2, 3):
            raise ValueError(f"BatchNorm1d: expected 2D or 3D input (got {input.ndim}D input of shape "
                             f"{tuple(input.shape)})")


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over a batch of images: each channel is normalised with statistics
    over ``(N, H, W)``. Formulas, backward and arguments as :class:`BatchNorm1d`.

    Shape:
        - Input: ``(N, C, H, W)``.
        - Output: same as the input.

    Example::

        >>> bn = nn.BatchNorm2d(16)
        >>> bn(tinynet.randn(8, 16, 32, 32)).shape
        (8, 16, 32, 32)
    """

    def _check_input_dim(self, input) -> None:
        if input.ndim != 4:
            raise ValueError(f"BatchNorm2d: expected 4D input (got {input.ndim}D input of shape "
                             f"{tuple(input.shape)})")
