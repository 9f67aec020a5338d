"""Normalisation ops: ``batch_norm``.

Batch normalisation standardises every channel of a batch, then scales and shifts it by learnt
per-channel parameters. Its backward is written in closed form in one Function rather than as
a chain of mean/sub/mul/sqrt ops: one pass over the data instead of a dozen, and the formula in
the docstring is the code. On a GPU (CuPy arrays, or simulated ones run by the CUDA emulator)
training mode runs as one kernel each way (``tinynet/kernels/cuda/norm.py``), computing the
same formulas.
"""
from __future__ import annotations

from ..autograd import Function
from ..kernels.dispatch import uses_cuda, uses_numba
from ..kernels.norm import batch_norm_backward_numba, batch_norm_forward_numba
from ..tensor import Tensor

__all__ = ["batch_norm"]


class BatchNorm(Function):
    r"""y = gamma * x_hat + beta, with x_hat = (x - mean) * inv_std per channel (dim 1).

    Statistics are taken over every axis but the channel axis; ``M`` is the number of elements
    per channel (N for (N, C), N*L for (N, C, L), N*H*W for (N, C, H, W)).

    Training: mean and var are the batch's (var biased, divided by M), inv_std = 1/sqrt(var+eps),
    and the running statistics, when given, are updated in place as PyTorch does::

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)  # unbiased

    Eval: mean and var are the running statistics (constants).

    Backward. Let g = dL/dy and dxhat = g * gamma. Then dbeta = sum(g), dgamma = sum(g * x_hat)
    (sums over all axes but the channel axis). In eval mode x_hat is an affine function of x, so
    dx = dxhat * inv_std. In training mean and inv_std depend on x too; with
    d(mean)/dx_i = 1/M and d(inv_std)/dx_i = -inv_std**2 * x_hat_i / M the chain rule gives::

        dx_i = inv_std * (dxhat_i - sum(dxhat) / M - x_hat_i * sum(dxhat * x_hat) / M)
             = inv_std / M * (M * dxhat_i - sum(dxhat) - x_hat_i * sum(dxhat * x_hat))

    i.e. the gradient of x_hat with its components along the two directions that the
    normalisation removes (a constant shift and a rescaling) projected out.

    The array code below is the readable version. In training, float32/float64 NumPy arrays
    take the compiled loops of ``tinynet/kernels/norm.py`` (the same formulas, one task per
    channel, 3-4x faster), CuPy arrays the fused kernels of ``tinynet/kernels/cuda/norm.py``.
    The optional ``num_batches_tracked`` input (a BatchNorm module's int64 step counter, given
    by :func:`_batch_norm` on the fused path only) is incremented by that forward kernel.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, num_batches_tracked=None, *, training,
                momentum, eps):
        xp = ctx.xp
        axes = (0,) + tuple(range(2, x.ndim))           # every axis but the channel axis
        channel_shape = (1, -1) + (1,) * (x.ndim - 2)     # per-channel vector -> broadcastable
        ctx.training, ctx.axes = training, axes
        ctx.fused = _runs_fused(x, training, running_mean, running_var)
        if num_batches_tracked is not None and not ctx.fused:
            raise RuntimeError("batch_norm: num_batches_tracked is only passed to the fused GPU kernel "
                               "(_batch_norm adds 1 to it itself on the other paths)")
        if ctx.fused:  # one GPU kernel: statistics, normalisation, running-stat and counter update
            from ..kernels.cuda.norm import batch_norm_forward_cuda
            y, x_hat, _, inv_std = batch_norm_forward_cuda(x, weight, bias, running_mean, running_var,
                                                           momentum, eps, num_batches_tracked)
            ctx.save_for_backward(x_hat, inv_std, weight)
            return y
        ctx.numba = training and uses_numba(x) and x.ndim >= 2
        if ctx.numba:  # the same computation as compiled loops, one task per channel (CPU)
            y, x_hat, mean, var, inv_std = batch_norm_forward_numba(x, weight, bias, eps)
            _update_running_stats(x, running_mean, running_var, mean, var, momentum)
            ctx.save_for_backward(x_hat, inv_std, weight)
            return y
        if training:
            mean = x.mean(axis=axes, keepdims=True)
            centered = x - mean
            var = (centered * centered).mean(axis=axes, keepdims=True)  # two-pass: stable
            _update_running_stats(x, running_mean, running_var, mean.reshape(-1), var.reshape(-1), momentum)
        else:
            centered = x - running_mean.reshape(channel_shape)
            var = running_var.reshape(channel_shape)
        inv_std = 1 / xp.sqrt(var + eps)
        y, x_hat, gamma = _normalize_affine(centered, inv_std, weight, bias, channel_shape)
        ctx.save_for_backward(x_hat, inv_std, gamma)
        return y

    @staticmethod
    def backward(ctx, grad):
        x_hat, inv_std, gamma = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        if ctx.fused:  # the same formulas in one GPU kernel (gamma and inv_std are (C,) here)
            from ..kernels.cuda.norm import batch_norm_backward_cuda
            out_weight, out_bias = ctx.grad_out[1:3] if ctx.grad_out else (None, None)  # reserved .grad storage
            grad_x, grad_weight, grad_bias = batch_norm_backward_cuda(grad, x_hat, inv_std, gamma, need_x,
                                                                      out_weight, out_bias)
            return grad_x, grad_weight if need_weight else None, grad_bias if need_bias else None, None, None, None
        if ctx.numba:  # the same formulas as compiled loops (inv_std and gamma are (C,) here)
            grad_x, grad_weight, grad_bias = batch_norm_backward_numba(grad, x_hat, inv_std, gamma, need_x)
            return grad_x, grad_weight if need_weight else None, grad_bias if need_bias else None, None, None, None
        axes = ctx.axes
        grad_x = grad_weight = grad_bias = None
        if need_weight:
            grad_weight = (grad * x_hat).sum(axis=axes)
        if need_bias:
            grad_bias = grad.sum(axis=axes)
        if need_x:
            dxhat = grad if gamma is None else grad * gamma
            if ctx.training:
                count = x_hat.size // x_hat.shape[1]
                sum_dxhat = dxhat.sum(axis=axes, keepdims=True)
                sum_dxhat_xhat = (dxhat * x_hat).sum(axis=axes, keepdims=True)
                grad_x = inv_std / count * (count * dxhat - sum_dxhat - x_hat * sum_dxhat_xhat)
            else:
                grad_x = dxhat * inv_std
        return grad_x, grad_weight, grad_bias, None, None, None


def _runs_fused(x, training, running_mean, running_var) -> bool:
    """Whether batch norm of the array ``x`` runs as the fused GPU kernels (training on a CUDA
    array, with both running statistics or neither); only their presence is looked at, so
    tensors or arrays will do."""
    return training and uses_cuda(x) and (running_mean is None) == (running_var is None)


def _normalize_affine(centered, inv_std, weight, bias, channel_shape: tuple) -> tuple:
    """``x_hat = centered * inv_std``, then ``y = x_hat * gamma + beta`` with the per-channel
    ``weight``/``bias`` (each optional) reshaped to ``channel_shape``. Returns ``(y, x_hat,
    gamma)``: what backward needs is ``x_hat`` and ``gamma``. Shared by BatchNorm and SyncBatchNorm."""
    x_hat = centered * inv_std
    gamma = None if weight is None else weight.reshape(channel_shape)
    y = x_hat if gamma is None else x_hat * gamma
    if bias is not None:
        y = y + bias.reshape(channel_shape)
    return y, x_hat, gamma


def _update_running_stats(x, running_mean, running_var, mean, var, momentum) -> None:
    """Fold the batch's (C,) mean and biased variance into the running statistics; the
    variance is made unbiased (times M / (M - 1), M values per channel) first, as PyTorch does."""
    if running_mean is not None:
        _update_running_stat(running_mean, mean, momentum)
    if running_var is not None:
        count = x.size // x.shape[1]
        _update_running_stat(running_var, var * (count / (count - 1)), momentum)


def _update_running_stat(running, batch_stat, momentum) -> None:
    """running <- (1 - momentum) * running + momentum * batch_stat, in place (the caller's
    tensor sees the new values: that is how the module's buffers learn)."""
    running *= 1 - momentum
    running += momentum * batch_stat.astype(running.dtype, copy=False)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5):
    """Batch normalisation of ``input`` of shape (N, C), (N, C, L) or (N, C, H, W) over every
    axis but the channel axis 1, as ``torch.nn.functional.batch_norm``.

    Args:
        running_mean, running_var: per-channel tensors of shape (C,), or None. Used instead of
            the batch statistics when ``training`` is False; updated in place when it is True.
        weight, bias: per-channel scale gamma and shift beta of shape (C,), or None (1 and 0).
        training: normalise with the batch statistics (and update the running ones).
        momentum: weight of the new batch statistic in the running average.
        eps: added to the variance before the square root.

    Returns:
        A tensor of the input's shape. Backward: see :class:`BatchNorm` for the closed form.
    """
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)


