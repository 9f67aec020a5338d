"""The GPU kernels: CUDA C sources, launched through CuPy on a GPU and emulated on the CPU in tests.

CuPy already runs every array expression on the GPU, but a chain of array calls launches one
small kernel per call and reads and writes the whole array each time. The kernels here fuse
the chains that matter into one or two launches each:

  ``im2col``   im2col, and col2im as a gather (one thread per input pixel, no atomics).
  ``pool``     max-pool forward with argmax; backward as a gather (one thread per input pixel).
  ``dropout``  dropout from a Philox-4x32-10 counter, seed and offset in device memory: the mask
               (already scaled) drawn, applied and the offset advanced in one launch.
  ``launch``   ``CudaModule``: a source compiled once per dtype, launched through CuPy (NVRTC), or
               through the emulator; argument checks against the C parameter lists.
  ``emulate``  the CPU emulator: the same source compiled by the system C++ compiler and run block
               by block, thread by thread (fibers for kernels that wait at ``__syncthreads``).
  ``norm``     batch-norm training forward and backward: one block per channel.
  ``loss``     cross-entropy and NLL: one thread per row forward, one per logit backward; their
               sum or mean in one block.
  ``activation`` sigmoid, tanh, ReLU, PReLU and log-softmax, one kernel each way.
  ``conv``     the convolution as implicit GEMMs (the products read im2col's entries from x, no
               columns made): forward with its bias, dx, and dW with db, one kernel each.
  ``optim``    multi-tensor SGD, Adam/AdamW, Adadelta, RMSprop, Adagrad and clip_grad_norm_:
               every parameter of a group in one launch, through a cached device table of their
               addresses.
  ``reduce``   the shared block reduction (a tree sum in shared memory).

How to read a kernel. A kernel body is the work of ONE thread. ``GRID_STRIDE_LOOP(i, n)`` (from
``launch.COMMON_PRELUDE``) gives that thread the elements ``i = its number, + threads in the
grid, ...`` below ``n``, so one launch of any size covers any number of elements. The rule
followed everywhere: every output element is written by exactly one thread, which *gathers*
what it needs (no two threads add into one place, so no atomics, and results do not depend on
thread timing). One exception, for a count and not for numbers: the blocks that share dW's
split sum each add 1 to a counter, so that the last knows to add up the shares, in a fixed
order. Every scalar argument is a NumPy scalar of the C parameter's exact width.

Nothing here is imported on the CPU path: ``tinynet.kernels.dispatch.uses_cuda`` decides, and
the callers import these modules inside their GPU branch. Every launcher is asynchronous on a
GPU: it queues work on CuPy's current stream and never reads a device value on the host, so a
training step never waits for the GPU.
"""
