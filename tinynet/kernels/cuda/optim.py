"""Multi-tensor optimiser updates on the GPU: one launch updates every parameter of a group.

Kernels: SGD, Adam/AdamW, Adadelta, RMSprop (with momentum, centered) and Adagrad. Their
formulas, and the order of their operations, are those of the array code in
:mod:`tinynet.optim.sgd`, :mod:`~tinynet.optim.adam`, :mod:`~tinynet.optim.adadelta`
(``adadelta_step``), :mod:`~tinynet.optim.rmsprop` (``rmsprop_step``) and
:mod:`~tinynet.optim.adagrad` (``adagrad_step``): PyTorch's single-tensor order, so results agree
to rounding. That array code stays the readable version and the CPU path. Written as array
expressions, an Adam or a centered RMSprop step is about a dozen kernels per parameter; here it
is one kernel for all of them, and every element is read once and written once.

The same tables serve ``clip_grad_norm_`` (:mod:`tinynet.nn.utils`): the total norm of all
gradients in one launch (one block, a tree reduction), and their scaling in another.

How one launch reaches many arrays: a *pointer table*. Row t of the int64 device array
``table`` holds the addresses of parameter t's arrays (the parameter, its gradient, its state
buffers; 0 for an absent one), and ``offsets[t]`` is where parameter t starts when all the
parameters are laid end to end (``offsets[n] = total``). Thread i handles element i of that
virtual concatenation: a binary search in ``offsets`` finds its tensor t and its index
``k = i - offsets[t]`` inside it (a grid-stride loop covers any total). Elements never
interact, so there are no atomics.

The tables are built on the host and copied to the device once per set of arrays
(:func:`pointer_table`, cached by the addresses themselves): a step whose parameters, gradients
and state stay where they are (see ``Optimizer._multi_tensor_params``) copies nothing, as CUDA graph
capture requires. The numbers that change from step to step (the learning rate, Adam's bias
corrections, Adagrad's decayed learning rate) come as kernel arguments, or, in a step captured
into a CUDA graph (which freezes kernel arguments), from a small device array ``hyper`` written
before each launch, so that a scheduler's new learning rate and the next step count reach the
graph (:func:`tinynet.kernels.cuda.scalars.device_scalars`). The other hyper-parameters are
kernel arguments. The optimisers drive the kernels through ``Optimizer._multi_tensor_step``
(one launch per step count), SGD through its own (its first momentum step is special).
"""
from __future__ import annotations

import numpy as np

from ...backend import get_array_module
from .launch import REDUCE_THREADS, THREADS, CudaModule, blocks_for

__all__ = ["fusable", "pointer_table", "sgd_step_cuda", "adam_hyper", "adam_step_cuda", "adadelta_step_cuda",
           "rmsprop_step_cuda", "adagrad_step_cuda", "total_norm_cuda", "clip_scale_cuda", "NORM_MODES"]

