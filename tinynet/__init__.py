"""tinynet: a small, readable deep-learning framework on NumPy (CPU) and CuPy (GPU).

The API mirrors PyTorch's: ``import tinynet as torch`` should feel familiar.
"""
from .blas_threads import quiet_idle_blas_threads
from .allocator import tune_host_allocator

BLAS_THREADS_QUIETED = quiet_idle_blas_threads()  # before NumPy loads OpenBLAS; see blas_threads.py
HOST_ALLOCATOR_TUNED = tune_host_allocator()  # before any large array is made; see allocator.py

from . import dtypes  # noqa: E402
from .dtypes import (float16, float32, float64, uint8, int8, int16, int32, int64, bool_,
                     get_default_dtype, set_default_dtype, promote_types)
from .backend import Device, device
from .tensor import Tensor
from .autograd import Function, no_grad, enable_grad, set_grad_enabled, is_grad_enabled
from . import autograd
from .random import Generator, manual_seed, seed, initial_seed, default_generator, get_rng_state, set_rng_state
from .creation import *  # noqa: F401,F403
from .functional import *  # noqa: F401,F403
from . import functional
from .gradcheck import gradcheck
from . import cuda
from .serialization import save, load
from .compile import compile_step, CompiledStep
from . import nn, optim, data, utils, backends, onnx, viz
from . import distributed  # as torch.distributed; MPI and NCCL are imported by init_process_group only

# PyTorch's aliases for dtypes (defined last: they shadow builtins inside this module only).
half, float, double = float16, float32, float64
short, int, long = int16, int32, int64
bool = bool_

__version__ = "0.1.0"
