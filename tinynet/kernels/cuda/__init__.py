"""``numba.cuda`` kernels: the GPU versions of the kernels, launched on CuPy arrays.

CuPy already runs every array expression on the GPU, but a chain of array calls launches one
small kernel per call and reads and writes the whole array each time. The kernels here fuse
the chains that matter into one or two launches each:

  ``im2col``   im2col, and col2im as a gather (one thread per input pixel, no atomics).
  ``pool``     max-pool forward with argmax; backward as a gather (one thread per input pixel).
  ``norm``     batch-norm training forward and backward: one block per channel.
  ``loss``     softmax cross-entropy forward (one thread per row) and backward (one per logit).
  ``dropout``  dropout masks from a Philox-4x32-10 counter, seed and offset in device memory.
  ``optim``    fused SGD and Adam/AdamW updates, in place, one thread per element.
  ``launch``   how every kernel is launched: grid/block sizes, CuPy's stream, array views.

How to read a kernel. A kernel body is the work of ONE thread; ``cuda.grid(1)`` is that
thread's number and ``cuda.gridsize(1)`` the number of threads in the launch. Most kernels use
a *grid-stride loop*, ``for index in range(cuda.grid(1), total, cuda.gridsize(1))``, so one
launch of any size covers any number of elements. The rule followed everywhere: every output
element is written by exactly one thread, which *gathers* what it needs (no two threads add
into one place, so no atomics, and results do not depend on thread timing).

Nothing here is imported on the CPU path: ``tinynet.kernels.dispatch.uses_cuda`` decides, and
the callers import these modules inside their GPU branch. The kernels are tested under numba's
CUDA simulator (``tests/test_cuda_kernels.py``), where they run on NumPy arrays.

Every launcher is asynchronous: it queues work on CuPy's current stream and never reads a
device value on the host, so a training step never waits for the GPU.
"""