_SOURCE = r"""
// The tensor that holds element i of the concatenation: the last t with offsets[t] <= i.
__device__ int tensor_of(const long long* offsets, int n_tensors, long long i) {
    int lo = 0, hi = n_tensors - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (offsets[mid] <= i) lo = mid; else hi = mid - 1;
    }
    return lo;
}

// SGD. Table row: parameter, gradient, momentum buffer (0 without momentum).
extern "C" __global__ void sgd_step(const long long* table, const long long* offsets, int n_tensors,
                                    const T* hyper, int hyper_from_memory, T lr_argument,
                                    T weight_decay, T momentum, T one_minus_dampening,
                                    int maximize, int nesterov, int first_step) {
    long long total = offsets[n_tensors];
    T lr = hyper_from_memory ? hyper[0] : lr_argument;   // from memory in a CUDA graph
    GRID_STRIDE_LOOP(i, total) {
        int t = tensor_of(offsets, n_tensors, i);
        long long k = i - offsets[t];
        T* param = (T*)table[3 * t];
        const T* grad = (const T*)table[3 * t + 1];
        T* buf = (T*)table[3 * t + 2];
        T g = maximize ? -grad[k] : grad[k];
        if (weight_decay != 0) g = g + weight_decay * param[k];
        if (momentum != 0) {
            T b = first_step ? g : buf[k] * momentum + one_minus_dampening * g;  // the first step: b = g
            buf[k] = b;
            g = nesterov ? g + momentum * b : b;
        }
        param[k] = param[k] - lr * g;
    }
}

// Adam and AdamW. Table row: parameter, gradient, exp_avg, exp_avg_sq, max_exp_avg_sq (0
// without amsgrad). All tensors of one launch are at the same step (one bias correction).
extern "C" __global__ void adam_step(const long long* table, const long long* offsets, int n_tensors,
                                     const T* hyper, int hyper_from_memory, T decay_argument,
                                     T step_size_argument, T bias_correction2_sqrt_argument,
                                     T weight_decay, T one_minus_beta1, T beta2,
                                     T one_minus_beta2, T eps, int maximize, int decoupled, int amsgrad) {
    long long total = offsets[n_tensors];
    // 1 - lr * weight_decay, lr / (1 - beta1^step), sqrt(1 - beta2^step) (see adam_hyper):
    // from memory in a CUDA graph, else the arguments
    T decay = hyper_from_memory ? hyper[0] : decay_argument;
    T step_size = hyper_from_memory ? hyper[1] : step_size_argument;
    T bias_correction2_sqrt = hyper_from_memory ? hyper[2] : bias_correction2_sqrt_argument;
    GRID_STRIDE_LOOP(i, total) {
        int t = tensor_of(offsets, n_tensors, i);
        long long k = i - offsets[t];
        T* param = (T*)table[5 * t];
        const T* grad = (const T*)table[5 * t + 1];
        T* exp_avg = (T*)table[5 * t + 2];
        T* exp_avg_sq = (T*)table[5 * t + 3];
        T* max_exp_avg_sq = (T*)table[5 * t + 4];
        T g = maximize ? -grad[k] : grad[k];
        T p = param[k];
        if (weight_decay != 0) {
            if (decoupled) p = p * decay;           // AdamW: shrink the weight itself
            else g = g + weight_decay * p;          // Adam: L2 penalty in the gradient
        }
        T m = exp_avg[k] + (g - exp_avg[k]) * one_minus_beta1;   // torch's lerp_ form
        T v = exp_avg_sq[k] * beta2 + (g * one_minus_beta2) * g;
        exp_avg[k] = m;
        exp_avg_sq[k] = v;
        if (amsgrad) {
            T old = max_exp_avg_sq[k];
            v = (v >= old || v != v) ? v : old;     // the maximum, NaN if either is (as np.maximum)
            max_exp_avg_sq[k] = v;
        }
        T denom = sqrt(v) / bias_correction2_sqrt + eps;
        param[k] = p - (m / denom) * step_size;
    }
}

// Adadelta. Table row: parameter, gradient, square_avg, acc_delta. The step reads the learning
// rate only (hyper[0] in a CUDA graph).
extern "C" __global__ void adadelta_step(const long long* table, const long long* offsets, int n_tensors,
                                         const T* hyper, int hyper_from_memory, T lr_argument,
                                         T weight_decay, T rho, T one_minus_rho, T eps, int maximize) {
    long long total = offsets[n_tensors];
    T lr = hyper_from_memory ? hyper[0] : lr_argument;
    GRID_STRIDE_LOOP(i, total) {
        int t = tensor_of(offsets, n_tensors, i);
        long long k = i - offsets[t];
        T* param = (T*)table[4 * t];
        const T* grad = (const T*)table[4 * t + 1];
        T* square_avg = (T*)table[4 * t + 2];
        T* acc_delta = (T*)table[4 * t + 3];
        T g = maximize ? -grad[k] : grad[k];
        T p = param[k];
        if (weight_decay != 0) g = g + weight_decay * p;
        T v = square_avg[k] * rho + (g * one_minus_rho) * g;
        square_avg[k] = v;
        T u = acc_delta[k];
        T delta = sqrt(u + eps) / sqrt(v + eps) * g;      // the update, in the units of the parameter
        acc_delta[k] = u * rho + (delta * one_minus_rho) * delta;
        param[k] = p - delta * lr;
    }
}

// RMSprop. Table row: parameter, gradient, square_avg, momentum_buffer (0 without momentum),
// grad_avg (0 unless centered). The step reads the learning rate only (hyper[0] in a CUDA graph).
// grad_avg moves by torch's lerp_ with weight 1 - alpha, in the form that is exact at its end:
// m + (g - m) * weight for weight < 0.5 (lerp_from_start), else g - (g - m) * (1 - weight).
extern "C" __global__ void rmsprop_step(const long long* table, const long long* offsets, int n_tensors,
                                        const T* hyper, int hyper_from_memory, T lr_argument,
                                        T weight_decay, T alpha, T one_minus_alpha, T one_minus_weight,
                                        T eps, T momentum, int maximize, int centered, int lerp_from_start) {
    long long total = offsets[n_tensors];
    T lr = hyper_from_memory ? hyper[0] : lr_argument;
    GRID_STRIDE_LOOP(i, total) {
        int t = tensor_of(offsets, n_tensors, i);
        long long k = i - offsets[t];
        T* param = (T*)table[5 * t];
        const T* grad = (const T*)table[5 * t + 1];
        T* square_avg = (T*)table[5 * t + 2];
        T* momentum_buffer = (T*)table[5 * t + 3];
        T* grad_avg = (T*)table[5 * t + 4];
        T g = maximize ? -grad[k] : grad[k];
        T p = param[k];
        if (weight_decay != 0) g = g + weight_decay * p;
        T v = square_avg[k] * alpha + (g * one_minus_alpha) * g;
        square_avg[k] = v;
        T d;
        if (centered) {
            T m = grad_avg[k];
            m = lerp_from_start ? m + (g - m) * one_minus_alpha : g - (g - m) * one_minus_weight;
            grad_avg[k] = m;
            d = sqrt(v - m * m) + eps;                   // the gradient's estimated standard deviation
        } else {
            d = sqrt(v) + eps;
        }
        if (momentum > 0) {
            T b = momentum_buffer[k] * momentum + g / d;
            momentum_buffer[k] = b;
            param[k] = p - b * lr;
        } else {
            param[k] = p - (g * lr) / d;                 // the product first, as torch's addcdiv_
        }
    }
}

// Adagrad. Table row: parameter, gradient, sum. All tensors of one launch are at the same step:
// one decayed learning rate clr = lr / (1 + (step - 1) * lr_decay) (hyper[0] in a CUDA graph).
extern "C" __global__ void adagrad_step(const long long* table, const long long* offsets, int n_tensors,
                                        const T* hyper, int hyper_from_memory, T clr_argument,
                                        T weight_decay, T eps, int maximize) {
    long long total = offsets[n_tensors];
    T clr = hyper_from_memory ? hyper[0] : clr_argument;
    GRID_STRIDE_LOOP(i, total) {
        int t = tensor_of(offsets, n_tensors, i);
        long long k = i - offsets[t];
        T* param = (T*)table[3 * t];
        const T* grad = (const T*)table[3 * t + 1];
        T* state_sum = (T*)table[3 * t + 2];
        T g = maximize ? -grad[k] : grad[k];
        T p = param[k];
        if (weight_decay != 0) g = g + weight_decay * p;
        T s = state_sum[k] + g * g;
        state_sum[k] = s;
        param[k] = p - (g * clr) / (sqrt(s) + eps);      // the product first, as torch's addcdiv_
    }
}

// The total p-norm of all tensors (table rows: one gradient each), in one block: mode 2 (p = 2),
// 1, 3 (inf: max |g|), 4 (any p > 0). out[0] = the norm.
extern "C" __global__ void total_norm(const long long* table, const long long* offsets, int n_tensors, int mode,
                                      T p, T* out) {
    __shared__ T shared[REDUCE_THREADS];
    long long total = offsets[n_tensors];
    int t = threadIdx.x;
    T partial = 0;
    for (long long i = t; i < total; i += blockDim.x) {
        int k = tensor_of(offsets, n_tensors, i);
        T g = ((const T*)table[k])[i - offsets[k]];
        T a = g < 0 ? -g : g;
        if (mode == 2) partial += g * g;
        else if (mode == 1) partial += a;
        else if (mode == 3) partial = (a > partial || a != a) ? a : partial;   // NaN wins, as max does
        else partial += pow(a, p);
    }
    shared[t] = partial;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) {
            T other = shared[t + half];
            if (mode == 3) shared[t] = (other > shared[t] || other != other) ? other : shared[t];
            else shared[t] += other;
        }
        __syncthreads();
    }
    if (t == 0) {
        T sum = shared[0];
        out[0] = mode == 2 ? sqrt(sum) : mode == 4 ? pow(sum, (T)1 / p) : sum;
    }
}

// Scale every gradient by min(1, max_norm / (total_norm[0] + 1e-6)), computed here on the device.
extern "C" __global__ void clip_scale(const long long* table, const long long* offsets, int n_tensors,
                                      const T* total_norm, T max_norm) {
    T coef = max_norm / (total_norm[0] + (T)1e-6);
    coef = coef > (T)1 ? (T)1 : coef;      // (a NaN norm gives NaN, as np.minimum does)
    long long total = offsets[n_tensors];
    GRID_STRIDE_LOOP(i, total) {
        int k = tensor_of(offsets, n_tensors, i);
        T* g = (T*)table[k];
        g[i - offsets[k]] *= coef;
    }
}
"""

