"""What the benchmark scripts share: finding PyTorch and the example models, MNIST batches for
both frameworks, timing with device synchronisation, recording the machine, and writing the
results (JSON lines, a Markdown table and a bar chart) under ``benchmarks/results/``.

Not a library module: ``models.py``, ``ops.py`` and ``accuracy.py`` import it from their own
folder (``python benchmarks/models.py`` puts ``benchmarks/`` first on ``sys.path``).
"""
from __future__ import annotations

import datetime
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                    "NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

POOL_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")

# The thread settings as the user launched us.
LAUNCH_ENV = {k: os.environ.get(k) for k in THREAD_VARIABLES}

def _load():
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


START_LOAD = _load()  # when the script started (this module is imported first)

if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------------- imports
def require_torch():
    """Import and return torch, or explain how to get it and exit with status 2."""
    try:
        import torch
    except ImportError:
        print("PyTorch is needed for the benchmarks against PyTorch: pip install -e .[bench]", file=sys.stderr)
        raise SystemExit(2)
    return torch


def import_frameworks():
    """Import tinynet, then torch (or exit as :func:`require_torch` does); return both, for the
    scripts that hold both frameworks in one process (``ops.py``, ``accuracy.py``). Timings
    that must not be disturbed by the other framework run in processes of their own
    (``models.py``)."""
    import tinynet
    return tinynet, require_torch()


def load_example(name: str):
    """Import ``examples/<name>.py`` as a module (the examples are scripts, not a package)."""
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"tinynet_examples_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tinynet_device(device: str) -> str:
    return "cuda" if device == "gpu" else device


# -------------------------------------------------------------------------------------- data
def mnist_arrays(data_dir, normalize, train: bool = True):
    """MNIST images (N, 1, 28, 28) float32 and labels (N,) int64 as NumPy arrays, decoded and
    normalised by tinynet's MNIST class (so both frameworks see the same floats).
    Returns (images, labels, note); without the files, random images and labels with a note."""
    import numpy as np
    from tinynet.data import MNIST
    try:
        data = MNIST(data_dir, train=train, normalize=normalize)
        return data.data.numpy(), data.targets.numpy(), f"MNIST from {data.root}"
    except FileNotFoundError:
        rng = np.random.default_rng(0)
        n = 60000 if train else 10000
        images = rng.standard_normal((n, 1, 28, 28), dtype=np.float32)
        labels = rng.integers(0, 10, n).astype(np.int64)
        return images, labels, "SYNTHETIC data (MNIST not found): random images and labels, timings only"


def default_data_dir():
    if os.environ.get("TINYNET_DATA"):
        return os.environ["TINYNET_DATA"]
    return str(SHARED_MNIST) if SHARED_MNIST.exists() else None


def set_threads(n: int) -> None:
    """Limit every thread pool to ``n`` threads (0: leave the libraries' defaults). Must run
    before NumPy, numba or torch are imported: the pools read these variables when they start."""
    if not n:
        return
    for var in POOL_VARIABLES:
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


# -------------------------------------------------------------------------------- timing
class Synchronizer:
    """``sync('tinynet')`` / ``sync('torch')``: wait for queued GPU work (no-op on the CPU)."""

    def __init__(self, device: str):
        self.gpu = device != "cpu"

    def __call__(self, framework: str) -> None:
        if not self.gpu:
            return
        if framework == "tinynet":
            import tinynet
            tinynet.cuda.synchronize()
        else:
            import torch
            torch.cuda.synchronize()


def timed(fn, sync, framework):
    """Run ``fn()`` between two synchronisations; return (seconds, result)."""
    sync(framework)
    start = time.perf_counter()
    result = fn()
    sync(framework)
    return time.perf_counter() - start, result


def alternate(steps: dict, repeats: int, warmup: int, sync) -> dict:
    """Time several implementations of the same step, interleaved: in every round each
    implementation runs once, and the order rotates from round to round, so that load from
    other processes falls on all of them alike. ``steps`` maps name -> fn(round) (round < 0
    for warm-up). Returns name -> list of seconds (warm-up excluded)."""
    names = list(steps)
    for r in range(warmup):
        for name in names:
            timed(lambda: steps[name](r - warmup), sync, _framework(name))
    times = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            seconds, _ = timed(lambda: steps[name](r), sync, _framework(name))
            times[name].append(seconds)
    return times


def _framework(name: str) -> str:
    return "tinynet" if name.startswith("tinynet") else "torch"


def median(values):
    return statistics.median(values) if values else float("nan")


def spread(values) -> float:
    """Interquartile range over median: how noisy the timings were."""
    if len(values) < 4:
        return float("nan")
    q = statistics.quantiles(values, n=4)
    return (q[2] - q[0]) / statistics.median(values)


