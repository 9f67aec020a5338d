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

__all__ = ["read_idx", "read_bytes", "parse_idx", "UNSIGNED_BYTE"]

UNSIGNED_BYTE = 0x08  # the type code of image and label files (MNIST, Fashion-MNIST, KMNIST)
_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
           0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_TYPE_NAMES = {0x08: "unsigned bytes", 0x09: "signed bytes", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32",
               0x0E: "float64"}
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


def parse_idx(raw: bytes, source: str = "<bytes>", *, dtype_code: int | None = None, ndim: int | None = None,
              what: str = "an IDX file", op: str = "read_idx") -> np.ndarray:
    """The array stored in the IDX bytes ``raw`` (native byte order, writable).

    ``source`` names the file in error messages. ``dtype_code`` and ``ndim``, when given, are
    what the caller needs (e.g. ``UNSIGNED_BYTE`` and 3 for images): a file of another type or
    rank is refused before its data is read, since a foreign file often parses cleanly (signed
    bytes load as -128..127). ``what`` says what the file should hold and ``op`` who asks, for
    the messages ("MNIST: t10k-images-idx3-ubyte.gz: expected images of unsigned bytes ...").

    Raises:
        ValueError: bad magic number, truncated file, trailing bytes, or another type code or
            rank than asked for; the message names the file, what was expected and what was found.
    """
    if len(raw) < 4:
        raise ValueError(f"{op}: {source}: truncated header ({len(raw)} bytes, an IDX header has at least 4)")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{op}: {source}: bad magic number {raw[:4].hex()}: an IDX file starts with two "
                         "zero bytes (is this really an IDX file?)")
    code, rank = raw[2], raw[3]
    if code not in _DTYPES:
        raise ValueError(f"{op}: {source}: unknown dtype code 0x{code:02x} in the magic number "
                         f"(known: {', '.join(f'0x{c:02x}' for c in _DTYPES)})")
    if dtype_code is not None and code != dtype_code:
        raise ValueError(f"{op}: {source}: expected {what} of {_TYPE_NAMES[dtype_code]} (IDX type code "
                         f"0x{dtype_code:02x}), found type code 0x{code:02x} ({_TYPE_NAMES[code]})")
    header = 4 + 4 * rank
    if len(raw) < header:
        raise ValueError(f"{op}: {source}: truncated header: {rank} dimensions need {header} bytes, "
                         f"the file has {len(raw)}")
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=rank, offset=4))
    if ndim is not None and rank != ndim:
        raise ValueError(f"{op}: {source}: expected {what} with {ndim} dimension{'s' * (ndim != 1)}, found "
                         f"{rank} (shape {shape})")
    dtype = _DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header
    if found < expected:
        raise ValueError(f"{op}: {source}: truncated: shape {shape} of {dtype.name} needs {expected} bytes "
                         f"of data, the file has {found}")
    if found > expected:
        raise ValueError(f"{op}: {source}: {found - expected} unexpected bytes after the data of shape "
                         f"{shape} (trailing garbage, or wrong sizes in the header)")
    data = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def read_idx(path, *, dtype_code: int | None = None, ndim: int | None = None) -> np.ndarray:
    """Read the IDX file at ``path`` (gzip-compressed or not) into a NumPy array; with
    ``dtype_code`` / ``ndim``, refuse a file of another type code or rank (see :func:`parse_idx`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: bad magic number, truncated file, trailing bytes, corrupt gzip data, or
            another type code or rank than asked for; the message names the file and what was wrong.
    """
    return parse_idx(read_bytes(path), source=str(path), dtype_code=dtype_code, ndim=ndim)
