"""download_file and MNIST(download=True) against a local HTTP server on 127.0.0.1 (never the
real network): verified files land, corrupt and truncated ones are rejected leaving nothing
behind, and a failing mirror falls through to the next."""
import gzip
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from tinynet.data import MNIST, DownloadError, download_file, read_idx

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"

PAYLOAD = bytes([0, 0, 0x08, 1, 0, 0, 0, 5]) + bytes([7, 2, 1, 0, 4])  # an IDX file: 5 uint8 labels
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the server's directory; ``/short/<name>`` announces the full length of <name> but
    sends only half of it and closes, as a dropped connection does."""

    def do_GET(self):
        if self.path.startswith("/short/"):
            body = (Path(self.directory) / self.path[len("/short/"):]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture
def server(tmp_path):
    """A local HTTP server serving ``tmp_path / "www"``; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = lambda *a, **k: _Handler(*a, directory=str(www), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs=dict(poll_interval=0.02), daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _only(folder: Path, *names):
    assert sorted(p.name for p in folder.iterdir()) == sorted(names), "leftover or missing files"


@pytest.mark.parametrize("compressed", [True, False])
def test_good_file_lands_verified(server, tmp_path, compressed):
    www, url = server
    (www / "labels").write_bytes(gzip.compress(PAYLOAD) if compressed else PAYLOAD)
    dest = tmp_path / "cache" / "labels.gz"
    assert download_file([url + "labels"], dest, PAYLOAD_SHA) == dest
    _only(dest.parent, "labels.gz")
    np.testing.assert_array_equal(read_idx(dest), [7, 2, 1, 0, 4])


def test_corrupt_file_rejected_and_nothing_left(server, tmp_path):
    www, url = server
    (www / "labels").write_bytes(gzip.compress(PAYLOAD[:-1] + b"\x09"))
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=f"(?s)labels.gz.*{url}labels: sha256 .* expected {PAYLOAD_SHA}"):
        download_file([url + "labels"], cache / "labels.gz", PAYLOAD_SHA)
    _only(cache)


def test_dropped_connection_rejected_and_nothing_left(server, tmp_path):
    www, url = server
    (www / "labels").write_bytes(PAYLOAD)
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=r"truncated: received 6 bytes, the server announced 13"):
        download_file([url + "short/labels"], cache / "labels.gz", PAYLOAD_SHA)
    _only(cache)


def test_truncated_gzip_rejected_and_nothing_left(server, tmp_path):
    www, url = server
    (www / "labels").write_bytes(gzip.compress(PAYLOAD)[:-6])
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="corrupt or truncated gzip"):
        download_file([url + "labels"], cache / "labels.gz", PAYLOAD_SHA)
    _only(cache)


def test_failed_download_keeps_the_previous_good_file(server, tmp_path):
    www, url = server
    (www / "labels").write_bytes(b"garbage")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "labels.gz").write_bytes(b"previous")
    with pytest.raises(DownloadError):
        download_file([url + "labels"], cache / "labels.gz", PAYLOAD_SHA)
    assert (cache / "labels.gz").read_bytes() == b"previous"
    _only(cache, "labels.gz")


def test_first_mirror_fails_second_succeeds(server, tmp_path):
    www, url = server
    (www / "b").mkdir()
    (www / "b" / "labels").write_bytes(gzip.compress(PAYLOAD))
    (www / "c").mkdir()
    (www / "c" / "labels").write_bytes(b"not it")
    dest = tmp_path / "cache" / "labels.gz"
    download_file([url + "a/labels", url + "c/labels", url + "b/labels"], dest, PAYLOAD_SHA)
    np.testing.assert_array_equal(read_idx(dest), [7, 2, 1, 0, 4])
    _only(dest.parent, "labels.gz")


def test_all_mirrors_failing_lists_each(server, tmp_path):
    www, url = server
    (www / "bad").write_bytes(b"not it")
    unreachable = "http://127.0.0.1:9/labels"  # the discard port: connection refused
    with pytest.raises(DownloadError) as info:
        download_file([url + "missing", url + "bad", unreachable], tmp_path / "labels.gz", PAYLOAD_SHA, timeout=5)
    message = str(info.value)
    assert "could not download labels.gz from any mirror" in message
    assert f"{url}missing: HTTP Error 404" in message
    assert f"{url}bad: sha256" in message
    assert f"{unreachable}: " in message
    _only(tmp_path, "www")


# ------------------------------------------------------------------------------ MNIST(download=True)
@pytest.fixture
def mnist_mirror(server, monkeypatch):
    """MNIST's mirrors pointed at the local server, which serves the shared test split."""
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the shared MNIST copy is not at {SHARED_MNIST}")
    www, url = server
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(SHARED_MNIST / name, www / name)
    monkeypatch.setattr(MNIST, "mirrors", [url + "missing/", url])
    return www


def test_mnist_download_into_empty_root(mnist_mirror, tmp_path):
    root = tmp_path / "data"
    ds = MNIST(root, train=False, download=True)
    _only(root, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    assert ds.data.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(ds.targets.numpy()[:5], [7, 2, 1, 0, 4])


def test_mnist_download_replaces_a_corrupt_cached_file(mnist_mirror, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(PAYLOAD))  # a valid IDX, wrong data
    ds = MNIST(root, train=False, download=True)
    assert len(ds) == 10000
    assert hashlib.sha256(gzip.decompress((root / "t10k-labels-idx1-ubyte.gz").read_bytes())).hexdigest() == \
        MNIST.resources["t10k-labels-idx1-ubyte"]
