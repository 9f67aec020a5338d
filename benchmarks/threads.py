"""Is each framework a good neighbour? Time one framework's training step alone in its process and
with the other framework imported first (its thread pool started), under several settings.

    python benchmarks/threads.py --models lenet,pytorch_example --layers omp,workqueue
    python benchmarks/threads.py --threads 1 --repeats 3

Every configuration runs in processes of its own (``model_worker.py``, as in ``models.py``): the
configurations take turns, ``--repeats`` processes each, in an order that rotates from repeat to
repeat, so that load from other processes falls on all of them alike. Configurations, per model:

* ``tinynet, layer L``: tinynet alone with numba's threading layer L (``NUMBA_THREADING_LAYER``;
  ``tbb`` needs the ``tbb`` package), and the same ``beside torch``;
* ``torch``: PyTorch alone, and ``beside tinynet`` (tinynet imported first, so whatever its
  import sets for the whole process is in effect), and the same with ``TINYNET_MALLOC_TUNING=0``.

The table gives each configuration's median step time and its ratio to the same framework alone
(for tinynet, alone with the same layer).

``--kernels`` times instead each numba CPU kernel of tinynet at the report models' shapes, its
serial and its parallel version alternating call by call (median of ``--calls``), with the work
(elements) that ``tinynet.kernels.threads.GRAIN`` is compared with: where a second thread pays.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import harness
import models


def configurations(layers: list[str]) -> list[dict]:
    """name, framework, neighbour, extra environment, and the name of the baseline it is compared with."""
    found = []
    for layer in layers:
        env = {"NUMBA_THREADING_LAYER": layer}
        found.append(dict(name=f"tinynet, layer {layer}", framework="tinynet", neighbour=False, env=env))
        found.append(dict(name=f"tinynet, layer {layer}, beside torch", framework="tinynet", neighbour=True, env=env,
                          baseline=f"tinynet, layer {layer}"))
    found.append(dict(name="torch", framework="torch", neighbour=False, env={}))
    found.append(dict(name="torch beside tinynet", framework="torch", neighbour=True, env={}, baseline="torch"))
    found.append(dict(name="torch beside tinynet, TINYNET_MALLOC_TUNING=0", framework="torch", neighbour=True,
                      env={"TINYNET_MALLOC_TUNING": "0"}, baseline="torch"))
    return found


def measure(spec, args, workers: models.Workers, train_data, test_data) -> list[dict]:
    import numpy as np
    name = spec.name
    twin = models.torch_twin(spec, args.seed)
    np.savez(workers.path(f"{name}-init.npz"), **models.initial_state(twin))
    models.save_batches(workers.path(f"{name}-train.npz"), *train_data, args.warmup + args.steps, spec.batch, args.seed)
    np.savez(workers.path(f"{name}-eval.npz"), x=test_data[0][:500], y=test_data[1][:500])
    base = {"model": name, "device": "cpu", "seed": args.seed, "tf32": False, "threads": args.threads,
            "init": workers.path(f"{name}-init.npz"), "batches": workers.path(f"{name}-train.npz"),
            "eval": workers.path(f"{name}-eval.npz"), "dropout_active": models.has_dropout(twin, spec),
            "warmup": args.warmup, "steps": args.steps, "timed": True}
    configs = configurations(args.layers)
    times = {c["name"]: [] for c in configs}
    layers_seen = {c["name"]: None for c in configs}
    modules_seen = {c["name"]: None for c in configs}  # which frameworks the process had imported
    loads = []
    for r in range(args.repeats):
        for c in configs[r % len(configs):] + configs[:r % len(configs)]:
            result = workers.run(dict(base, framework=c["framework"], neighbour=c["neighbour"]), c["env"])
            times[c["name"]] += result["timed"]["times_s"][c["framework"]]
            layers_seen[c["name"]] = result["env"].get("numba_threading_layer")
            modules_seen[c["name"]] = result["env"]["modules"]
            loads.append(result["env"]["load_1min"])
    rows = []
    for c in configs:
        median = harness.median(times[c["name"]]) * 1e3
        rows.append({"type": "configuration", "model": name, "batch": spec.batch, "threads": args.threads,
                     "configuration": c["name"], "numba_threading_layer": layers_seen[c["name"]],
                     "modules": modules_seen[c["name"]],
                     "median_ms": median, "iqr_over_median": harness.spread(times[c["name"]]),
                     "times_s": times[c["name"]], "baseline": c.get("baseline"), "load_1min": loads})
    medians = {row["configuration"]: row["median_ms"] for row in rows}
    for row in rows:
        row["over_baseline"] = row["median_ms"] / medians[row["baseline"]] if row["baseline"] else None
    return rows


# (kernel, where, shape arguments): the conv layers of ops.py's cases, their pooling and BatchNorm
KERNEL_CASES = [
    ("im2col + col2im", "lenet conv1", dict(x=(256, 1, 28, 28), k=5, p=0)),
    ("im2col + col2im", "lenet conv2", dict(x=(256, 6, 12, 12), k=5, p=0)),
    ("im2col + col2im", "pytorch_example conv2", dict(x=(64, 10, 12, 12), k=5, p=0)),
    ("im2col + col2im", "lenet_resnet block", dict(x=(64, 16, 4, 4), k=3, p=1)),
    ("im2col + col2im", "vgg_bn conv2", dict(x=(64, 32, 14, 14), k=3, p=1)),
    ("im2col + col2im", "cnn5 conv2", dict(x=(128, 64, 28, 28), k=3, p=1, s=2)),
    ("max_pool2d fwd + bwd", "pytorch_example pool2", dict(x=(64, 20, 8, 8))),
    ("max_pool2d fwd + bwd", "lenet pool1", dict(x=(256, 6, 24, 24))),
    ("max_pool2d fwd + bwd", "vgg_bn pool1", dict(x=(64, 32, 28, 28))),
    ("batch_norm fwd + bwd", "lenet_resnet block", dict(x=(64, 16, 4, 4))),
    ("batch_norm fwd + bwd", "vgg_bn bn2", dict(x=(64, 128, 14, 14))),
    ("batch_norm fwd + bwd", "cnn5 bn2", dict(x=(128, 256, 14, 14))),
    ("relu fwd + bwd", "lenet_resnet block", dict(x=(64, 16, 4, 4))),
    ("relu fwd + bwd", "pytorch_example fc1", dict(x=(64, 50))),
    ("relu fwd + bwd", "pytorch_example conv1", dict(x=(64, 10, 12, 12))),
    ("relu fwd + bwd", "mlp block 2", dict(x=(128, 2048))),
    ("sigmoid bwd", "lenet conv1", dict(x=(256, 6, 24, 24))),
    ("conv layout fwd + bwd", "lenet conv1", dict(x=(6, 256, 24, 24))),
    ("conv layout fwd + bwd", "lenet conv2", dict(x=(16, 256, 8, 8))),
    ("sgd momentum", "lenet fc1 weight", dict(x=(120, 256))),
    ("sgd momentum", "mlp fc2 weight", dict(x=(2048, 1024))),
]


def kernel_call(kernel: str, a: dict):
    """(work in elements as the kernels count it, fn() running the kernel's numba path once)."""
    import numpy as np
    from tinynet.kernels import activation, conv, im2col, norm, optim, pool
    x = np.random.default_rng(0).standard_normal(a["x"], dtype=np.float32)
    if kernel.startswith("relu"):
        return x.size, lambda: activation.relu_backward_numba(activation.relu_forward_numba(x), x)
    if kernel.startswith("sigmoid"):
        return x.size, lambda: activation.sigmoid_backward_numba(x, x)
    if kernel.startswith("conv layout"):   # x: the GEMM's channel-major output (C, N, OH, OW)
        bias = np.ones(x.shape[0], np.float32)
        return x.size, lambda: conv.nchw_to_channels_numba(conv.bias_to_nchw_numba(x, bias), True)
    if kernel.startswith("sgd"):
        param, buf = x.copy(), np.zeros_like(x)
        return x.size, lambda: optim.sgd_update_numba(param, x, buf, lr=0.01, momentum=0.9, dampening=0,
                                                      weight_decay=1e-5, nesterov=False, maximize=False,
                                                      first_step=False)
    if kernel.startswith("im2col"):
        geometry = ((a["k"], a["k"]), (a.get("s", 1),) * 2, (a["p"], a["p"]), (1, 1))
        cols = im2col.im2col_numba(x, *geometry)
        return cols.size, lambda: im2col.col2im_numba(im2col.im2col_numba(x, *geometry), x.shape, *geometry)
    if kernel.startswith("max_pool2d"):
        geometry = ((2, 2), (2, 2), (0, 0), (1, 1))
        out, argmax = pool.max_pool2d_forward_numba(x, *geometry)
        return out.size * 4, lambda: pool.max_pool2d_backward_numba(pool.max_pool2d_forward_numba(x, *geometry)[0],
                                                                     argmax, x.shape)
    return x.size, lambda: norm.batch_norm_backward_numba(x, norm.batch_norm_forward_numba(x, None, None, 1e-5)[1],
                                                          np.ones(x.shape[1], np.float32), None, True)


def kernel_grain(args) -> int:
    """Serial against parallel version of each kernel, in this process."""
    import numba
    from tinynet.kernels import threads
    rows = []
    for kernel, where, a in KERNEL_CASES:
        work, fn = kernel_call(kernel, a)

        def version(grain):
            def run(_round):
                with threads.grain(grain):
                    fn()
            return run
        times = harness.alternate({"serial": version(2 ** 62), "parallel": version(0)}, args.calls, 3,
                                  harness.Synchronizer("cpu"))
        serial, parallel = (harness.median(times[k]) * 1e3 for k in ("serial", "parallel"))
        rows.append({"type": "kernel", "kernel": kernel, "where": where, "shape": list(a["x"]), "work": work,
                     "serial_ms": serial, "parallel_ms": parallel, "times_s": times,
                     "numba_threads": numba.get_num_threads(), "numba_threading_layer": numba.threading_layer()})
        print(f"{kernel:<22} {where:<24} work {work:>10}  serial {serial:8.3f} ms  parallel {parallel:8.3f} ms  "
              f"{serial / parallel:5.2f}x", flush=True)
    env = harness.environment("cpu")
    stem = harness.results_stem(args.out, "cpu", "threads-kernels")
    table = harness.markdown_table(
        ["kernel", "where", "input", "work (elements)", "serial ms", "parallel ms", "serial/parallel"],
        [[r["kernel"], r["where"], "x".join(map(str, r["shape"])), r["work"], harness.fmt(r["serial_ms"], 3),
          harness.fmt(r["parallel_ms"], 3), harness.fmt(r["serial_ms"] / r["parallel_ms"], 2) + "x"] for r in rows])
    notes = [f"- `{' '.join(['python', 'benchmarks/threads.py'] + sys.argv[1:])}`",
             f"- median of {args.calls} calls per version, alternating call by call; numba "
             f"{rows[0]['numba_threads']} threads, layer {rows[0]['numba_threading_layer']}; float32. "
             f"tinynet's grain now: {threads.GRAIN} elements."]
    harness.write_markdown(stem.with_suffix(".md"), "numba CPU kernels: serial against parallel", env,
                           ["## Time per call", "", *notes, "", table])
    harness.write_jsonl(stem.with_suffix(".jsonl"), env, rows)
    print(f"wrote {stem.with_suffix('.md')}, {stem.with_suffix('.jsonl')}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--models", default="pytorch_example,lenet,lenet_resnet_conv")
    parser.add_argument("--layers", default="omp,workqueue", help="numba threading layers to try (omp, workqueue, tbb)")
    parser.add_argument("--threads", type=int, default=0, help="threads for every pool (0: library defaults)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=harness.default_data_dir())
    parser.add_argument("--out", default=str(harness.RESULTS_DIR))
    parser.add_argument("--kernels", action="store_true", help="time tinynet's numba kernels serial vs parallel instead")
    parser.add_argument("--calls", type=int, default=21, help="--kernels: calls per version")
    args = parser.parse_args(argv)
    if args.kernels:
        return kernel_grain(args)
    args.layers = [layer.strip() for layer in args.layers.split(",") if layer.strip()]
    harness.require_torch()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tinynet-threads-") as folder:
        workers = models.Workers(Path(folder))
        for spec in models.parse_models(args.models):
            train = harness.mnist_arrays(args.data_dir, spec.normalize, True)
            test = harness.mnist_arrays(args.data_dir, spec.normalize, False)
            for row in measure(spec, args, workers, train[:2], test[:2]):
                rows.append(row)
                ratio = f"{row['over_baseline']:.2f}x {row['baseline']}" if row["baseline"] else ""
                print(f"{row['model']:<18} {row['configuration']:<48} {row['median_ms']:8.2f} ms  {ratio}", flush=True)
    env = harness.environment("cpu")
    stem = harness.results_stem(args.out, "cpu", "threads" + (f"-threads{args.threads}" if args.threads else ""))
    table = harness.markdown_table(
        ["model (batch)", "configuration", "numba layer", "median ms/step", "vs alone", "noise (IQR/median)", "load (1-min)"],
        [[f"{r['model']} ({r['batch']})", r["configuration"], r["numba_threading_layer"] or "-", harness.fmt(r["median_ms"], 2),
          harness.fmt(r["over_baseline"], 2) + "x" if r["baseline"] else "", harness.fmt(r["iqr_over_median"], 2),
          f"{min(r['load_1min']):.1f}-{max(r['load_1min']):.1f}"] for r in rows])
    notes = [f"- `{' '.join(['python', 'benchmarks/threads.py'] + sys.argv[1:])}`",
             f"- {args.repeats} process(es) per configuration, taking turns; {args.steps} timed steps after "
             f"{args.warmup} warm-up steps in each; median over all timed steps. Threads: "
             + (f"{args.threads} per pool." if args.threads else "each library's default."),
             "- 'beside X': X imported first in the same process and one op run in it (its thread pool started).",
             "- load: the 1-minute load averages when the model's processes started (other processes share the machine)."]
    harness.write_markdown(stem.with_suffix(".md"), "Good neighbours: each framework alone and beside the other", env,
                           ["## Step time by configuration", "", *notes, "", table])
    harness.write_jsonl(stem.with_suffix(".jsonl"), env, rows)
    print(f"wrote {stem.with_suffix('.md')}, {stem.with_suffix('.jsonl')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
