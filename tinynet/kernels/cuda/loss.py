"""Softmax cross-entropy and nll_loss with class-index targets on the GPU, fused (CUDA C,
launched through CuPy). A 'sum' or 'mean' loss is ONE launch that also writes the gradient
(``*_reduced``); 'none', and inputs too large for one block, take three: the rows, their sum
or mean, the backward.

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

Parallel decomposition of the one-launch kernels (``cross_entropy_reduced``, ``nll_reduced``):
ONE block. Each thread walks its rows (t, t + blockDim.x, ...) and adds up their losses and
weights; the block sums them as a tree in shared memory (``block_sum``, ``kernels/cuda/reduce.py``),
a fixed order, so the loss is the same bit for bit on every run (no float atomics); thread 0
writes it. When the input requires grad, every thread then walks the same rows again and
writes their gradients, ``scale`` being 1 (divided by the summed weights for 'mean', which the
block sum has just made known to all threads): the gradient of the loss itself, which backward
returns as it is for ``loss.backward()``'s implicit seed, and scales in one launch for any other
incoming gradient. One block uses one streaming multiprocessor: right for a classifier's batch
(a few thousand logits, a few microseconds), wrong for a segmentation map, so inputs above
``ONE_BLOCK_MAX_ELEMENTS`` take the per-row kernels below.

Parallel decomposition of the per-row kernels:

* forward: one thread per row. It walks the row's C logits twice (max, then the sum of
  exponentials), and writes the loss, the label's weight (summed later for 'mean') and the
  row's ``m`` and ``log_sum`` for the backward (2 numbers per row instead of the N*C*S
  log-probabilities the reference keeps). One thread per row suits class counts up to a few
  thousand; a huge vocabulary would want a block per row and block reductions.
* reduction ('sum' and 'mean', shared with ``nll_loss``): one block adds the row losses and
  the row weights in shared memory (``block_sum``) and writes the total, divided by the
  summed weights for 'mean', and that divisor for the backward: one launch instead of three.
* backward: one thread per logit (n, c, s). Each reads its row's ``m``, ``log_sum``, label and
  weight and writes its own gradient: no reduction is left, so every thread is independent.
"""
from __future__ import annotations

import numpy as np

from ...backend import get_array_module
from .launch import REDUCE_THREADS, THREADS, CudaModule, blocks_for, reduce_threads_for
from .reduce import BLOCK_SUM, ROW_LOG_SUM_EXP

__all__ = ["ONE_BLOCK_MAX_ELEMENTS", "reduced_loss_cuda", "cross_entropy_forward_cuda", "loss_reduce_cuda", "cross_entropy_backward_cuda", "nll_forward_cuda",
           "nll_backward_cuda"]