_module = CudaModule("optim", f"#define REDUCE_THREADS {REDUCE_THREADS}\n" + _SOURCE)
_tables: dict = {}   # (addresses, sizes) -> (table, offsets) on the device
_MAX_TABLES = 64     # a few per optimiser; more means arrays keep moving: start afresh


def fusable(*arrays) -> bool:
    """Whether the kernels can update these arrays in place: all C-contiguous, one dtype."""
    return all(a.flags.c_contiguous and a.dtype == arrays[0].dtype for a in arrays)


def _address(array) -> int:
    return 0 if array is None else array.data.ptr


def pointer_table(rows):
    """The device ``(table, offsets)`` for ``rows``: one tuple of arrays (or None) per tensor,
    the first of each row setting its size. Cached by the addresses and sizes, so the same
    arrays give the same device table without a copy; new arrays give a new one."""
    key = tuple((tuple(_address(a) for a in row), row[0].size) for row in rows)
    cached = _tables.get(key)
    if cached is None:
        xp = get_array_module(rows[0][0])
        sizes = np.array([row[0].size for row in rows], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        table = np.array([[_address(a) for a in row] for row in rows], dtype=np.int64).reshape(-1)
        if len(_tables) >= _MAX_TABLES:
            _tables.clear()
        cached = _tables[key] = (xp.asarray(table), xp.asarray(offsets))  # the one host-to-device copy
    return cached


def _launch(kernel: str, rows, *scalars) -> None:
    table, offsets = pointer_table(rows)
    total = sum(row[0].size for row in rows)
    _module.launch(kernel, rows[0][0].dtype, (blocks_for(total),), (THREADS,),
                   (table, offsets, np.int32(len(rows))) + scalars)


def sgd_step_cuda(rows, *, hyper, momentum, dampening, weight_decay, nesterov, maximize, first_step):
    """One SGD step (see :class:`tinynet.optim.SGD`) of every tensor in ``rows``, in one launch.

    ``rows``: one ``(param, grad, momentum_buffer or None)`` per parameter, C-contiguous arrays
    of one dtype, updated in place. On the ``first_step`` the buffers are set to the gradient.
    ``hyper``: ``device_scalars`` of the learning rate."""
    dtype = rows[0][0].dtype.type
    array, numbers, from_memory = hyper
    _launch("sgd_step", rows, array, np.int32(from_memory), dtype(numbers[0]), dtype(weight_decay), dtype(momentum),
            dtype(1 - dampening), np.int32(maximize), np.int32(nesterov), np.int32(first_step))


def adam_hyper(lr, beta1, beta2, weight_decay, step) -> tuple:
    """The numbers of an Adam step that change with the learning rate and the step number
    (1 for the first): ``(1 - lr * weight_decay, lr / (1 - beta1^step), sqrt(1 - beta2^step))``,
    the ``hyper`` array of :func:`adam_step_cuda`."""
    return 1 - lr * weight_decay, lr / (1 - beta1 ** step), (1 - beta2 ** step) ** 0.5


def adam_step_cuda(rows, *, hyper, beta1, beta2, eps, weight_decay, maximize, decoupled_weight_decay, amsgrad):
    """One Adam/AdamW step (see :class:`tinynet.optim.Adam`) of every tensor in ``rows``, in one
    launch, all at one step number.

    ``rows``: one ``(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq or None)`` per parameter,
    C-contiguous arrays of one dtype, updated in place. ``hyper``: ``device_scalars`` of
    :func:`adam_hyper` of the learning rate and step number."""
    dtype = rows[0][0].dtype.type
    array, numbers, from_memory = hyper
    _launch("adam_step", rows, array, np.int32(from_memory), dtype(numbers[0]), dtype(numbers[1]), dtype(numbers[2]),
            dtype(weight_decay), dtype(1 - beta1), dtype(beta2), dtype(1 - beta2),
            dtype(eps), np.int32(maximize), np.int32(decoupled_weight_decay), np.int32(amsgrad))


def adadelta_step_cuda(rows, *, hyper, rho, eps, weight_decay, maximize):
    """One Adadelta step (see :class:`tinynet.optim.Adadelta`) of every tensor in ``rows``, in
    one launch.

    ``rows``: one ``(param, grad, square_avg, acc_delta)`` per parameter, C-contiguous arrays of
    one dtype, updated in place. ``hyper``: ``device_scalars`` of the learning rate."""
    dtype = rows[0][0].dtype.type
    array, numbers, from_memory = hyper
    _launch("adadelta_step", rows, array, np.int32(from_memory), dtype(numbers[0]), dtype(weight_decay),
            dtype(rho), dtype(1 - rho), dtype(eps), np.int32(maximize))


def rmsprop_step_cuda(rows, *, hyper, alpha, eps, weight_decay, momentum, centered, maximize):
    """One RMSprop step (see :class:`tinynet.optim.RMSprop`) of every tensor in ``rows``, in one
    launch.

    ``rows``: one ``(param, grad, square_avg, momentum_buffer or None, grad_avg or None)`` per
    parameter (the buffer with ``momentum > 0``, grad_avg when ``centered``), C-contiguous arrays
    of one dtype, updated in place. ``hyper``: ``device_scalars`` of the learning rate."""
    dtype = rows[0][0].dtype.type
    array, numbers, from_memory = hyper
    weight = 1 - alpha   # of grad_avg's lerp_, computed as the array reference does
    _launch("rmsprop_step", rows, array, np.int32(from_memory), dtype(numbers[0]), dtype(weight_decay),
            dtype(alpha), dtype(weight), dtype(1 - weight), dtype(eps), dtype(momentum), np.int32(maximize),
            np.int32(centered), np.int32(weight < 0.5))


def adagrad_step_cuda(rows, *, hyper, eps, weight_decay, maximize):
    """One Adagrad step (see :class:`tinynet.optim.Adagrad`) of every tensor in ``rows``, in one
    launch, all at one step number.

    ``rows``: one ``(param, grad, sum)`` per parameter, C-contiguous arrays of one dtype, updated
    in place. ``hyper``: ``device_scalars`` of the step's decayed learning rate
    (:func:`tinynet.optim.adagrad.adagrad_lr`)."""
    dtype = rows[0][0].dtype.type
    array, numbers, from_memory = hyper
    _launch("adagrad_step", rows, array, np.int32(from_memory), dtype(numbers[0]), dtype(weight_decay),
            dtype(eps), np.int32(maximize))


NORM_MODES = {2.0: 2, 1.0: 1, float("inf"): 3}   # others with p > 0: mode 4


def total_norm_cuda(grads, norm_type: float):
    """The ``norm_type``-norm of all ``grads`` together (C-contiguous arrays of one dtype, p > 0
    or inf) in one launch, as a 0-d device array."""
    xp = get_array_module(grads[0])
    out = xp.empty((), dtype=grads[0].dtype)
    table, offsets = pointer_table([(g,) for g in grads])
    dtype = grads[0].dtype.type
    _module.launch("total_norm", grads[0].dtype, (1,), (REDUCE_THREADS,),
                   (table, offsets, np.int32(len(grads)), np.int32(NORM_MODES.get(float(norm_type), 4)),
                    dtype(norm_type if norm_type != float("inf") else 0), out))
    return out


def clip_scale_cuda(grads, total_norm, max_norm: float) -> None:
    """Scale all ``grads`` in place by ``min(1, max_norm / (total_norm + 1e-6))``, one launch."""
    table, offsets = pointer_table([(g,) for g in grads])
    total = sum(g.size for g in grads)
    _module.launch("clip_scale", grads[0].dtype, (blocks_for(total),), (THREADS,),
                   (table, offsets, np.int32(len(grads)), total_norm, grads[0].dtype.type(max_norm)))
