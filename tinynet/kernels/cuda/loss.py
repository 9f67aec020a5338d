"""Softmax cross-entropy with class-index targets on the GPU, fused: one kernel forward, one
backward.

The logits are viewed as (N, C, S): C classes, and S positions per sample (S = 1 for (N, C)
logits, S = d1*d2*... for (N, C, d1, d2, ...)). A *row* is one (n, s): one prediction over C
classes, with the label ``label[n, s]``. For a row with max ``m`` and
``log_sum = log(sum_c exp(z_c - m))``, and ``w`` the weight of its label (1 without weights)::

    loss      = w * (log_sum - (z_t - m))               (= -w * log_softmax(z)_t)
    dloss/dz  = (softmax(z) * w - w * onehot(t)) * scale,   softmax(z)_c = exp((z_c - m) - log_sum)

where ``scale`` is the incoming gradient, divided by the summed weights for 'mean'. A row
whose label is ``ignore_index`` has loss 0, weight 0 and gradient 0 (also when every row is
ignored and the 'mean' divides by 0, as in PyTorch); a label outside [0, C)
gives a NaN loss and NaN gradients (checking labels on the host would make it wait for the GPU).

Parallel decomposition:

* forward: one thread per row. It walks the row's C logits twice (max, then the sum of
  exponentials), and writes the loss, the label's weight (summed later for 'mean') and the
  row's ``m`` and ``log_sum`` for the backward (2 numbers per row instead of the N*C*S
  log-probabilities the reference keeps). One thread per row suits class counts up to a few
  thousand; a huge vocabulary would want a block per row and block reductions.
* backward: one thread per logit (n, c, s). Each reads its row's ``m``, ``log_sum``, label and
  weight and writes its own gradient: no reduction is left, so every thread is independent.
"""
from __future__ import annotations

import math

from numba import cuda

from ...backend import get_array_module
from ._numba_launch import THREADS, blocks_for, launch

__all__ = ["cross_entropy_forward_cuda", "cross_entropy_backward_cuda"]


@cuda.jit(cache=True)
def _cross_entropy_forward_kernel(z, label, class_weight, has_weight, ignore_index,
                                  losses, sample_weight, row_max, log_sum):
    n_class, spatial = z.shape[1], z.shape[2]
    dtype = z.dtype.type
    for row in range(cuda.grid(1), label.size, cuda.gridsize(1)):
        n, s = row // spatial, row % spatial
        m = z[n, 0, s]
        for c in range(1, n_class):
            if z[n, c, s] > m:   # (a NaN logit is skipped here, but makes the sum below NaN)
                m = z[n, c, s]
        total = dtype(0)
        for c in range(n_class):
            total += math.exp(z[n, c, s] - m)
        row_max[n, s] = m
        log_sum[n, s] = math.log(total)
        t = label[n, s]
        if t == ignore_index:
            losses[n, s] = 0
            sample_weight[n, s] = 0
        elif t < 0 or t >= n_class:       # invalid label: NaN, as the reference does on a GPU
            losses[n, s] = math.nan
            sample_weight[n, s] = class_weight[0] if has_weight else dtype(1)
        else:
            w = class_weight[t] if has_weight else dtype(1)
            losses[n, s] = w * (log_sum[n, s] - (z[n, t, s] - m))
            sample_weight[n, s] = w


@cuda.jit(cache=True)
def _cross_entropy_backward_kernel(z, label, row_max, log_sum, sample_weight, scale, scale_per_row,
                                   ignore_index, grad_z):
    n_class, spatial = z.shape[1], z.shape[2]
    for index in range(cuda.grid(1), z.size, cuda.gridsize(1)):
        s = index % spatial
        c = (index // spatial) % n_class
        n = index // (spatial * n_class)
        t = label[n, s]
        if t != ignore_index and (t < 0 or t >= n_class):
            grad_z[n, c, s] = math.nan
            continue
        w = sample_weight[n, s]
        if w == 0:  # an ignored row (or a class of weight 0): no gradient, even if the mean is 0/0
            grad_z[n, c, s] = 0
            continue
        p = math.exp((z[n, c, s] - row_max[n, s]) - log_sum[n, s])
        k = scale[n * spatial + s] if scale_per_row else scale[0]
        grad_z[n, c, s] = (p * w - (w if c == t else z.dtype.type(0))) * k


def _rows(xp, logits, target):
    """Logits as (N, C, S) and labels as (N, S) int64 (an unbatched (C,) input is one row)."""
    if logits.ndim == 1:
        return logits.reshape(1, -1, 1), target.reshape(1, 1).astype(xp.int64, copy=False)
    n, c = logits.shape[:2]
    z = xp.ascontiguousarray(logits).reshape(n, c, -1)
    return z, xp.ascontiguousarray(target).astype(xp.int64, copy=False).reshape(n, -1)


def cross_entropy_forward_cuda(logits, target, weight, ignore_index):
    """Per-row cross-entropy of ``logits`` (N, C, ...) or (C,) against class indices ``target``
    (N, ...) or (), in one kernel.

    Returns ``(losses, sample_weight, row_max, log_sum)``, each of the target's shape:
    the per-row losses, the label weights (0 where ignored; their sum is the 'mean' divisor),
    and what :func:`cross_entropy_backward_cuda` needs."""
    xp = get_array_module(logits)
    z, label = _rows(xp, logits, target)
    losses = xp.empty(label.shape, dtype=z.dtype)
    sample_weight, row_max, log_sum = xp.empty_like(losses), xp.empty_like(losses), xp.empty_like(losses)
    class_weight = z.reshape(-1) if weight is None else weight.astype(z.dtype, copy=False)  # stand-in: unread
    if label.size:
        launch(_cross_entropy_forward_kernel, blocks_for(label.size), THREADS, z,
               z, label, class_weight, weight is not None, int(ignore_index),
               losses, sample_weight, row_max, log_sum)
    shape = target.shape
    return losses.reshape(shape), sample_weight.reshape(shape), row_max.reshape(shape), log_sum.reshape(shape)


def cross_entropy_backward_cuda(logits, target, row_max, log_sum, sample_weight, scale, ignore_index):
    """Gradient of the per-row losses with respect to ``logits``, in one kernel.

    ``scale``: dL/d(each row's loss) before its weight: a 0-d array (one value for all rows,
    'sum' and 'mean') or an array of the target's shape ('none'). Returns an array shaped like
    ``logits``."""
    xp = get_array_module(logits)
    z, label = _rows(xp, logits, target)
    rows = label.shape
    grad_z = xp.empty_like(z)
    scale = xp.ascontiguousarray(scale, dtype=z.dtype).reshape(-1)  # one value, or one per row
    if z.size:
        launch(_cross_entropy_backward_kernel, blocks_for(z.size), THREADS, z,
               z, label, row_max.reshape(rows), log_sum.reshape(rows), sample_weight.reshape(rows),
               scale, scale.size > 1, int(ignore_index), grad_z)
    return grad_z.reshape(logits.shape)
