"""Time single ops, forward + backward, at the report models' shapes: tinynet against PyTorch.

    python benchmarks/ops.py --device cpu [--repeats 15] [--quick]

Ops: conv2d, max_pool2d, batch_norm (training mode), linear, cross_entropy and dropout, each
forward and then backward from a fixed random output gradient (the gradients of every input
that takes one); and the optimiser updates the report models use: an SGD step over the MLP's
and LeNet's parameters, an Adam step over the VGG-like CNN's. Both frameworks get the same
float32 arrays (made from the same seeds). Each framework runs alone in its own process, as in
``models.py``: in one process numba's and PyTorch's thread pools compete for the cores, and at
the default threads that distorted both sides (LeNet's second convolution timed 1.73x PyTorch's
there against 1.12x alone, 2026-12-05). ``--processes`` processes per framework take turns
(the order flipping each time); in each, every case runs ``--repeats`` timed calls after
``--warmup`` untimed ones, and each time is the median over all processes' calls (GPU:
synchronised before and after each call). ``--quick`` runs one small shape per op with 3
repeats in one process each (the smoke test uses it).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import harness

# name, op, model where the shape occurs, arguments; ``quick`` marks the cases of --quick.
CASES = [
    ("conv2d", "lenet conv1", dict(x=(256, 1, 28, 28), w=(6, 1, 5, 5))),
    ("conv2d", "lenet conv2", dict(x=(256, 6, 12, 12), w=(16, 6, 5, 5)), "quick"),
    ("conv2d", "pytorch_example conv2", dict(x=(64, 10, 12, 12), w=(20, 10, 5, 5))),
    ("conv2d", "vgg_bn conv2", dict(x=(64, 32, 14, 14), w=(128, 32, 3, 3), padding=1)),
    ("conv2d", "vgg_bn conv3", dict(x=(64, 128, 7, 7), w=(512, 128, 3, 3), padding=1)),
    ("conv2d", "cnn5 conv2", dict(x=(128, 64, 28, 28), w=(256, 64, 3, 3), stride=2, padding=1)),
    ("conv2d", "cnn5 conv4", dict(x=(128, 512, 7, 7), w=(1024, 512, 3, 3), stride=2, padding=1)),
    ("max_pool2d", "lenet pool1", dict(x=(256, 6, 24, 24)), "quick"),
    ("max_pool2d", "vgg_bn pool1", dict(x=(64, 32, 28, 28))),
    ("batch_norm", "vgg_bn bn2", dict(x=(64, 128, 14, 14)), "quick"),
    ("batch_norm", "cnn5 bn2", dict(x=(128, 256, 14, 14))),
    ("linear", "lenet fc1", dict(x=(256, 256), w=(120, 256)), "quick"),
    ("linear", "mlp fc2", dict(x=(128, 1024), w=(2048, 1024))),
    ("linear", "vgg_bn fc1", dict(x=(64, 25088), w=(1024, 25088))),
    ("cross_entropy", "mlp/cnn5 loss", dict(x=(128, 10)), "quick"),
    ("cross_entropy", "lenet loss", dict(x=(256, 10))),
    ("dropout", "mlp p=0.2", dict(x=(128, 2048), p=0.2), "quick"),
    ("dropout", "cnn5 p=0.2", dict(x=(128, 64, 28, 28), p=0.2)),
    ("SGD step", "lenet, lr 0.9", dict(model="lenet", kwargs=dict(lr=0.9)), "quick"),
    ("SGD step", "mlp, momentum 0.9, wd 1e-5", dict(model="mlp", kwargs=dict(lr=0.01, momentum=0.9, weight_decay=1e-5))),
    ("Adam step", "vgg_bn, lr 1e-3", dict(model="vgg_bn", kwargs=dict(lr=1e-3))),
    ("Adam step", "lenet, lr 1e-3 (quick)", dict(model="lenet", kwargs=dict(lr=1e-3)), "quick-only"),
]


def make_arrays(op, a, rng):
    """The NumPy inputs of one case: {name: array} plus the output gradient under 'grad'."""
    import numpy as np
    f32 = lambda shape: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
    if op == "conv2d":
        x, w = f32(a["x"]), f32(a["w"]) * 0.1
        n, _, h, width = a["x"]
        k, s, p = a["w"][2], a.get("stride", 1), a.get("padding", 0)
        oh, ow = (h + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1
        return {"x": x, "w": w, "b": f32(a["w"][:1]), "grad": f32((n, a["w"][0], oh, ow))}
    if op == "max_pool2d":
        n, c, h, w = a["x"]
        return {"x": f32(a["x"]), "grad": f32((n, c, h // 2, w // 2))}
    if op == "batch_norm":
        c = a["x"][1]
        return {"x": f32(a["x"]), "w": np.ones(c, np.float32), "b": np.zeros(c, np.float32),
                "rm": np.zeros(c, np.float32), "rv": np.ones(c, np.float32), "grad": f32(a["x"])}
    if op == "linear":
        return {"x": f32(a["x"]), "w": f32(a["w"]) * 0.05, "b": f32(a["w"][:1]), "grad": f32((a["x"][0], a["w"][0]))}
    if op == "cross_entropy":
        return {"x": f32(a["x"]), "y": rng.integers(0, a["x"][1], a["x"][0]).astype(np.int64)}
    if op == "dropout":
        return {"x": f32(a["x"]), "grad": f32(a["x"])}
    raise ValueError(op)


GRAD_INPUTS = {"x", "w", "b"}  # inputs that take a gradient (running stats and labels do not)


def op_step(framework, op, a, arrays, device):
    """fn(round) running one forward + backward of ``op`` in ``framework``."""
    import numpy as np
    if framework == "tinynet":
        import tinynet
        F = tinynet.nn.functional
        dev = harness.tinynet_device(device)
        make = lambda arr, grad: tinynet.tensor(arr, device=dev, requires_grad=grad)  # noqa: E731
    else:
        import torch
        F = torch.nn.functional
        dev = "cpu" if device == "cpu" else "cuda"
        make = lambda arr, grad: torch.from_numpy(np.array(arr)).to(dev).requires_grad_(grad)  # noqa: E731
    t = {k: make(v, k in GRAD_INPUTS) for k, v in arrays.items()}
    leaves = [t[k] for k in ("x", "w", "b") if k in t]
    if op == "conv2d":
        forward = lambda: F.conv2d(t["x"], t["w"], t["b"], stride=a.get("stride", 1), padding=a.get("padding", 0))  # noqa: E731
    elif op == "max_pool2d":
        forward = lambda: F.max_pool2d(t["x"], 2)  # noqa: E731
    elif op == "batch_norm":
        forward = lambda: F.batch_norm(t["x"], t["rm"], t["rv"], t["w"], t["b"], training=True)  # noqa: E731
    elif op == "linear":
        forward = lambda: F.linear(t["x"], t["w"], t["b"])  # noqa: E731
    elif op == "cross_entropy":
        forward = lambda: F.cross_entropy(t["x"], t["y"])  # noqa: E731
    elif op == "dropout":
        forward = lambda: F.dropout(t["x"], a["p"], training=True)  # noqa: E731

    def step(_round):
        for leaf in leaves:
            leaf.grad = None
        out = forward()
        if "grad" in t:
            out.backward(t["grad"])
        else:
            out.backward()
    return step


def optimizer_step(framework, op, a, device, seed=0):
    """fn(round) running one optimiser step over a report model's parameters (fixed grads)."""
    import numpy as np
    import models
    spec = models.SPECS[a["model"]]
    shapes = [tuple(p.shape) for p in models.build_tinynet(spec, "cpu").parameters()]
    rng = np.random.default_rng(seed)
    values = [(rng.standard_normal(s, dtype=np.float32), rng.standard_normal(s, dtype=np.float32)) for s in shapes]
    name = "SGD" if op.startswith("SGD") else "Adam"
    if framework == "tinynet":
        import tinynet
        dev = harness.tinynet_device(device)
        params = [tinynet.nn.Parameter(tinynet.tensor(v, device=dev)) for v, _ in values]
        for p, (_, g) in zip(params, values):
            p.grad = tinynet.tensor(g, device=dev)
        optimizer = getattr(tinynet.optim, name)(params, **a["kwargs"])
    else:
        import torch
        dev = "cpu" if device == "cpu" else "cuda"
        params = [torch.nn.Parameter(torch.from_numpy(v).to(dev)) for v, _ in values]
        for p, (_, g) in zip(params, values):
            p.grad = torch.from_numpy(g).to(dev)
        optimizer = getattr(torch.optim, name)(params, **a["kwargs"])
    n = sum(int(np.prod(s)) for s in shapes)
    return (lambda _round: optimizer.step()), n


