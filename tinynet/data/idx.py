"""Reading IDX files, the format MNIST is distributed in.

An IDX file is a header followed by the raw array, big-endian::

    bytes 0-1   zero
    byte  2     dtype code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64)
    byte  3     number of dimensions d
    4*d bytes   the size of each dimension, uint32
    the rest    the values, row-major

Files are often gzip-compressed; :func:`read_idx` recognises gzip by its magic bytes, whatever
the file is called.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

__all__ = ["read_idx", "read_bytes", "parse_idx"]

_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
           0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path) -> bytes:
    """The content of ``path``, decompressed when it is gzip. A corrupt or truncated gzip
    stream raises ValueError naming the file."""
    raw = Path(path).read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"read_idx: {path}: corrupt or truncated gzip data ({exc})") from None


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """The array stored in the IDX bytes ``raw`` (native byte order, writable). ``source`` names
    the file in error messages: a bad magic number, a truncated file or trailing bytes raise
    ValueError."""
    if len(raw) < 4:
        raise ValueError(f"read_idx: {source}: truncated header ({len(raw)} bytes, an IDX header has at least 4)")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"read_idx: {source}: bad magic number {raw[:4].hex()}: an IDX file starts with two "
                         "zero bytes (is this really an IDX file?)")
    code, ndim = raw[2], raw[3]
    if code not in _DTYPES:
        raise ValueError(f"read_idx: {source}: unknown dtype code 0x{code:02x} in the magic number "
                         f"(known: {', '.join(f'0x{c:02x}' for c in _DTYPES)})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"read_idx: {source}: truncated header: {ndim} dimensions need {header} bytes, "
                         f"the file has {len(raw)}")
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header
    if found < expected:
        raise ValueError(f"read_idx: {source}: truncated: shape {shape} of {dtype.name} needs {expected} bytes "
                         f"of data, the file has {found}")
    if found > expected:
        raise ValueError(f"read_idx: {source}: {found - expected} unexpected bytes after the data of shape "
                         f"{shape} (trailing garbage, or wrong sizes in the header)")
    data = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def read_idx(path) -> np.ndarray:
    """Read the IDX file at ``path`` (gzip-compressed or not) into a NumPy array.

    Raises:
        FileNotFoundError: no such file.
        ValueError: bad magic number, truncated file, trailing bytes or corrupt gzip data; the
            message names the file and what was wrong.
    """
    return parse_idx(read_bytes(path), source=str(path))