_SOURCE = BLOCK_SUM + ROW_LOG_SUM_EXP + r"""
// z: (N, C, S) contiguous logits; label, losses, sample_weight, row_max, log_sum: (N, S).
extern "C" __global__ void cross_entropy_forward(
        const T* z, const long long* label, const T* class_weight, int has_weight, long long ignore_index,
        T* losses, T* sample_weight, T* row_max, T* log_sum, long long rows, long long n_class, long long spatial) {
    for (long long row = (long long)blockIdx.x * blockDim.x + threadIdx.x; row < rows;
         row += (long long)gridDim.x * blockDim.x) {
        long long n = row / spatial, s = row % spatial;
        const T* zr = z + n * n_class * spatial + s;     // logit c of this row: zr[c * spatial]
        T m;
        T ls = row_log_sum_exp(zr, n_class, spatial, &m);
        row_max[row] = m;
        log_sum[row] = ls;
        long long t = label[row];
        if (t == ignore_index) {
            losses[row] = 0;
            sample_weight[row] = 0;
        } else if (t < 0 || t >= n_class) {   // invalid label: NaN, as the reference does on a GPU
            losses[row] = (T)TN_NAN;
            sample_weight[row] = has_weight ? class_weight[0] : (T)1;
        } else {
            T w = has_weight ? class_weight[t] : (T)1;
            losses[row] = w * (ls - (zr[t * spatial] - m));
            sample_weight[row] = w;
        }
    }
}

// One block: out[0] = sum(losses), divided by sum(sample_weight) when `mean`; count[0] = that sum.
extern "C" __global__ void loss_reduce(const T* losses, const T* sample_weight, long long rows, int mean,
                                                T* out, T* count) {
    __shared__ T shared[REDUCE_THREADS];
    T loss = 0, weight = 0;
    for (long long row = threadIdx.x; row < rows; row += blockDim.x) {
        loss += losses[row];
        weight += sample_weight[row];
    }
    loss = block_sum(shared, loss);
    weight = block_sum(shared, weight);
    if (threadIdx.x == 0) {
        count[0] = weight;
        out[0] = mean ? loss / weight : loss;   // all ignored: 0/0 = NaN, as PyTorch
    }
}

// One thread per logit. scale: dL/d(row loss), one value or one per row; divided by count[0]
// for 'mean'.
extern "C" __global__ void cross_entropy_backward(
        const T* z, const long long* label, const T* row_max, const T* log_sum, const T* sample_weight,
        const T* scale, int scale_per_row, const T* count, int mean, long long ignore_index, T* grad_z,
        long long size, long long n_class, long long spatial) {
    for (long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x; index < size;
         index += (long long)gridDim.x * blockDim.x) {
        long long s = index % spatial, c = (index / spatial) % n_class, n = index / (spatial * n_class);
        long long row = n * spatial + s;
        long long t = label[row];
        if (t != ignore_index && (t < 0 || t >= n_class)) {
            grad_z[index] = (T)TN_NAN;
            continue;
        }
        T w = sample_weight[row];
        if (w == 0) {  // an ignored row (or a class of weight 0): no gradient, even if the mean is 0/0
            grad_z[index] = 0;
            continue;
        }
        T p = exp((z[index] - row_max[row]) - log_sum[row]);
        T k = scale_per_row ? scale[row] : scale[0];
        if (mean) k = k / count[0];
        grad_z[index] = (p * w - (c == t ? w : (T)0)) * k;
    }
}

// NLL loss of log-probabilities x (N, C, S): one thread per row; loss = -w[t] * x[t].
extern "C" __global__ void nll_forward(
        const T* x, const long long* label, const T* class_weight, int has_weight, long long ignore_index,
        T* losses, T* sample_weight, long long rows, long long n_class, long long spatial) {
    GRID_STRIDE_LOOP(row, rows) {
        long long n = row / spatial, s = row % spatial;
        long long t = label[row];
        if (t == ignore_index) {
            losses[row] = 0;
            sample_weight[row] = 0;
        } else if (t < 0 || t >= n_class) {
            losses[row] = (T)TN_NAN;
            sample_weight[row] = has_weight ? class_weight[0] : (T)1;
        } else {
            T w = has_weight ? class_weight[t] : (T)1;
            losses[row] = -w * x[(n * n_class + t) * spatial + s];
            sample_weight[row] = w;
        }
    }
}

// One thread per element: -onehot(t) * (scale * w), scale divided by count[0] for 'mean'.
extern "C" __global__ void nll_backward(
        const long long* label, const T* sample_weight, const T* scale, int scale_per_row, const T* count,
        int mean, long long ignore_index, T* grad_x, long long size, long long n_class, long long spatial) {
    GRID_STRIDE_LOOP(index, size) {
        long long s = index % spatial, c = (index / spatial) % n_class, n = index / (spatial * n_class);
        long long row = n * spatial + s;
        long long t = label[row];
        bool bad = t != ignore_index && (t < 0 || t >= n_class);
        if (bad) {
            grad_x[index] = (T)TN_NAN;
            continue;
        }
        long long safe = t == ignore_index ? 0 : t;    // as the reference's label: 0 where ignored
        T k = scale_per_row ? scale[row] : scale[0];
        if (mean) k = k / count[0];
        grad_x[index] = -(c == safe ? (T)1 : (T)0) * (k * sample_weight[row]);
    }
}

// ---------------------------------------------------------------- reduced losses, one launch
// The whole 'sum' or 'mean' loss in ONE block (no float atomics, so the result is the same on
// every run): each thread walks the rows t, t + blockDim.x, ..., the block sums the losses and
// the weights (block_sum), thread 0 writes out[0]. With want_grad, a second walk over the same
// rows writes d out[0] / dz, which needs the summed weights of the 'mean' first.
extern "C" __global__ void cross_entropy_reduced(
        const T* z, const long long* label, const T* class_weight, int has_weight, long long ignore_index,
        int mean, int want_grad, T* out, T* grad_z, long long rows, long long n_class, long long spatial) {
    __shared__ T shared[REDUCE_THREADS];
    T loss = 0, weight = 0;
    for (long long row = threadIdx.x; row < rows; row += blockDim.x) {
        const T* zr = z + (row / spatial) * n_class * spatial + row % spatial;   // logit c: zr[c * spatial]
        long long t = label[row];
        if (t == ignore_index) continue;
        T m;
        T ls = row_log_sum_exp(zr, n_class, spatial, &m);
        if (t < 0 || t >= n_class) {   // invalid label: NaN, as the reference does on a GPU
            loss += (T)TN_NAN;
            weight += has_weight ? class_weight[0] : (T)1;
        } else {
            T w = has_weight ? class_weight[t] : (T)1;
            loss += w * (ls - (zr[t * spatial] - m));
            weight += w;
        }
    }
    loss = block_sum(shared, loss);
    weight = block_sum(shared, weight);
    if (threadIdx.x == 0) out[0] = mean ? loss / weight : loss;   // all ignored: 0/0 = NaN, as PyTorch
    if (!want_grad) return;
    T k = mean ? (T)1 / weight : (T)1;
    for (long long row = threadIdx.x; row < rows; row += blockDim.x) {
        long long base = (row / spatial) * n_class * spatial + row % spatial;
        const T* zr = z + base;
        T* gr = grad_z + base;
        long long t = label[row];
        bool bad = t != ignore_index && (t < 0 || t >= n_class);
        T w = (t == ignore_index || bad) ? (T)0 : (has_weight ? class_weight[t] : (T)1);
        if (bad || w == 0) {   // NaN for an invalid label; no gradient for a row that counts for nothing
            for (long long c = 0; c < n_class; c++) gr[c * spatial] = bad ? (T)TN_NAN : (T)0;
            continue;
        }
        T m;
        T ls = row_log_sum_exp(zr, n_class, spatial, &m);
        for (long long c = 0; c < n_class; c++)
            gr[c * spatial] = (exp((zr[c * spatial] - m) - ls) * w - (c == t ? w : (T)0)) * k;
    }
}

// nll_loss the same way: out[0] = -sum w[t] x[t] (divided by sum w for 'mean'), and with
// want_grad d out[0] / dx = -onehot(t) * w / (sum w for 'mean').
extern "C" __global__ void nll_reduced(
        const T* x, const long long* label, const T* class_weight, int has_weight, long long ignore_index,
        int mean, int want_grad, T* out, T* grad_x, long long rows, long long n_class, long long spatial) {
    __shared__ T shared[REDUCE_THREADS];
    T loss = 0, weight = 0;
    for (long long row = threadIdx.x; row < rows; row += blockDim.x) {
        long long t = label[row];
        if (t == ignore_index) continue;
        if (t < 0 || t >= n_class) {
            loss += (T)TN_NAN;
            weight += has_weight ? class_weight[0] : (T)1;
        } else {
            T w = has_weight ? class_weight[t] : (T)1;
            loss += -w * x[((row / spatial) * n_class + t) * spatial + row % spatial];
            weight += w;
        }
    }
    loss = block_sum(shared, loss);
    weight = block_sum(shared, weight);
    if (threadIdx.x == 0) out[0] = mean ? loss / weight : loss;
    if (!want_grad) return;
    T k = mean ? (T)1 / weight : (T)1;   // all ignored with 'mean': 1/0, and NaN gradients as PyTorch
    for (long long row = threadIdx.x; row < rows; row += blockDim.x) {
        T* gr = grad_x + (row / spatial) * n_class * spatial + row % spatial;
        long long t = label[row];
        bool bad = t != ignore_index && (t < 0 || t >= n_class);
        long long safe = t == ignore_index ? 0 : t;    // as the reference's label: 0 where ignored
        T w = (t == ignore_index || bad) ? (T)0 : (has_weight ? class_weight[t] : (T)1);
        for (long long c = 0; c < n_class; c++)
            gr[c * spatial] = bad ? (T)TN_NAN : -(c == safe ? (T)1 : (T)0) * (k * w);
    }
}
"""

