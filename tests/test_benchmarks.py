"""Smoke tests of the benchmarks against PyTorch (benchmarks/models.py, threads.py and ops.py):
each runs briefly on the CPU as a subprocess into a temporary folder, and its results must
parse, show the two frameworks' losses agreeing, and include the Markdown table and chart.
MNIST is used from ../shared/data/mnist when it is there (else the scripts use synthetic data)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"


def run_script(script, *args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    data = ["--data-dir", str(MNIST_DIR)] if script in ("models.py", "threads.py") and MNIST_DIR.exists() else []
    done = subprocess.run([sys.executable, str(BENCH / script), *args, *data], capture_output=True, text=True,
                          env=env, timeout=timeout)
    return done


def read_jsonl(path):
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["type"] == "environment"
    return lines[0], lines[1:]


def only(folder, pattern):
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, (pattern, [p.name for p in folder.iterdir()])
    return found[0]


def test_models_benchmark_runs_and_losses_agree(tmp_path):
    pytest.importorskip("torch")
    done = run_script("models.py", "--device", "cpu", "--models", "lenet,pytorch_example", "--steps", "3",
                      "--check-steps", "2", "--threads", "1", "--repeats", "2", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    env, rows = read_jsonl(only(tmp_path, "cpu-*-models-threads1.jsonl"))
    assert env["logical_cores"] >= 1 and env["versions"]["torch"] and env["versions"]["numpy"]
    assert env["workers"]["1"]["torch_threads"] == 1 and env["workers"]["1"]["numba_threads"] == 1
    assert [r["model"] for r in rows] == ["lenet", "pytorch_example"]
    for r in rows:
        for framework, other in (("tinynet", "torch"), ("torch", "tinynet")):
            assert len(r["times_s"][framework]) == 3 * 2  # steps x processes
            assert len(r[framework]["process_median_ms"]) == 2
            assert r[framework]["median_ms"] > 0
            assert r[framework]["epoch_s"] == pytest.approx(r[framework]["median_ms"] / 1e3 * r["steps_per_epoch"])
            # each framework trained in processes that never imported the other one
            assert all(w["modules"] == {framework: True, other: False} for w in r["workers"][framework])
        check = r["loss_check"]
        assert check["pass"] and abs(check["tinynet"] - check["torch"]) < 1e-3 * abs(check["torch"]), check
        assert r["overhead"]["ops_per_step"] > 10 and r["overhead"]["engine_us_per_op"] > 0
        assert r["tinynet"]["launches_per_step"] > r["overhead"]["ops_per_step"] and r["torch"].get("launches_per_step") is None
        assert r["peak_mb"]["tinynet"] is not None and r["peak_mb"]["torch"] is not None
        assert len(r["load_1min"]) == 4
    # lenet has no dropout: its timed run is the check; pytorch_example's needs a dropout-free rerun
    assert rows[0]["loss_check"]["run"] == "timed run" and rows[1]["loss_check"]["run"].startswith("separate")
    markdown = only(tmp_path, "cpu-*-models-threads1.md").read_text()
    assert "| model | batch | threads | tinynet ms/step | torch ms/step |" in markdown
    assert "| lenet | 256 | 1 |" in markdown and "| PASS |" in markdown and "**FAIL**" not in markdown
    assert only(tmp_path, "cpu-*-models-threads1.png").stat().st_size > 1000


def test_models_thread_settings_and_their_summary_table():
    sys.path.insert(0, str(BENCH))
    try:
        import models
    finally:
        sys.path.remove(str(BENCH))
    assert models.parse_threads("default,1") == [0, 1] and models.parse_threads("1") == [1]
    with pytest.raises(Exception, match="--threads"):
        models.parse_threads("two")
    assert models.results_kind([0]) == "models" and models.results_kind([0, 1]) == "models-threads0-1"

    def row(threads, tinynet_ms, torch_ms):
        return {"model": "lenet", "batch": 256, "threads": threads, "tinynet": {"median_ms": tinynet_ms},
                "torch": {"median_ms": torch_ms}, "ratio": tinynet_ms / torch_ms,
                "workers": {"torch": [{"torch_threads": 2}]}}
    table = models.summary_table([row(0, 20.0, 10.0), row(1, 30.0, 40.0)], [0, 1])
    assert table.splitlines()[0] == ("| model (batch) | tinynet, default (2) | PyTorch, default (2) | ratio "
                                     "| tinynet, 1 | PyTorch, 1 | ratio |")
    assert table.splitlines()[2] == "| lenet (256) | 20.0 | 10.0 | 2.00x | 30.0 | 40.0 | 0.75x |"


def test_threads_benchmark_puts_each_framework_beside_the_other(tmp_path):
    pytest.importorskip("torch")
    done = run_script("threads.py", "--models", "lenet", "--layers", "workqueue", "--steps", "2", "--warmup", "1",
                      "--repeats", "1", "--threads", "1", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    _, rows = read_jsonl(only(tmp_path, "cpu-*-threads-threads1.jsonl"))
    by_name = {r["configuration"]: r for r in rows}
    assert set(by_name) == {"tinynet, layer workqueue", "tinynet, layer workqueue, beside torch", "torch",
                            "torch beside tinynet", "torch beside tinynet, TINYNET_MALLOC_TUNING=0"}
    assert by_name["tinynet, layer workqueue"]["numba_threading_layer"] == "workqueue"
    for r in rows:
        assert len(r["times_s"]) == 2 and r["median_ms"] > 0
        assert r["modules"] == {"tinynet": True, "torch": True} if "beside" in r["configuration"] else \
            sum(r["modules"].values()) == 1
        assert (r["over_baseline"] is None) == (r["baseline"] is None)
    beside = by_name["torch beside tinynet"]
    assert beside["over_baseline"] == pytest.approx(beside["median_ms"] / by_name["torch"]["median_ms"])
    assert "| lenet (256) | torch beside tinynet |" in only(tmp_path, "cpu-*-threads-threads1.md").read_text()


def test_ops_benchmark_quick(tmp_path):
    pytest.importorskip("torch")
    done = run_script("ops.py", "--device", "cpu", "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    _, rows = read_jsonl(only(tmp_path, "cpu-*-ops-quick.jsonl"))
    ops = {r["op"] for r in rows}
    assert ops == {"conv2d", "max_pool2d", "batch_norm", "linear", "cross_entropy", "dropout", "SGD step", "Adam step"}
    for r in rows:
        assert r["tinynet_ms"] > 0 and r["torch_ms"] > 0 and len(r["times_s"]["tinynet"]) == 3
    markdown = only(tmp_path, "cpu-*-ops-quick.md").read_text()
    assert "| op | where | shape | tinynet ms | torch ms |" in markdown and "| conv2d | lenet conv2 |" in markdown
    assert only(tmp_path, "cpu-*-ops-quick.png").stat().st_size > 1000


@pytest.mark.parametrize("script", ["models.py", "ops.py", "accuracy.py"])
def test_without_torch_the_scripts_say_how_to_install_it(script, tmp_path):
    code = (f"import runpy, sys; sys.path.insert(0, {str(BENCH)!r}); sys.modules['torch'] = None; "
            f"sys.argv = [{script!r}, '--out', {str(tmp_path)!r}]; "
            f"runpy.run_path({str(BENCH / script)!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 2, done.stderr[-2000:]
    assert "pip install -e .[bench]" in done.stderr
    assert not list(tmp_path.iterdir())  # nothing written
