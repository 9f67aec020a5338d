"""Downloading a data file safely: try mirrors in turn, verify each download, never leave a
partial or corrupt file behind.

Each attempt writes into a temporary file next to the destination and only ``os.replace``s it
into place once its checksum is right. ``os.replace`` is atomic on one file system, so another
process (or a crash) sees either no file or the whole, verified one.

The checksum is the sha256 of the *decompressed* bytes: mirrors may serve a file gzip-compressed
or not, and compressed differently, but the data inside is the same. Where only the MD5 of the
file as served is published (torchvision's checksums for Fashion-MNIST and KMNIST, which have a
single mirror each), ``md5=`` checks that instead.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from .idx import read_bytes

__all__ = ["download_file", "decompressed_sha256", "file_md5", "DownloadError"]


class DownloadError(RuntimeError):
    """No mirror gave a verified copy of the file."""


def decompressed_sha256(path) -> str:
    """The sha256 (hex) of the file's bytes after gzip decompression (of the bytes as they are
    when the file is not gzip). A corrupt gzip stream raises ValueError."""
    return hashlib.sha256(read_bytes(path)).hexdigest()


def download_file(url_list, dest_path, sha256_of_decompressed: str | None = None, timeout: float = 30.0, *,
                  md5: str | None = None) -> Path:
    """Download ``dest_path`` from the first of ``url_list`` that serves a verified copy.

    Args:
        url_list: full URLs of the same file on different mirrors, tried in order.
        dest_path: where the file goes; its directory is made if needed.
        sha256_of_decompressed: expected sha256 (hex) of the file's decompressed bytes.
        timeout: seconds to wait for each connection and read.
        md5: expected MD5 (hex) of the file exactly as served, for files whose publisher gives
            only that. One of the two checksums is required.

    Returns:
        ``dest_path`` as a Path.

    Raises:
        DownloadError (a RuntimeError) listing every mirror and why it failed. Nothing is left
        at ``dest_path`` or next to it when every mirror fails.
    """
    if (sha256_of_decompressed is None) == (md5 is None):
        raise ValueError("download_file: pass exactly one checksum, sha256_of_decompressed or md5")
    check = ("sha256 of the decompressed data", decompressed_sha256, sha256_of_decompressed.lower()) \
        if md5 is None else ("md5 of the file", file_md5, md5.lower())
    if isinstance(url_list, str):
        url_list = [url_list]
    dest = Path(dest_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in url_list:
        try:
            _fetch_verified(url, dest, check, timeout)
            return dest
        except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError is an OSError
            failures.append(f"  {url}: {exc}")
    raise DownloadError(f"download_file: could not download {dest.name} from any mirror:\n" + "\n".join(failures))


def file_md5(path) -> str:
    """The MD5 (hex) of the file's bytes as they are (compressed or not)."""
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _fetch_verified(url: str, dest: Path, check: tuple, timeout: float) -> None:
    """Download ``url`` into a temporary file beside ``dest``, check it with ``check`` (what,
    how to compute it, the expected hex digest), then move it into place. On any failure the
    temporary file is removed and the error propagates."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as tmp, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, tmp)
            # A connection closed early just ends the stream; only the length tells.
            expected, received = response.headers.get("Content-Length"), tmp.tell()
        if expected is not None and int(expected) != received:
            raise ValueError(f"truncated: received {received} bytes, the server announced {expected}")
        what, digest, expected = check
        found = digest(tmp_name)
        if found != expected:
            raise ValueError(f"{what} is {found}, expected {expected} (corrupt or wrong file)")
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