_module = CudaModule("loss", _SOURCE)


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
    class_weight = losses if weight is None else weight.astype(z.dtype, copy=False)  # stand-in: unread
    if label.size:
        _module.launch("cross_entropy_forward", z.dtype, (blocks_for(label.size),), (THREADS,),
                       (z, label, class_weight, np.int32(weight is not None), np.int64(ignore_index),
                        losses, sample_weight, row_max, log_sum, np.int64(label.size), np.int64(z.shape[1]),
                        np.int64(z.shape[2])))
    shape = target.shape
    return losses.reshape(shape), sample_weight.reshape(shape), row_max.reshape(shape), log_sum.reshape(shape)


def loss_reduce_cuda(losses, sample_weight, reduction: str):
    """The 'sum' or 'mean' of the per-row ``losses`` in one launch (the mean divides by the
    summed ``sample_weight``). Returns ``(loss, count)``: 0-d arrays, ``count`` the divisor."""
    xp = get_array_module(losses)
    out, count = xp.empty((), dtype=losses.dtype), xp.empty((), dtype=losses.dtype)
    _module.launch("loss_reduce", losses.dtype, (1,), (REDUCE_THREADS,),
                   (xp.ascontiguousarray(losses), xp.ascontiguousarray(sample_weight), np.int64(losses.size),
                    np.int32(reduction == "mean"), out, count))
    return out, count


