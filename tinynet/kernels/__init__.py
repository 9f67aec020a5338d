"""Raw array kernels, without autograd: the inner loops that ops in ``tinynet.functional`` call.

Each kernel has up to three implementations behind one signature:

* a readable reference written against the array module ``xp`` (NumPy, CuPy or the simulated
  device), which is what a learner should read first and what runs when nothing faster fits;
* a numba version (``@njit(cache=True)``, parallel on numba's threads when the work is large
  enough: ``threads``) used for NumPy arrays on the CPU;
* a CUDA C version (``tinynet/kernels/cuda/``) launched through CuPy for CuPy arrays on a GPU,
  and run by a CPU emulator (the same C source, compiled by the system C++ compiler) for the
  simulated device's arrays.

``dispatch`` picks one per array; the tests check that all agree (the CUDA kernels in the
emulator, and compiled by NVRTC).

Modules:
  ``dispatch`` which implementation runs for an array; ``reference_kernels()`` forces the references.
  ``threads``  the numba CPU kernels' threads: numba's threading layer, and the work size (grain)
               below which a kernel runs on the calling thread.
  ``im2col``   im2col / col2im: unfold image patches into the columns of one matrix so a
               convolution is one matrix product, and fold them back (its exact transpose).
  ``shallow_conv`` a first convolution layer (few values per window) on the CPU, image by image:
               each image unfolded into a small cols that stays in cache, no cols for the batch.
  ``direct_conv`` a float32 convolution with few filters on the CPU, forward and dW without
               cols: vector tiles (16 or 32 filters wide, written as LLVM IR) read the windows
               in x; dx of a stride-1 layer as the same tiles' forward pass over dY.
  ``pool``     max-pool forward (with the argmax of each window) and backward.
  ``philox``   the Philox-4x32-10 counter-based generator and dropout masks (NumPy reference of
               the GPU dropout kernel).
  ``special``  ``erf`` (numba ufunc on the CPU, CuPy's on the GPU), for the exact GELU.
  ``cuda``     the GPU kernels: CUDA C sources with their launchers (im2col/col2im, max pool,
               dropout, batch norm, losses, activations, the convolution as implicit GEMMs, the multi-tensor
               optimisers; see its ``__init__``), ``launch`` (CuPy) and ``emulate`` (the CPU
               emulator).
"""
