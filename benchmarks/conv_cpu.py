"""Time conv2d forward + backward on the CPU: tinynet with its NumPy reference kernels, tinynet
with its numba kernels, and PyTorch, on the layer shapes of LeNet and of a small VGG-like
model (batch 64).

    python benchmarks/conv_cpu.py [--batch 64] [--repeats 9] [--dtype float32] [--threads N] [--no-input-grad]

Every step computes the output and the gradients of input, weight and bias, in both
frameworks; with ``--no-input-grad`` only those of weight and bias, as for a model's first
layer, whose input (the images) needs no gradient. Each time is the median of ``--repeats`` steps after two warm-up steps (the first
also compiles the numba kernels). Each implementation runs in its own Python process, so
PyTorch's thread pool and numba's never share a process. ``--threads N`` limits every thread
pool (OpenBLAS, numba, PyTorch) to N threads; the default leaves each library's own default.
PyTorch is optional: without it, its column says so.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# name -> (C_in, C_out, kernel, H = W, padding)
LAYERS = {
    "LeNet conv1 1->6 5x5 28x28 pad 2": (1, 6, 5, 28, 2),
    "LeNet conv1 1->6 5x5 28x28": (1, 6, 5, 28, 0),
    "LeNet conv2 6->16 5x5 14x14": (6, 16, 5, 14, 0),
    "VGG 1->32 3x3 28x28 pad 1": (1, 32, 3, 28, 1),
    "VGG 32->128 3x3 14x14 pad 1": (32, 128, 3, 14, 1),
    "VGG 128->512 3x3 7x7 pad 1": (128, 512, 3, 7, 1),
}
IMPLEMENTATIONS = ("reference", "numba", "torch")


# ----------------------------------------------------------------------- one implementation
def median_seconds(step, repeats: int) -> float:
    for _ in range(2):  # warm-up: numba compilation, allocator, thread pools
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def layer_arrays(layer, batch, dtype):
    import numpy as np
    c_in, c_out, k, size, padding = layer
    out = size + 2 * padding - k + 1
    rng = np.random.default_rng(0)
    shapes = [(batch, c_in, size, size), (c_out, c_in, k, k), (c_out,), (batch, c_out, out, out)]
    return [rng.standard_normal(shape).astype(dtype) for shape in shapes], padding


def tinynet_step(arrays, padding, input_grad=True):
    import tinynet
    from tinynet.functional.conv import conv2d
    x, w, b, g = (tinynet.tensor(a) for a in arrays)
    for t in (x, w, b) if input_grad else (w, b):
        t.requires_grad_()

    def step():
        x.grad = w.grad = b.grad = None
        conv2d(x, w, b, padding=padding).backward(g)
    return step


def torch_step(arrays, padding, input_grad=True):
    import torch
    x, w, b, g = (torch.from_numpy(a) for a in arrays)
    for t in (x, w, b) if input_grad else (w, b):
        t.requires_grad_()

    def step():
        x.grad = w.grad = b.grad = None
        torch.nn.functional.conv2d(x, w, b, padding=padding).backward(g)
    return step


def run_worker(implementation: str, args) -> dict:
    """Time every layer with one implementation; return {layer: seconds} plus library info."""
    if implementation == "torch":
        try:
            import torch
        except ImportError:
            return {"error": "not installed"}
        if args.threads:
            torch.set_num_threads(args.threads)
        info = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
        make_step = torch_step
    else:
        sys.path.insert(0, ROOT)
        import numba
        import numpy as np
        from tinynet.kernels.im2col import reference_kernels
        info = f"numpy {np.__version__}" + (f", numba {numba.__version__}, {numba.get_num_threads()} threads"
                                            if implementation == "numba" else "")
        make_step = tinynet_step
    times = {"info": info}
    kernels = reference_kernels() if implementation == "reference" else contextlib.nullcontext()
    with kernels:
        for name, layer in LAYERS.items():
            arrays, padding = layer_arrays(layer, args.batch, args.dtype)
            times[name] = median_seconds(make_step(arrays, padding, args.input_grad), args.repeats)
    return times


# ------------------------------------------------------------------------------------ driver
def spawn(implementation: str, args) -> dict:
    env = dict(os.environ)
    if args.threads:  # must be set before the libraries start their thread pools
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env[var] = str(args.threads)
    command = [sys.executable, os.path.abspath(__file__), "--worker", implementation, "--batch", str(args.batch),
               "--repeats", str(args.repeats), "--dtype", args.dtype, "--threads", str(args.threads or 0)] \
        + ([] if args.input_grad else ["--no-input-grad"])
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def milliseconds(times: dict, name: str) -> str:
    return f"{times[name] * 1e3:8.2f}ms" if name in times else f"{'-':>10}"


def ratio(a: dict, b: dict, name: str) -> str:
    return f"{a[name] / b[name]:9.2f}x" if name in a and name in b else f"{'-':>10}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=0, help="threads per library (0: library defaults)")
    parser.add_argument("--no-input-grad", dest="input_grad", action="store_false",
                        help="gradients of weight and bias only (a first layer)")
    parser.add_argument("--worker", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(args.worker, args)))
        return

    results = {impl: spawn(impl, args) for impl in IMPLEMENTATIONS}
    print(f"conv2d forward + backward (grads of {'input, ' if args.input_grad else ''}weight, bias), batch {args.batch}, {args.dtype}, "
          f"median of {args.repeats} after 2 warm-ups, "
          + (f"{args.threads} thread(s) per library" if args.threads else "default threads"))
    for impl, times in results.items():
        print(f"  {impl:<9}: {times.get('info') or times.get('error')}")
    if "error" in results["torch"]:
        print("  PyTorch is not available: its column is empty (pip install torch to compare).")
    header = (f"{'layer':<34} {'reference':>10} {'numba':>10} {'torch':>10} {'ref/numba':>10} "
              f"{'numba/torch':>11}")
    print(header)
    print("-" * len(header))
    ref, fast, torch_times = results["reference"], results["numba"], results["torch"]
    for name in LAYERS:
        print(f"{name:<34} {milliseconds(ref, name)} {milliseconds(fast, name)} {milliseconds(torch_times, name)} "
              f"{ratio(ref, fast, name)} {ratio(fast, torch_times, name):>11}")


if __name__ == "__main__":
    main()