def cross_entropy_backward_cuda(logits, target, row_max, log_sum, sample_weight, scale, ignore_index, count=None):
    """Gradient of the per-row losses with respect to ``logits``, in one kernel.

    ``scale``: dL/d(each row's loss) before its weight: a 0-d array (one value for all rows,
    'sum' and 'mean') or an array of the target's shape ('none'). ``count``: for 'mean', the
    0-d divisor from :func:`loss_reduce_cuda` (the kernel divides ``scale`` by it).
    Returns an array shaped like ``logits``."""
    xp = get_array_module(logits)
    z, label = _rows(xp, logits, target)
    rows = label.shape
    grad_z = xp.empty_like(z)
    scale = xp.ascontiguousarray(scale, dtype=z.dtype).reshape(-1)  # one value, or one per row
    if z.size:
        _module.launch("cross_entropy_backward", z.dtype, (blocks_for(z.size),), (THREADS,),
                       (z, label, xp.ascontiguousarray(row_max).reshape(rows),
                        xp.ascontiguousarray(log_sum).reshape(rows), xp.ascontiguousarray(sample_weight).reshape(rows),
                        scale, np.int32(scale.size > 1), scale if count is None else count,
                        np.int32(count is not None), np.int64(ignore_index), grad_z, np.int64(z.size),
                        np.int64(z.shape[1]), np.int64(z.shape[2])))
    return grad_z.reshape(logits.shape)