def describe(op, a) -> str:
    if "model" in a:
        return ""
    shape = "x".join(map(str, a["x"]))
    if op == "conv2d":
        w = a["w"]
        extra = "".join(f" {k[0]}{a[k]}" for k in ("stride", "padding") if k in a)
        return f"{shape} -> {w[0]}, k{w[2]}{extra}"
    if op == "linear":
        return f"{shape} -> {a['w'][0]}"
    return shape


def selected_cases(quick: bool) -> list:
    return [c for c in CASES if ("quick" in c[3:] or "quick-only" in c[3:])] if quick \
        else [c for c in CASES if "quick-only" not in c[3:]]


def run_worker(framework: str, args) -> dict:
    """In a process of its own: time every case with one framework. Returns {"times": [list of
    seconds per case], "shapes": [...], "threads": the pools' threads}."""
    import numpy as np
    sync = harness.Synchronizer(args.device)
    times, shapes = [], []
    for i, (op, where, a, *_) in enumerate(selected_cases(args.quick)):
        if op.endswith("step"):
            step, n = optimizer_step(framework, op, a, args.device)
            shapes.append(f"{n / 1e6:.2f}M parameters")
        else:
            step = op_step(framework, op, a, make_arrays(op, a, np.random.default_rng(i)), args.device)
            shapes.append(describe(op, a))
        times.append(harness.alternate({framework: step}, args.repeats, args.warmup, sync)[framework])
    if framework == "tinynet":
        import numba
        threads = {"numba_threads": numba.get_num_threads(), "numba_threading_layer": numba.threading_layer()}
    else:
        import torch
        threads = {"torch_threads": torch.get_num_threads()}
    return {"times": times, "shapes": shapes, "threads": threads}