def _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps,
                num_batches_tracked=None):
    """:func:`batch_norm`, and one added to ``num_batches_tracked`` (the BatchNorm modules'
    int64 step counter of shape (), or None). The fused GPU kernel does that addition itself,
    so the counter costs no kernel launch of its own there (nor in a CUDA graph's replay); on
    every other path it is an ``add_(1)`` here."""
    _check_batch_norm_args(input, running_mean, running_var, weight, bias, training)
    if num_batches_tracked is not None and not _runs_fused(input.data, training, running_mean, running_var):
        num_batches_tracked.add_(1)
        num_batches_tracked = None
    return BatchNorm.apply(input, weight, bias, running_mean, running_var, num_batches_tracked,
                           training=bool(training), momentum=momentum, eps=eps)


def _check_batch_norm_args(input, running_mean, running_var, weight, bias, training) -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"batch_norm: expected input to be a Tensor, got {type(input).__name__}")
    if input.ndim < 2:
        raise RuntimeError(f"batch_norm: expected input of shape (N, C), (N, C, L) or (N, C, H, W), got "
                           f"shape {tuple(input.shape)}")
    channels = input.shape[1]
    named = {"running_mean": running_mean, "running_var": running_var, "weight": weight, "bias": bias}
    for name, t in named.items():
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"batch_norm: expected {name} to be a Tensor or None, got {type(t).__name__}")
        if t.numel() != channels:
            raise RuntimeError(f"batch_norm: {name} should contain {channels} elements (the channels, dim 1 "
                               f"of input shape {tuple(input.shape)}) not {t.numel()}")
        if t.dtype != input.dtype:
            raise RuntimeError(f"batch_norm: {name} has dtype {t.dtype} but input has dtype {input.dtype}; "
                               "all inputs must share the same dtype")
    if not training and (running_mean is None or running_var is None):
        raise RuntimeError("batch_norm: running_mean and running_var must be defined in evaluation mode "
                           "(training=False)")
    if training and input.numel() // channels <= 1:
        raise ValueError(f"batch_norm: Expected more than 1 value per channel when training, got input "
                         f"size {tuple(input.shape)}")
