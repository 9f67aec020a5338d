"""Every example trains for two epochs on a 1,000-image subset of MNIST on the CPU, its loss
falls, and it writes its figures (needs the shared MNIST copy, ../shared/data/mnist). On the
command line, ``--help`` keeps each docstring's layout, and errors a user can fix are one line on
stderr with exit status 2 (these need no data)."""
import ast
import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinynet

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(not (MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
                                 reason="MNIST not found at ../shared/data/mnist")
SCRIPTS = sorted(p.name for p in (ROOT / "examples").glob("*.py"))

EXAMPLES = [("pytorch_example.py", []), ("lenet.py", []), ("lenet.py", ["--activation", "relu", "--lr", "0.1"]),
            ("mlp.py", ["--rotation", "45"]), ("cnn5.py", []), ("vgg_bn.py", []),
            ("lenet_resnet.py", ["--variant", "conv", "--lr", "0.01"]),
            ("lenet_resnet.py", ["--variant", "fc", "--lr", "0.01"])]


def run_example(script, args, out):
    cmd = [sys.executable, str(ROOT / "examples" / script), "--data-dir", str(MNIST_DIR), "--subset", "1000",
           "--epochs", "2", "--no-progress", "--test-batch-size", "500", "--out", str(out), *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout + done.stderr


@needs_mnist
@pytest.mark.parametrize("script,args", EXAMPLES, ids=[f"{s}{''.join(a[:2])}" for s, a in EXAMPLES])
def test_example_trains_two_epochs_and_writes_figures(script, args, tmp_path):
    stdout = run_example(script, args, tmp_path)
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["train_loss"]) == 2
    assert history["train_loss"][1] < history["train_loss"][0], history
    for name in ("curves.png", "confusion.png", "misclassified.png", "predictions.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
    assert (tmp_path / "checkpoints" / "last.npz").exists()
    assert "final test accuracy" in stdout and "per-class accuracy" in stdout


@needs_mnist
def test_vgg_bn_evaluate_all_and_predict(tmp_path):
    run_example("vgg_bn.py", [], tmp_path)
    stdout = run_example("vgg_bn.py", ["--evaluate-all"], tmp_path)
    assert "best: epoch_" in stdout and (tmp_path / "best.npz").exists()
    stdout = run_example("vgg_bn.py", ["--predict", "0"], tmp_path)
    assert "predicted" in stdout and "(true label 7)" in stdout


@needs_mnist
def test_example_exports_onnx_that_onnxruntime_runs(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    import numpy as np
    path = tmp_path / "lenet.onnx"
    stdout = run_example("lenet.py", ["--export-onnx", str(path)], tmp_path)
    assert f"ONNX model written to {path}" in stdout
    session = ort.InferenceSession(str(path))
    (out,) = session.run(None, {session.get_inputs()[0].name: np.zeros((3, 1, 28, 28), np.float32)})
    assert out.shape == (3, 10)


@needs_mnist
def test_lenet_batch_sweep_trains_each_setting_and_plots(tmp_path):
    stdout = run_example("lenet.py", ["--sweep", "batch", "--epochs", "1", "--subset", "300"], tmp_path)
    for batch in (32, 64, 128, 256, 512):
        assert f"batch={batch}: test accuracy" in stdout
    assert (tmp_path / "sweep_batch.png").stat().st_size > 1000


@needs_mnist
def test_compiled_example_matches_eager(tmp_path):
    """--compile replays the recorded step: the same history as the eager run, to the bit."""
    run_example("lenet_resnet.py", ["--variant", "conv", "--lr", "0.01"], tmp_path / "eager")
    stdout = run_example("lenet_resnet.py", ["--variant", "conv", "--lr", "0.01", "--compile"], tmp_path / "compiled")
    assert "running eagerly" not in stdout
    eager = json.loads((tmp_path / "eager" / "history.json").read_text())
    compiled = json.loads((tmp_path / "compiled" / "history.json").read_text())
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert compiled[key] == eager[key], key


# ------------------------------------------------------------------------------ the command line
def run_command(script, args, env=None, without_cupy=False):
    """Run ``examples/<script> args`` without a GPU simulator (and, with ``without_cupy``, as if
    CuPy were not installed); (exit status, stdout, stderr)."""
    environment = {k: v for k, v in os.environ.items() if k not in ("TINYNET_SIMULATE_CUDA", "TINYNET_DEBUG")}
    environment.update(PYTHONPATH=str(ROOT), **(env or {}))
    path = str(ROOT / "examples" / script)
    command = [sys.executable, path, *args]
    if without_cupy:  # `import cupy` raises ImportError when sys.modules holds None for it
        command = [sys.executable, "-c", "import runpy, sys; sys.modules['cupy'] = None; sys.argv = sys.argv[1:]; "
                   "runpy.run_path(sys.argv[0], run_name='__main__')", path, *args]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    return done.returncode, done.stdout, done.stderr


def assert_one_line_error(status, stdout, stderr, script, *needles):
    assert status == 2, (status, stdout, stderr)
    assert stdout == ""
    assert stderr.endswith("\n") and stderr.count("\n") == 1, stderr  # one line, no traceback
    assert stderr.startswith(f"{script}: error: ") and "Traceback" not in stderr
    for needle in needles:
        assert needle in stderr, (needle, stderr)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_keeps_the_docstring_layout(script):
    """The usage lines of the docstring stay one per line, indented as written (argparse's
    default formatter runs them together into one paragraph)."""
    docstring = ast.get_docstring(ast.parse((ROOT / "examples" / script).read_text()), clean=False)
    usage = [line for line in docstring.splitlines() if line.strip().startswith("python examples/")]
    assert len(usage) >= 1
    status, stdout, stderr = run_command(script, ["--help"])
    assert status == 0, stderr
    lines = stdout.splitlines()
    for line in usage:
        assert line in lines, (line, stdout)
    assert "(default: cpu)" in stdout  # the defaults are still shown


def test_device_gpu_without_cupy_is_one_line():
    status, stdout, stderr = run_command("lenet.py", ["--device", "gpu", "--data-dir", "/nonexistent"],
                                         without_cupy=True)
    assert_one_line_error(status, stdout, stderr, "lenet.py", "argument --device: a CUDA device was requested but "
                          "CuPy is not installed: install CuPy for your CUDA version")


def test_device_gpu_without_a_usable_gpu_is_one_line():
    """As this machine is: without CuPy, or with CuPy but no GPU it can see (one line says which)."""
    if tinynet.backend.cuda_available():
        pytest.skip("this machine has a GPU")
    status, stdout, stderr = run_command("speedrun.py", ["--device", "cuda:0", "--data-dir", "/nonexistent"])
    assert_one_line_error(status, stdout, stderr, "speedrun.py", "argument --device:")
    assert "CuPy is not installed" in stderr or "CuPy sees 0 GPU(s)" in stderr, stderr


@pytest.mark.parametrize("script", ["lenet.py", "speedrun.py"])
def test_missing_data_folder_is_one_line(script, tmp_path):
    status, stdout, stderr = run_command(script, ["--data-dir", str(tmp_path / "nowhere")])
    assert_one_line_error(status, stdout, stderr, script, f"{tmp_path / 'nowhere'} (no such folder)", "--download")


@pytest.mark.parametrize("script, args, needle", [
    ("lenet.py", ["--batch-size", "0"], "argument --batch-size: expected a positive integer, got 0"),
    ("lenet.py", ["--epochs", "two"], "argument --epochs: expected a positive integer, got 'two'"),
    ("cnn5.py", ["--lr", "-0.1"], "argument --lr: expected a number >= 0, got -0.1"),
    ("mlp.py", ["--lr", "nan"], "argument --lr: expected a number >= 0, got nan"),
    ("vgg_bn.py", ["--device", "tpu"], "argument --device: device: expected 'cpu', 'cuda', 'cuda:N' or 'gpu', got 'tpu'"),
    ("lenet.py", ["--activation", "tanh"], "argument --activation: invalid choice: 'tanh'"),
    ("speedrun.py", ["--warmup", "1.5"], "argument --warmup: expected a number between 0 and 1, got 1.5"),
    ("lenet_resnet.py", ["--no-such-option"], "unrecognized arguments: --no-such-option"),
])
def test_bad_option_value_is_one_line(script, args, needle):
    status, stdout, stderr = run_command(script, args)
    assert_one_line_error(status, stdout, stderr, script, needle)


def _idx(array) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    return gzip.compress(header + array.tobytes())


def test_damaged_and_unverified_data_files_are_one_line(tmp_path):
    """A foreign file (signed bytes) and a file whose checksum differs (--verify-data) each name the file."""
    for prefix in ("train", "t10k"):
        (tmp_path / f"{prefix}-images-idx3-ubyte.gz").write_bytes(_idx(np.zeros((4, 28, 28), np.uint8)))
        (tmp_path / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(_idx(np.arange(4, dtype=np.uint8)))
    images = tmp_path / "train-images-idx3-ubyte.gz"
    status, stdout, stderr = run_command("lenet.py", ["--data-dir", str(tmp_path), "--verify-data"])
    assert_one_line_error(status, stdout, stderr, "lenet.py", f"MNIST: {images}: sha256 of the decompressed data is")
    images.write_bytes(_idx(np.zeros((4, 28, 28), np.int8)))
    status, stdout, stderr = run_command("lenet.py", ["--data-dir", str(tmp_path)])
    assert_one_line_error(status, stdout, stderr, "lenet.py", f"MNIST: {images}: expected images",
                          "found type code 0x09 (signed bytes)")


@pytest.mark.parametrize("how", [["--debug"], "TINYNET_DEBUG=1"])
def test_debug_shows_the_traceback(how, tmp_path):
    args, env = (how, None) if isinstance(how, list) else ([], dict([how.split("=")]))
    status, _, stderr = run_command("lenet.py", ["--data-dir", str(tmp_path / "nowhere"), *args], env=env)
    assert status == 1
    assert "Traceback (most recent call last)" in stderr and "UsageError: MNIST not found" in stderr
    assert "train-images-idx3-ubyte not found" in stderr  # the error behind it, chained
