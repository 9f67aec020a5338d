"""Raw array kernels, without autograd: the inner loops that ops in ``tinynet.functional`` call.

Each kernel has two implementations behind one signature:

* a readable reference written against the array module ``xp`` (NumPy or CuPy), which is what
  runs on the GPU and what a learner should read first;
* a numba version (``@njit(parallel=True, cache=True)``) used for NumPy arrays on the CPU.

The public function picks one; the tests check that both agree.

Modules:
  ``im2col``  im2col / col2im: unfold image patches into the columns of one matrix so a
              convolution is one matrix product, and fold them back (its exact transpose).
  ``pool``    max-pool forward (with the argmax of each window) and backward.
  ``special`` ``erf`` (numba ufunc on the CPU, CuPy's on the GPU), for the exact GELU.
"""
