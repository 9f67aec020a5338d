"""Every example trains for two epochs on a 1,000-image subset of MNIST on the CPU, its loss
falls, and it writes its figures. Needs the shared MNIST copy (../shared/data/mnist)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
pytestmark = pytest.mark.skipif(not (MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
                                reason="MNIST not found at ../shared/data/mnist")

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


def test_vgg_bn_evaluate_all_and_predict(tmp_path):
    run_example("vgg_bn.py", [], tmp_path)
    stdout = run_example("vgg_bn.py", ["--evaluate-all"], tmp_path)
    assert "best: epoch_" in stdout and (tmp_path / "best.npz").exists()
    stdout = run_example("vgg_bn.py", ["--predict", "0"], tmp_path)
    assert "predicted" in stdout and "(true label 7)" in stdout


def test_example_exports_onnx_that_onnxruntime_runs(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    import numpy as np
    path = tmp_path / "lenet.onnx"
    stdout = run_example("lenet.py", ["--export-onnx", str(path)], tmp_path)
    assert f"ONNX model written to {path}" in stdout
    session = ort.InferenceSession(str(path))
    (out,) = session.run(None, {session.get_inputs()[0].name: np.zeros((3, 1, 28, 28), np.float32)})
    assert out.shape == (3, 10)


def test_lenet_batch_sweep_trains_each_setting_and_plots(tmp_path):
    stdout = run_example("lenet.py", ["--sweep", "batch", "--epochs", "1", "--subset", "300"], tmp_path)
    for batch in (32, 64, 128, 256, 512):
        assert f"batch={batch}: test accuracy" in stdout
    assert (tmp_path / "sweep_batch.png").stat().st_size > 1000


def test_compiled_example_matches_eager(tmp_path):
    """--compile replays the recorded step: the same history as the eager run, to the bit."""
    run_example("lenet_resnet.py", ["--variant", "conv", "--lr", "0.01"], tmp_path / "eager")
    stdout = run_example("lenet_resnet.py", ["--variant", "conv", "--lr", "0.01", "--compile"], tmp_path / "compiled")
    assert "running eagerly" not in stdout
    eager = json.loads((tmp_path / "eager" / "history.json").read_text())
    compiled = json.loads((tmp_path / "compiled" / "history.json").read_text())
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert compiled[key] == eager[key], key
