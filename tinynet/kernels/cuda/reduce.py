"""The reductions that the CUDA C kernels share: a tree sum in shared memory, and a row's
log-sum-exp.

``BLOCK_SUM`` is C source put in front of a kernel module that needs it (batch norm, the
convolution's bias gradient). Each of the block's T threads (T a power of two, ``REDUCE_THREADS``)
stores its partial sum in shared memory; T/2 threads add pairs, then T/4, ... : log2(T) steps,
with ``__syncthreads()`` between them so that every thread sees the others' writes; every
thread gets the total back.

``ROW_LOG_SUM_EXP`` (log-softmax, cross-entropy) reduces one row of logits in one thread: its
largest value ``m``, then ``log(sum(exp(z - m)))``, so that ``log_softmax(z) = (z - m) - that``.
"""
from __future__ import annotations

from .launch import REDUCE_THREADS

__all__ = ["BLOCK_SUM", "ROW_LOG_SUM_EXP"]

BLOCK_SUM = f"#define REDUCE_THREADS {REDUCE_THREADS}\n" + r"""
// The sum of `value` over the threads of the block, returned to every thread. `shared` holds
// one T per thread (a __shared__ T[REDUCE_THREADS] of the calling kernel).
__device__ T block_sum(T* shared, T value) {
    int t = threadIdx.x;
    shared[t] = value;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) shared[t] += shared[t + half];
        __syncthreads();
    }
    T total = shared[0];
    __syncthreads();  // everyone has read shared[0] before the next reduction overwrites it
    return total;
}
"""

ROW_LOG_SUM_EXP = r"""
// A row of n logits z[c * stride]: writes its largest, m (a NaN logit is skipped here, but makes
// the sum NaN), and returns log(sum exp(z - m)). Subtracting m keeps exp from overflowing.
__device__ T row_log_sum_exp(const T* z, long long n, long long stride, T* m_out) {
    T m = z[0];
    for (long long c = 1; c < n; c++)
        if (z[c * stride] > m) m = z[c * stride];
    T total = 0;
    for (long long c = 0; c < n; c++) total += exp(z[c * stride] - m);
    *m_out = m;
    return log(total);
}
"""