# ------------------------------------------------------------------------------- memory
def rss_bytes() -> int | None:
    """Current resident set size (Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """Highest resident set size of this process so far (or since :func:`reset_peak_rss`)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# -------------------------------------------------------------------------- environment
def environment(device: str) -> dict:
    """The machine, the library versions and every thread setting, for the results file."""
    env = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": device,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_1min_start": START_LOAD,
        "load_average_1min_end": _load(),
        "thread_env_at_launch": LAUNCH_ENV,
        "thread_env_in_effect": {k: os.environ.get(k) for k in THREAD_VARIABLES},
        "versions": {},
        "gpu": None,
    }
    for name in ("numpy", "numba", "torch", "cupy"):
        try:
            module = importlib.import_module(name)
            env["versions"][name] = module.__version__
        except Exception:  # noqa: BLE001 - absent or broken: recorded as such
            env["versions"][name] = None
    try:
        import numba
        env["numba_threads"] = numba.get_num_threads()
        try:
            env["numba_threading_layer"] = numba.threading_layer()
        except ValueError:  # no parallel kernel has run yet
            env["numba_threading_layer"] = None
    except ImportError:
        pass
    try:
        import numpy as np
        blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        env["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001 - older NumPy
        env["numpy_blas"] = None
    try:
        import torch
        env["torch_threads"] = torch.get_num_threads()
        env["torch_interop_threads"] = torch.get_num_interop_threads()
        if device != "cpu" and torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    if device != "cpu" and env["gpu"] is None:
        try:
            import cupy
            env["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        except Exception:  # noqa: BLE001
            pass
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment_lines(env: dict) -> list[str]:
    """The environment as Markdown bullet points."""
    threads = ", ".join(f"{k}={v}" for k, v in env["thread_env_in_effect"].items() if v is not None) or "none set"
    launch = ", ".join(f"{k}={v}" for k, v in env["thread_env_at_launch"].items() if v is not None) or "none set"
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    lines = [
        f"- date: {env['date']}; device: {env['device']}" + (f" ({env['gpu']})" if env.get("gpu") else ""),
        f"- CPU: {env['cpu']}, {env['logical_cores']} logical cores ({env['usable_cores']} usable); "
        f"1-min load average (runnable processes; >{env['usable_cores']} means the cores were shared) at start "
        f"{env['load_average_1min_start']}, at end {env['load_average_1min_end']}",
        f"- versions: {versions}; Python {env['python']}; NumPy BLAS: {env.get('numpy_blas')}",
        f"- threads: torch {env.get('torch_threads')} (interop {env.get('torch_interop_threads')}), "
        f"numba {env.get('numba_threads')} (layer {env.get('numba_threading_layer')}); "
        f"environment at launch: {launch}; in effect: {threads}",
    ]
    if env.get("workers"):  # the frameworks ran in processes of their own: their pools, not ours
        lines[-1] = ("- threads in the benchmark processes: " + "; ".join(
            f"{label}: torch {w['torch_threads']}, numba {w['numba_threads']} (layer {w['numba_threading_layer']})"
            for label, w in env["workers"].items()) + f"; environment at launch: {launch}")
    return lines


# ------------------------------------------------------------------------------- results
def results_stem(out_dir, device: str, kind: str) -> Path:
    """``OUT/<device>-<YYYY-MM-DD>-<kind>``: the common stem of one run's three files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{device}-{datetime.date.today().isoformat()}-{kind}"


def write_jsonl(path: Path, env: dict, rows: list[dict]) -> None:
    """One JSON object per line: the environment first, then one per row."""
    with open(path, "w") as f:
        f.write(json.dumps({"type": "environment", **env}) + "\n")
        for row in rows:
            f.write(json.dumps(jsonable(row)) + "\n")


def jsonable(value):
    """``value`` with NaN and infinities as None (JSON has neither), through dicts and lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_markdown(path: Path, title: str, env: dict, sections: list[str]) -> None:
    text = [f"# {title}", "", *environment_lines(env), "", *sections]
    path.write_text("\n".join(text).rstrip() + "\n")


def bar_chart(path: Path, labels: list[str], series: dict, ylabel: str, title: str, log: bool = False) -> None:
    """Grouped horizontal bars: one group per label, one bar per series (name -> values)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    n = len(series)
    height = 0.8 / max(n, 1)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) * max(n, 1) + 1.5))
    y = np.arange(len(labels))
    for i, (name, values) in enumerate(series.items()):
        values = [v if v is not None and math.isfinite(v) else 0 for v in values]
        ax.barh(y + (i - (n - 1) / 2) * height, values, height, label=name)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel(ylabel)
    if log:
        ax.set_xscale("log")
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fmt(value, digits: int = 2, unit: str = "") -> str:
    """Format a number for a table; None/NaN -> 'n/a'."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}{unit}"