def spawn(framework: str, args) -> dict:
    """One worker process (this script with ``--worker``), its pools limited by ``--threads``."""
    import models
    command = [sys.executable, __file__, "--worker", framework, "--device", args.device, "--repeats", str(args.repeats),
               "--warmup", str(args.warmup), "--threads", str(args.threads)] + (["--quick"] if args.quick else [])
    done = subprocess.run(command, capture_output=True, text=True, env=models.thread_environment(args.threads))
    if done.returncode != 0:
        raise RuntimeError(f"the {framework} process failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per case in each process")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2, help="processes per framework, taking turns")
    parser.add_argument("--quick", action="store_true", help="one small shape per op, 3 repeats, one process each")
    parser.add_argument("--threads", type=int, default=0, help="threads for every pool (0: library defaults)")
    parser.add_argument("--out", default=str(harness.RESULTS_DIR))
    parser.add_argument("--worker", choices=["tinynet", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup, args.processes = 3, 1, 1
    harness.set_threads(args.threads)
    if args.worker:
        print(json.dumps(run_worker(args.worker, args)))
        return 0
    tinynet, _ = harness.import_frameworks()  # both installed (else: how to install, exit 2)
    if args.device == "gpu" and not tinynet.cuda.is_available():
        raise SystemExit("--device gpu: CuPy does not see a GPU (pip install -e .[cuda12])")
    runs = {"tinynet": [], "torch": []}
    for p in range(args.processes):
        for framework in (("tinynet", "torch") if p % 2 == 0 else ("torch", "tinynet")):
            runs[framework].append(spawn(framework, args))
    rows = []
    for i, (op, where, a, *_) in enumerate(selected_cases(args.quick)):
        times = {fw: [t for run in runs[fw] for t in run["times"][i]] for fw in runs}
        shape = runs["tinynet"][0]["shapes"][i]
        row = {"type": "op", "op": op, "where": where, "shape": shape, "times_s": times,
               "tinynet_ms": harness.median(times["tinynet"]) * 1e3, "torch_ms": harness.median(times["torch"]) * 1e3,
               "noise": {k: harness.spread(v) for k, v in times.items()}}
        row["ratio"] = row["tinynet_ms"] / row["torch_ms"]
        rows.append(row)
        print(f"{op:<14} {where:<28} {shape:<34} tinynet {row['tinynet_ms']:9.3f} ms  torch {row['torch_ms']:9.3f} ms"
              f"  {row['ratio']:6.2f}x", flush=True)

    env = harness.environment(args.device)
    stem = harness.results_stem(args.out, args.device, ("ops-quick" if args.quick else "ops")
                                 + (f"-threads{args.threads}" if args.threads else ""))
    table = harness.markdown_table(
        ["op", "where", "shape", "tinynet ms", "torch ms", "tinynet/torch", "noise tinynet, torch"],
        [[r["op"], r["where"], r["shape"], harness.fmt(r["tinynet_ms"], 3), harness.fmt(r["torch_ms"], 3),
          harness.fmt(r["ratio"], 2) + "x", f"{harness.fmt(r['noise']['tinynet'], 2)}, {harness.fmt(r['noise']['torch'], 2)}"]
         for r in rows])
    notes = [f"- `{' '.join(['python', 'benchmarks/ops.py'] + sys.argv[1:])}`",
             f"- forward + backward (gradients of input, weight, bias where the op has them) per call; optimiser rows: "
             f"one step() with fixed gradients. Each framework alone in its own process, {args.processes} "
             f"process(es) each, taking turns; in each, {args.repeats} timed calls per case after {args.warmup} "
             "warm-up calls; the median over all of them; float32.",
             "- threads in the worker processes: " + ", ".join(
                 f"{fw} {runs[fw][0]['threads']}" for fw in runs),
             "- noise: interquartile range of the call times over their median."]
    harness.write_markdown(stem.with_suffix(".md"), f"tinynet vs PyTorch: single ops, {args.device}", env,
                           ["## Forward + backward per op", "", *notes, "", table])
    harness.write_jsonl(stem.with_suffix(".jsonl"), env, rows)
    labels = [f"{r['op']} {r['where']}" for r in rows]
    harness.bar_chart(stem.with_suffix(".png"), labels, {"tinynet": [r["tinynet_ms"] for r in rows],
                                                         "torch": [r["torch_ms"] for r in rows]},
                      "median ms per call (log)", f"forward + backward per op, {args.device}, "
                      f"{f'{args.threads} thread(s) per pool' if args.threads else 'default threads'}", log=True)
    print("wrote " + ", ".join(str(stem.with_suffix(s)) for s in (".jsonl", ".md", ".png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