def nll_forward_cuda(x, target, weight, ignore_index):
    """Per-row negative log-likelihood of log-probabilities ``x`` (N, C, ...) or (C,) against
    class indices ``target``, in one kernel. Returns ``(losses, sample_weight)`` of the
    target's shape (the weights: 0 where ignored; their sum is the 'mean' divisor)."""
    xp = get_array_module(x)
    z, label = _rows(xp, x, target)
    losses = xp.empty(label.shape, dtype=z.dtype)
    sample_weight = xp.empty_like(losses)
    class_weight = losses if weight is None else weight.astype(z.dtype, copy=False)  # stand-in: unread
    if label.size:
        _module.launch("nll_forward", z.dtype, (blocks_for(label.size),), (THREADS,),
                       (z, label, class_weight, np.int32(weight is not None), np.int64(ignore_index), losses,
                        sample_weight, np.int64(label.size), np.int64(z.shape[1]), np.int64(z.shape[2])))
    return losses.reshape(target.shape), sample_weight.reshape(target.shape)


def nll_backward_cuda(shape, target, sample_weight, scale, ignore_index, count=None):
    """Gradient of the per-row NLL losses with respect to the log-probabilities (of ``shape``),
    in one kernel: ``-scale * w`` at each row's label, 0 elsewhere (``scale`` and ``count`` as
    in :func:`cross_entropy_backward_cuda`)."""
    xp = get_array_module(sample_weight)
    n, n_class = (1, shape[0]) if len(shape) == 1 else shape[:2]
    label = xp.ascontiguousarray(target).astype(xp.int64, copy=False).reshape(n, -1)
    grad_x = xp.empty(shape, dtype=sample_weight.dtype)
    scale = xp.ascontiguousarray(scale, dtype=grad_x.dtype).reshape(-1)
    if grad_x.size:
        _module.launch("nll_backward", grad_x.dtype, (blocks_for(grad_x.size),), (THREADS,),
                       (label, xp.ascontiguousarray(sample_weight).reshape(label.shape), scale,
                        np.int32(scale.size > 1), scale if count is None else count, np.int32(count is not None),
                        np.int64(ignore_index), grad_x, np.int64(grad_x.size), np.int64(n_class),
                        np.int64(label.shape[1])))
    return grad_x


# The most logits (N*C*S) that the one-block kernels take. One block runs on one of the GPU's
# streaming multiprocessors: for a classifier's batch (64 x 10 logits, 256 x 1000) that is a few
# microseconds, less than one more launch costs the host; a larger input (a segmentation map)
# spreads its rows over the whole GPU in the per-row kernels instead.
ONE_BLOCK_MAX_ELEMENTS = 1 << 18


def reduced_loss_cuda(kernel: str, x, target, weight, ignore_index, reduction: str, want_grad: bool):
    """The 'sum' or 'mean' of ``cross_entropy`` (``kernel='cross_entropy_reduced'``, ``x`` the
    logits) or ``nll_loss`` (``'nll_reduced'``, ``x`` the log-probabilities) against class
    indices, in ONE launch of one block, with, when ``want_grad``, the gradient of that loss
    with respect to ``x`` (as if the loss's own gradient were 1) from the same launch.

    ``x``: (N, C, ...) or (C,) with at most :data:`ONE_BLOCK_MAX_ELEMENTS` elements. Returns
    ``(loss, grad)``: a 0-d array and an array shaped like ``x`` (None without ``want_grad``)."""
    xp = get_array_module(x)
    z, label = _rows(xp, x, target)
    out = xp.empty((), dtype=z.dtype)
    grad = xp.empty(z.shape, dtype=z.dtype) if want_grad else None
    class_weight = out if weight is None else weight.astype(z.dtype, copy=False)  # stand-in: unread
    _module.launch(kernel, z.dtype, (1,), (reduce_threads_for(label.size),),
                   (z, label, class_weight, np.int32(weight is not None), np.int64(ignore_index),
                    np.int32(reduction == "mean"), np.int32(want_grad), out, out if grad is None else grad,
                    np.int64(label.size), np.int64(z.shape[1]), np.int64(z.shape[2])))
    return out, None if grad is None else grad.reshape(x.shape)
