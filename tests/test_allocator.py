"""tinynet tunes glibc's malloc at import (tinynet/allocator.py) unless TINYNET_MALLOC_TUNING=0."""
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
