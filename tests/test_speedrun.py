"""examples/speedrun.py end to end on the CPU, on a tiny synthetic MNIST written here as IDX files
(no real MNIST needed): one epoch trains (the loss falls, the test accuracy is far above chance),
each run prints its accuracy and training time, the mean is printed, and the recorded-and-
replayed step (compile_step, the default) gives the same numbers as the eager one."""
import gzip
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUN_LINE = re.compile(r"run seed (\d+): train loss ([\d.]+) \(first batch\), ([\d.]+) \(mean\), "
                      r"test accuracy ([\d.]+)%, training time ([\d.]+) s \(process CPU time ([\d.]+) s\)")


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (gzipped, as the MNIST files are) of a uint8 array."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def synthetic_mnist(folder: Path, n_train: int = 1280, n_test: int = 500, seed: int = 0) -> None:
    """Ten classes of 28x28 images: each class a fixed random blob pattern, shifted by up to two
    pixels and with noise added, so a convnet can learn it in one short epoch."""
    rng = np.random.default_rng(seed)
    templates = (rng.random((10, 28, 28)) < 0.15).astype(np.float64)
    templates[:, :4], templates[:, -4:], templates[:, :, :4], templates[:, :, -4:] = 0, 0, 0, 0

    def draw(n):
        labels = rng.integers(0, 10, n)
        images = np.empty((n, 28, 28))
        for i, label in enumerate(labels):
            dy, dx = rng.integers(-2, 3, 2)
            images[i] = np.roll(templates[label], (dy, dx), axis=(0, 1))
        images = np.clip(images * 255 * rng.uniform(0.6, 1.0, (n, 1, 1)) + rng.normal(0, 30, images.shape), 0, 255)
        return images.astype(np.uint8), labels.astype(np.uint8)

    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = draw(n)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)


def run_speedrun(data_dir: Path, *args: str) -> str:
    cmd = [sys.executable, str(ROOT / "examples" / "speedrun.py"), "--data-dir", str(data_dir),
           "--epochs", "1", "--batch-size", "32", "--lr", "0.05", "--test-batch-size", "250", *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def test_speedrun_trains_one_epoch_and_reports_accuracy_and_time(tmp_path):
    synthetic_mnist(tmp_path)
    stdout = run_speedrun(tmp_path, "--runs", "2", "--seed", "3")
    runs = RUN_LINE.findall(stdout)
    assert [int(r[0]) for r in runs] == [3, 4], stdout
    for _, first_loss, mean_loss, acc, seconds, cpu_seconds in runs:
        assert float(mean_loss) < float(first_loss), stdout  # the loss falls
        assert float(acc) > 50.0, stdout                      # chance is 10%
        assert float(seconds) > 0 and float(cpu_seconds) > 0, stdout
    mean = re.search(r"mean over 2 run\(s\): test accuracy ([\d.]+)%, training time ([\d.]+) s .*: "
                     r"(reached|did NOT reach) 99%", stdout)
    assert mean is not None, stdout
    assert abs(float(mean.group(1)) - sum(float(r[3]) for r in runs) / 2) < 0.01, stdout


def test_speedrun_compiled_step_matches_eager(tmp_path):
    synthetic_mnist(tmp_path)
    compiled = RUN_LINE.findall(run_speedrun(tmp_path))
    eager = RUN_LINE.findall(run_speedrun(tmp_path, "--no-compile"))
    assert len(compiled) == len(eager) == 1
    assert compiled[0][:4] == eager[0][:4]  # seed, losses and accuracy as printed
