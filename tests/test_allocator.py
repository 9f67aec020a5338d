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


def test_openblas_idle_threads_are_told_to_sleep():
    """blas_threads.py: importing tinynet sets OPENBLAS_THREAD_TIMEOUT, and NumPy's OpenBLAS runs
    with it, whether NumPy was loaded before tinynet (then OpenBLAS is made to read it again)
    or after; the user's own value, or TINYNET_BLAS_TUNING=0, leaves OpenBLAS's setting alone.
    Each case in a fresh process; the timeout OpenBLAS uses is read back where its build exports
    ``openblas_thread_timeout`` (0: its default)."""
    cases = [("import tinynet", {}, "4 4"),
             ("import numpy, tinynet", {}, "4 4"),
             ("import tinynet", {"OPENBLAS_THREAD_TIMEOUT": "10"}, "10 10"),
             ("import tinynet", {"TINYNET_BLAS_TUNING": "0"}, "unset 0")]
    for imports, extra, expected in cases:
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "TINYNET_BLAS_TUNING")}
        env.update(extra)
        code = (f"{imports}; import os, numpy\n"
                "from tinynet.blas_threads import _loaded_openblas\n"
                "used = [str(lib.openblas_thread_timeout()) for lib in _loaded_openblas()\n"
                "        if hasattr(lib, 'openblas_thread_timeout')]\n"
                "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset'), used[0] if used else 'n/a')")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        setting, used = done.stdout.split()[-2:]
        assert setting == expected.split()[0], (imports, extra)
        if used != "n/a":  # an OpenBLAS that tells: it uses what was set
            assert used == expected.split()[1], (imports, extra, used)
