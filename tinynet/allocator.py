"""Host memory: let the C allocator keep freed memory for reuse instead of handing it back to
the operating system after every op.

Why: a training step allocates and frees the same large temporaries (activations, im2col
matrices, gradients) over and over. glibc's malloc serves big blocks with ``mmap`` and returns
them with ``munmap``, and trims the top of its heap when enough memory is free there; every
new block then costs a page fault per 4 KiB page, and the kernel zeroes each page. Measured on
the 2-core development machine with ``benchmarks/replay.py --threads 1``: a training step of
LeNet (batch 256) took 29.4 ms with 8.0 ms of it in the kernel; with the settings below, 17.3 ms
and none (pytorch_example: 8.8 -> 5.5 ms). Caching allocators in other frameworks exist for the
same reason.

What is set (glibc ``mallopt``, Linux only): blocks up to 32 MiB (the largest glibc allows) come
from the heap, the heap is trimmed only when 1 GiB at its top is free, and it grows by 64 MiB
at a time. The cost: memory freed by tinynet stays with the process (it is reused, not
leaked). Set ``TINYNET_MALLOC_TUNING=0`` before importing tinynet to keep glibc's defaults.

The settings are the process's, so they apply to every library in it (PyTorch beside tinynet
keeps its freed blocks too). ``benchmarks/threads.py`` times PyTorch beside tinynet with and
without them; it found no slowdown (docs/benchmarks.md, "CPU thread settings"), so they stay on
by default; memory is what they cost a neighbour.
"""
from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["tune_host_allocator"]

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # from glibc's <malloc.h>


def tune_host_allocator() -> bool:
    """Apply the settings above to this process; True if they were applied (glibc on Linux,
    and not switched off by ``TINYNET_MALLOC_TUNING=0``)."""
    if os.environ.get("TINYNET_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt  # glibc; other C libraries have no mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(option, value) == 1 for option, value in (
        (_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20)))
