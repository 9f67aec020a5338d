"""tinynet tunes glibc's malloc at import (tinynet/allocator.py) unless TINYNET_MALLOC_TUNING=0, and
OpenBLAS's idle threads (tinynet/blas_threads.py) unless TINYNET_BLAS_TUNING=0."""
import ctypes
import os
import subprocess
import sys

import pytest

import tinynet


def _has_glibc_mallopt() -> bool:
    try:
        return sys.platform.startswith("linux") and hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
    except OSError:
        return False


def test_the_allocator_is_tuned_where_glibc_allows_it():
    expected = _has_glibc_mallopt() and os.environ.get("TINYNET_MALLOC_TUNING", "1") != "0"
    assert tinynet.HOST_ALLOCATOR_TUNED is expected


@pytest.mark.skipif(not _has_glibc_mallopt(), reason="needs glibc's mallopt")
def test_the_tuning_can_be_switched_off():
    code = "import tinynet; print(tinynet.HOST_ALLOCATOR_TUNED)"
    for value, printed in (("0", "False"), ("1", "True")):
        env = dict(os.environ, TINYNET_MALLOC_TUNING=value)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert done.stdout.strip() == printed, done.stderr


def test_openblas_idle_threads_are_told_to_sleep_only_when_tinynet_loads_first():
    """blas_threads.py: importing tinynet before NumPy sets OPENBLAS_THREAD_TIMEOUT (OpenBLAS reads
    it when NumPy loads it); after NumPy, or with the user's own value, or with
    TINYNET_BLAS_TUNING=0, nothing is set. Each case in a fresh process."""
    cases = [("import tinynet", {}, "4"),
             ("import numpy, tinynet", {}, "unset"),
             ("import tinynet", {"OPENBLAS_THREAD_TIMEOUT": "10"}, "10"),
             ("import tinynet", {"TINYNET_BLAS_TUNING": "0"}, "unset")]
    for imports, extra, expected in cases:
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "TINYNET_BLAS_TUNING")}
        env.update(extra)
        code = f"{imports}; import os; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset'))"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split()[-1] == expected, (imports, extra)
