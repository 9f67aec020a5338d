"""Train each report model for a few steps in tinynet and in PyTorch, from the same initial
weights on the same MNIST batches, and compare step time, memory and the loss reached.

    python benchmarks/models.py --device cpu --models all --steps 20
    python benchmarks/models.py --device gpu --models lenet,vgg_bn --steps 50 --torch-compile

Per model: both frameworks build the model (tinynet's from ``examples/``, PyTorch's twin from
``torch_models.py``); PyTorch's initial ``state_dict`` is copied into tinynet; the batches are
cut from one shuffled copy of MNIST already on the device. After ``--warmup`` untimed steps,
``--steps`` training steps (forward, loss, zero_grad, backward, optimizer step) are timed with
the frameworks interleaved step by step (the order rotates every step), with a device
synchronisation around each step on the GPU. Timings are medians.

Loss check: after the timed steps both models are evaluated on the same 500 test images
(eval mode); the two losses must agree to a relative 1e-3, else the row says FAIL. The timed
steps use dropout as in training, so for the models with dropout (mlp, cnn5, pytorch_example)
the check is made in a separate run of ``--check-steps`` steps from the same initial weights
with every dropout layer in eval mode in both frameworks (``--dropout off`` makes the timed run
itself deterministic instead).

Memory (``--memory``, on by default): on the CPU each framework trains 3 steps in a fresh
process and the increase of its peak resident set size over those steps is reported; on the
GPU, CuPy's memory pool size and ``torch.cuda.max_memory_allocated``.

Framework overhead: tinynet's model runs forward + backward on a batch of 2; the number of
``Function.apply`` calls is counted by wrapping it, and two figures are reported: the tiny
step's time per op, and the time per op spent outside the ops' own ``forward``/``backward``
bodies (the engine, module calls, argument checks, gradient accumulation).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

import harness

# ------------------------------------------------------------------------- report models
CHECK_TOLERANCE = 1e-3    # float32: relative difference of the eval losses
FLOAT64_TOLERANCE = 1e-6  # the float64 rerun made when the float32 check fails


@dataclass
class ModelSpec:
    name: str
    example: str              # examples/<example>.py
    build: object             # fn(example module) -> tinynet model
    torch_build: object       # fn(torch_models module) -> torch model
    batch: int
    normalize: tuple | None
    loss: str                 # "cross_entropy" or "nll_loss" (the model ends with log_softmax)
    optimizer: str            # "SGD" or "Adam"
    optim_kwargs: dict
    report: str
    step_lr: tuple | None = None          # (step_size in epochs, gamma)
    functional_dropout: bool = False      # forward calls F.dropout(training=self.training)
    epochs: int = 1                       # the report's epochs (accuracy.py)
    extra: dict = field(default_factory=dict)


_SGD9 = dict(lr=0.01, momentum=0.9, weight_decay=1e-5)
SPECS = {s.name: s for s in [
    ModelSpec("mlp", "mlp", lambda ex: ex.mlp(), lambda tm: tm.mlp(), 128, (0.5, 0.5), "cross_entropy", "SGD",
              _SGD9, "000 MLP", step_lr=(10, 0.1), epochs=30),
    ModelSpec("cnn5", "cnn5", lambda ex: ex.cnn5(), lambda tm: tm.cnn5(), 128, (0.5, 0.5), "cross_entropy", "SGD",
              _SGD9, "000 CNN", step_lr=(5, 0.1), epochs=15),  # accuracy.py: without cnn5.py's rotation
    ModelSpec("pytorch_example", "pytorch_example", lambda ex: ex.Net(), lambda tm: tm.Net(), 64, (0.1307, 0.3081),
              "nll_loss", "SGD", dict(lr=0.01, momentum=0.5), "001", functional_dropout=True, epochs=3),
    ModelSpec("lenet", "lenet", lambda ex: ex.lenet("sigmoid"), lambda tm: tm.lenet("sigmoid"), 256, None,
              "cross_entropy", "SGD", dict(lr=0.9), "002", epochs=25),
    ModelSpec("vgg_bn", "vgg_bn", lambda ex: ex.VGGBN(), lambda tm: tm.VGGBN(), 64, None, "cross_entropy", "Adam",
              dict(lr=1e-3), "003", epochs=20),
    ModelSpec("lenet_resnet_conv", "lenet_resnet", lambda ex: ex.LeNetRes("conv"), lambda tm: tm.LeNetRes("conv"), 64,
              (0.1307, 0.3081), "cross_entropy", "SGD", dict(lr=0.001, momentum=0.9), "004 conv", epochs=10),
    ModelSpec("lenet_resnet_fc", "lenet_resnet", lambda ex: ex.LeNetRes("fc"), lambda tm: tm.LeNetRes("fc"), 64,
              (0.1307, 0.3081), "cross_entropy", "SGD", dict(lr=0.001, momentum=0.9), "004 fc", epochs=10),
]}
TRAIN_SIZE = 60000


def parse_models(text: str) -> list[ModelSpec]:
    names = list(SPECS) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SPECS]
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}; choose from all, {', '.join(SPECS)}")
    return [SPECS[n] for n in names]


# ------------------------------------------------------------------------- building pairs
def has_dropout(model, spec) -> bool:
    return spec.functional_dropout or any(type(m).__name__ in ("Dropout", "Dropout2d") for m in model.modules())


def set_dropout(model, spec, active: bool) -> None:
    """Put every dropout layer in training (``active``) or eval mode, leaving BatchNorm alone.
    A model whose forward calls ``F.dropout(training=self.training)`` gets its own top-level
    flag set too (the pytorch_example net: it has no BatchNorm, so nothing else changes)."""
    for m in model.modules():
        if type(m).__name__ in ("Dropout", "Dropout2d"):
            m.training = active
    if spec.functional_dropout:
        model.training = active


def build_tinynet(spec, device):
    import tinynet  # noqa: F401 - before the example, which imports it
    return spec.build(harness.load_example(spec.example)).to(harness.tinynet_device(device))


def build_pair(spec, device, seed=0):
    """(tinynet model, torch model) with PyTorch's initial weights copied into tinynet."""
    import numpy as np
    import tinynet
    torch = harness.require_torch()
    import torch_models
    tinynet.manual_seed(seed)
    torch.manual_seed(seed)
    torch_model = spec.torch_build(torch_models).to(torch_device(device))
    model = build_tinynet(spec, device)
    state = {k: v.detach().cpu().numpy() for k, v in torch_model.state_dict().items()}
    model.load_state_dict(state)
    for key, value in model.state_dict().items():  # the copy is exact, or the comparison means nothing
        if not np.array_equal(value.detach().cpu().numpy(), state[key]):
            raise RuntimeError(f"{spec.name}: weight {key} differs after load_state_dict")
    return model, torch_model


def torch_device(device: str) -> str:
    return "cpu" if device == "cpu" else "cuda"


class Trainer:
    """One framework's model, optimiser and loss; ``step(x, y)`` is one training step."""

    def __init__(self, framework: str, model, spec, module=None, compiled: bool = False):
        self.framework, self.model, self.spec = framework, model, spec
        if framework == "tinynet":
            import tinynet
            lib, functional = tinynet, tinynet.nn.functional
        else:
            import torch
            lib, functional = torch, torch.nn.functional
        self.lib = lib
        params = (module or model).parameters()
        self.optimizer = getattr(lib.optim, spec.optimizer)(params, **spec.optim_kwargs)
        self.scheduler = lib.optim.lr_scheduler.StepLR(self.optimizer, *spec.step_lr) if spec.step_lr else None
        self.loss_fn = getattr(functional, spec.loss)
        self.module = module or model  # the eager module (model may be a torch.compile wrapper)
        self.losses = []
        # tinynet.compile_step: the first two calls are recorded, later ones replayed (warm-up >= 2)
        self._step = lib.compile_step(self._eager_step, model=self.module, warmup=0) if compiled else self._eager_step

    def _eager_step(self, x, y):
        out = self.model(x)
        loss = self.loss_fn(out, y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def step(self, x, y):
        loss = self._step(x, y)
        self.losses.append(loss)
        return loss

    def evaluate_loss(self, x, y, dropout_active) -> float:
        """Loss on (x, y) in eval mode; then back to training mode with dropout as before."""
        self.module.eval()
        with self.lib.no_grad():
            loss = float(self.loss_fn(self.model(x), y).item())
        self.module.train()
        set_dropout(self.module, self.spec, dropout_active)
        return loss

    def train_losses(self) -> list[float]:
        return [float(v.item()) for v in self.losses]


def batches(spec, images, labels, count, device, seed=0, dtype="float32"):
    """``count`` batches for each framework: (tinynet list, torch list) of (x, y), cut from
    one shuffled copy of the images put on the device once (reshuffled for each pass)."""
    import numpy as np
    import tinynet
    import torch
    rng = np.random.default_rng(seed)
    need = count * spec.batch
    order = np.concatenate([rng.permutation(len(images)) for _ in range(math.ceil(need / len(images)))])[:need]
    x_all, y_all = images[order].astype(dtype), labels[order]
    tn_x = tinynet.tensor(x_all, device=harness.tinynet_device(device))
    tn_y = tinynet.tensor(y_all, device=harness.tinynet_device(device))
    th_x = torch.from_numpy(x_all).to(torch_device(device))
    th_y = torch.from_numpy(y_all).to(torch_device(device))
    cut = [slice(i * spec.batch, (i + 1) * spec.batch) for i in range(count)]
    return [(tn_x[s], tn_y[s]) for s in cut], [(th_x[s], th_y[s]) for s in cut]


def eval_batch(test_images, test_labels, device, n=500, dtype="float32"):
    import tinynet
    import torch
    x, y = test_images[:n].astype(dtype), test_labels[:n]
    return ((tinynet.tensor(x, device=harness.tinynet_device(device)), tinynet.tensor(y, device=harness.tinynet_device(device))),
            (torch.from_numpy(x).to(torch_device(device)), torch.from_numpy(y).to(torch_device(device))))


def relative_difference(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


# ------------------------------------------------------------------------------ overhead
def function_classes():
    from tinynet.autograd import Function
    seen, stack = [], [Function]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.append(sub)
                stack.append(sub)
    return seen


class CountApplies:
    """While active, counts ``Function.apply`` calls (wraps the classmethod temporarily)."""

    def __enter__(self):
        from tinynet.autograd import Function
        self.count, self.original = 0, Function.__dict__["apply"]
        original = self.original.__func__

        def counting(cls, *args, **kwargs):
            self.count += 1
            return original(cls, *args, **kwargs)
        Function.apply = classmethod(counting)
        return self

    def __exit__(self, *exc):
        from tinynet.autograd import Function
        Function.apply = self.original
        return False


class TimeBodies:
    """While active, adds up the time spent inside every op's ``forward`` and ``backward``."""

    def __enter__(self):
        self.seconds, self.saved = 0.0, []
        for cls in function_classes():
            for name in ("forward", "backward"):
                if isinstance(cls.__dict__.get(name), staticmethod):
                    self.saved.append((cls, name, cls.__dict__[name]))
                    setattr(cls, name, staticmethod(self._timed(cls.__dict__[name].__func__)))
        return self

    def _timed(self, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return wrapper

    def __exit__(self, *exc):
        for cls, name, original in self.saved:
            setattr(cls, name, original)
        return False


def framework_overhead(spec, device, images, labels, dropout_active, repeats=15) -> dict:
    """tinynet's per-op cost on a batch of 2 (forward + loss + backward, no optimiser step)."""
    import tinynet
    sync = harness.Synchronizer(device)
    model = build_tinynet(spec, device)
    model.train()
    set_dropout(model, spec, dropout_active)
    dev = harness.tinynet_device(device)
    x, y = tinynet.tensor(images[:2], device=dev), tinynet.tensor(labels[:2], device=dev)
    loss_fn = getattr(tinynet.nn.functional, spec.loss)

    def tiny_step():
        for p in model.parameters():
            p.grad = None
        loss_fn(model(x), y).backward()

    for _ in range(3):
        tiny_step()
    with CountApplies() as counter:
        tiny_step()
    times = [harness.timed(tiny_step, sync, "tinynet")[0] for _ in range(repeats)]
    outside = []  # per step: its time minus the time inside the ops' bodies
    with TimeBodies() as bodies:
        for _ in range(repeats):
            inside_before = bodies.seconds
            seconds, _ = harness.timed(tiny_step, sync, "tinynet")
            outside.append(max(seconds - (bodies.seconds - inside_before), 0.0))
    tiny = harness.median(times)
    return {"ops_per_step": counter.count, "tiny_step_ms": tiny * 1e3,
            "tiny_us_per_op": tiny / counter.count * 1e6,
            "engine_us_per_op": harness.median(outside) / counter.count * 1e6}


# -------------------------------------------------------------------------------- memory
def memory_worker(framework: str, spec, device: str) -> dict:
    """In a fresh process: peak memory of 3 training steps on synthetic batches. A throwaway
    copy of the model trains one step on 2 images first, so that loading compiled kernels
    (numba's cache, oneDNN's JIT) is not counted."""
    import gc

    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.standard_normal((spec.batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, spec.batch).astype(np.int64)
    if framework == "tinynet":
        import tinynet
        dev = harness.tinynet_device(device)
        make_model = lambda: build_tinynet(spec, device)  # noqa: E731
        xs, ys = tinynet.tensor(x, device=dev), tinynet.tensor(y, device=dev)
    else:
        torch = harness.require_torch()
        import torch_models
        make_model = lambda: spec.torch_build(torch_models).to(torch_device(device))  # noqa: E731
        xs, ys = torch.from_numpy(x).to(torch_device(device)), torch.from_numpy(y).to(torch_device(device))
    warm = Trainer(framework, make_model(), spec)
    warm.step(xs[:2], ys[:2])
    del warm
    gc.collect()
    trainer = Trainer(framework, make_model(), spec)
    before = harness.rss_bytes()
    exact = harness.reset_peak_rss()
    for _ in range(3):
        trainer.step(xs, ys)
    trainer.train_losses()
    peak = harness.peak_rss_bytes()
    return {"peak_mb": (peak - before) / 2 ** 20 if before is not None else None,
            "method": "VmHWM after clear_refs minus VmRSS before" if exact else "ru_maxrss minus VmRSS before"}


def cpu_memory(spec, device, threads=0) -> dict:
    """Run :func:`memory_worker` for each framework in its own process."""
    result = {}
    for framework in ("tinynet", "torch"):
        command = [sys.executable, os.path.abspath(__file__), "--memory-worker", framework, "--models", spec.name,
                   "--device", device, "--threads", str(threads)]
        # Large blocks straight from and back to the OS (glibc), so freed memory is not reused
        # unseen from the heap: the same rule for both frameworks (tinynet's own allocator
        # settings, tinynet/allocator.py, are switched off for this measurement).
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", TINYNET_MALLOC_TUNING="0")
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            result[framework] = None
            print(f"  memory worker {framework} failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        else:
            result[framework] = json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]
    return result


def gpu_memory(spec, device, tn_pair, th_pair) -> dict:
    """In this process, one framework after the other: CuPy's pool (emptied first: it keeps
    freed blocks, so its size after the steps is the peak) and torch's peak allocation."""
    import cupy
    import torch
    pool = cupy.get_default_memory_pool()
    result = {}
    tn_trainer = Trainer("tinynet", build_tinynet(spec, device), spec)
    pool.free_all_blocks()
    before = pool.total_bytes()
    for _ in range(3):
        tn_trainer.step(*tn_pair)
    harness.Synchronizer(device)("tinynet")
    result["tinynet"] = (pool.total_bytes() - before) / 2 ** 20
    del tn_trainer
    import torch_models
    th_trainer = Trainer("torch", spec.torch_build(torch_models).to("cuda"), spec)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    for _ in range(3):
        th_trainer.step(*th_pair)
    torch.cuda.synchronize()
    result["torch"] = (torch.cuda.max_memory_allocated() - before) / 2 ** 20
    return result


# ----------------------------------------------------------------------------- one model
def benchmark_model(spec, args, train_data, test_data) -> dict:
    torch = harness.require_torch()
    images, labels = train_data
    sync = harness.Synchronizer(args.device)
    tn_model, th_model = build_pair(spec, args.device, args.seed)
    compiled_copy = copy.deepcopy(th_model) if args.torch_compile else None
    dropout = has_dropout(tn_model, spec)
    dropout_active = dropout and args.dropout == "on"
    trainers = {"tinynet": Trainer("tinynet", tn_model, spec), "torch": Trainer("torch", th_model, spec)}
    if args.compile:  # tinynet.compile_step on a second copy of the same initial weights
        tn_copy = build_tinynet(spec, args.device)
        tn_copy.load_state_dict(tn_model.state_dict())
        trainers["tinynet compiled"] = Trainer("tinynet", tn_copy, spec, compiled=True)
    if compiled_copy is not None:
        trainers["torch.compile"] = Trainer("torch.compile", torch.compile(compiled_copy), spec, module=compiled_copy)
    for trainer in trainers.values():
        trainer.module.train()
        set_dropout(trainer.module, spec, dropout_active)

    tn_batches, th_batches = batches(spec, images, labels, args.warmup + args.steps, args.device, args.seed)

    def step_fn(name):
        trainer, data = trainers[name], (tn_batches if name.startswith("tinynet") else th_batches)
        return lambda r: trainer.step(*data[r + args.warmup])

    times = harness.alternate({name: step_fn(name) for name in trainers}, args.steps, args.warmup, sync)
    (tn_eval, th_eval) = eval_batch(*test_data, args.device)
    losses = {name: t.evaluate_loss(*(tn_eval if name.startswith("tinynet") else th_eval), dropout_active)
              for name, t in trainers.items()}
    train_losses = {name: t.train_losses() for name, t in trainers.items()}
    row = {"type": "model", "model": spec.name, "report": spec.report, "batch": spec.batch,
           "steps": args.steps, "warmup": args.warmup, "steps_per_epoch": math.ceil(TRAIN_SIZE / spec.batch),
           "dropout_in_timed_run": dropout_active, "times_s": times}
    for name, t in times.items():
        med = harness.median(t)
        row[name] = {"median_ms": med * 1e3, "steps_per_s": 1 / med, "epoch_s": med * row["steps_per_epoch"],
                     "iqr_over_median": harness.spread(t), "eval_loss": losses[name],
                     "last_train_loss": train_losses[name][-1]}
    row["ratio"] = row["tinynet"]["median_ms"] / row["torch"]["median_ms"]
    if "torch.compile" in row:
        row["ratio_compile"] = row["tinynet"]["median_ms"] / row["torch.compile"]["median_ms"]
    if "tinynet compiled" in row:
        compiled, last = trainers["tinynet compiled"]._step, tn_batches[-1]
        if compiled.fallback_reason(*last) is not None:
            raise RuntimeError(f"{spec.name}: compile_step fell back to eager: {compiled.fallback_reason(*last)}")
        row["tinynet compiled"]["instructions"] = len(compiled.program(*last))
        # On a GPU the compiled step is one CUDA graph launch, unless its capture failed (why):
        row["tinynet compiled"]["cuda_graph"] = compiled.graph(*last) is not None or compiled.graph_fallback_reason(*last)
        row["ratio_tinynet_compiled"] = row["tinynet compiled"]["median_ms"] / row["torch"]["median_ms"]
        row["compiled_over_eager"] = row["tinynet compiled"]["median_ms"] / row["tinynet"]["median_ms"]

    # The loss check: on the timed run when it is deterministic, else on a dropout-free rerun.
    if not dropout_active:
        check = {"run": "timed run", "tinynet": losses["tinynet"], "torch": losses["torch"],
                 "train_max_rel": max(relative_difference(a, b) for a, b in
                                      zip(train_losses["tinynet"], train_losses["torch"]))}
    else:
        check = check_run(spec, args, train_data, test_data, args.check_steps, args.seed + 1)
    check["rel_diff"] = relative_difference(check["tinynet"], check["torch"])
    check["pass"] = bool(check["rel_diff"] < CHECK_TOLERANCE)
    if not check["pass"]:
        # Rounding or a real difference? Rerun the same steps in float64: if the two agree
        # there, float32 rounding was amplified by training (Adam does that); if not, a bug.
        same = (args.warmup + args.steps, args.seed) if check["run"] == "timed run" else (args.check_steps, args.seed + 1)
        f64 = check_run(spec, args, train_data, test_data, *same, dtype="float64")
        f64["rel_diff"] = relative_difference(f64["tinynet"], f64["torch"])
        f64["pass"] = bool(f64["rel_diff"] < FLOAT64_TOLERANCE)
        check["float64"] = f64
    row["loss_check"] = check

    row["overhead"] = framework_overhead(spec, args.device, images, labels, dropout_active)
    row["overhead"]["engine_share_of_step"] = (row["overhead"]["engine_us_per_op"] * row["overhead"]["ops_per_step"]
                                               / 1e3 / row["tinynet"]["median_ms"])
    if args.memory:
        if args.device == "cpu":
            row["peak_mb"] = cpu_memory(spec, args.device, args.threads)
        else:
            row["peak_mb"] = gpu_memory(spec, args.device, tn_batches[0], th_batches[0])
    else:
        row["peak_mb"] = {"tinynet": None, "torch": None}
    return row


def check_run(spec, args, train_data, test_data, steps, batch_seed, dtype="float32") -> dict:
    """``steps`` untimed steps from fresh copies of the same initial weights, with every
    dropout layer in eval mode in both frameworks, in ``dtype``; returns the eval losses."""
    import tinynet
    tn_model, th_model = build_pair(spec, args.device, args.seed)
    if dtype == "float64":
        tn_model.to(tinynet.float64)
        th_model.double()
    trainers = {"tinynet": Trainer("tinynet", tn_model, spec), "torch": Trainer("torch", th_model, spec)}
    tn_batches, th_batches = batches(spec, *train_data, steps, args.device, batch_seed, dtype)
    tn_eval, th_eval = eval_batch(*test_data, args.device, dtype=dtype)
    result = {"run": f"separate {steps}-step run, dropout layers in eval mode"}
    for name, trainer in trainers.items():
        trainer.module.train()
        set_dropout(trainer.module, spec, False)
        for x, y in (tn_batches if name == "tinynet" else th_batches):
            trainer.step(x, y)
        result[name] = trainer.evaluate_loss(*(tn_eval if name == "tinynet" else th_eval), False)
    result["train_max_rel"] = max(relative_difference(a, b) for a, b in
                                  zip(trainers["tinynet"].train_losses(), trainers["torch"].train_losses()))
    return result


# ------------------------------------------------------------------------------- results
def check_label(c) -> str:
    if c["pass"]:
        return "PASS"
    f64 = c.get("float64")
    if f64 is None:
        return "**FAIL**"
    return f"**FAIL** (float64 rerun: rel diff {f64['rel_diff']:.1e}, {'PASS' if f64['pass'] else '**FAIL**'})"


def write_results(rows, env, args, data_note) -> list:
    stem = harness.results_stem(args.out, args.device, "models" + (f"-threads{args.threads}" if args.threads else ""))
    compile_on = any("torch.compile" in r for r in rows)
    tn_compiled = any("tinynet compiled" in r for r in rows)
    speed_header = ["model", "batch", "tinynet ms/step", "torch ms/step", "tinynet/torch"]
    if tn_compiled:
        speed_header += ["tinynet compiled ms/step", "compiled/torch", "compiled/eager"]
    if compile_on:
        speed_header += ["torch.compile ms/step", "tinynet/compile"]
    speed_header += ["tinynet steps/s", "torch steps/s", "tinynet s/epoch", "torch s/epoch",
                     "peak MB tinynet", "peak MB torch", "noise (IQR/median) tinynet, torch"]
    speed, check, overhead = [], [], []
    for r in rows:
        line = [r["model"], r["batch"], harness.fmt(r["tinynet"]["median_ms"], 1), harness.fmt(r["torch"]["median_ms"], 1),
                harness.fmt(r["ratio"], 2) + "x"]
        if tn_compiled:
            line += [harness.fmt(r["tinynet compiled"]["median_ms"], 1), harness.fmt(r["ratio_tinynet_compiled"], 2) + "x",
                     harness.fmt(r["compiled_over_eager"], 2) + "x"]
        if compile_on:
            c = r.get("torch.compile")
            line += [harness.fmt(c["median_ms"], 1) if c else "n/a", harness.fmt(r.get("ratio_compile"), 2) + "x"]
        line += [harness.fmt(r["tinynet"]["steps_per_s"], 2), harness.fmt(r["torch"]["steps_per_s"], 2),
                 harness.fmt(r["tinynet"]["epoch_s"], 0), harness.fmt(r["torch"]["epoch_s"], 0),
                 harness.fmt(r["peak_mb"]["tinynet"], 0), harness.fmt(r["peak_mb"]["torch"], 0),
                 f"{harness.fmt(r['tinynet']['iqr_over_median'], 2)}, {harness.fmt(r['torch']['iqr_over_median'], 2)}"]
        speed.append(line)
        c = r["loss_check"]
        check.append([r["model"], f"{c['tinynet']:.6f}", f"{c['torch']:.6f}", f"{c['rel_diff']:.1e}",
                      f"{c['train_max_rel']:.1e}", check_label(c), c["run"]]
                     + ([harness.fmt(r.get("torch.compile", {}).get("eval_loss"), 6)] if compile_on else []))
        o = r["overhead"]
        overhead.append([r["model"], o["ops_per_step"], harness.fmt(o["tiny_step_ms"], 2), harness.fmt(o["tiny_us_per_op"], 1),
                         harness.fmt(o["engine_us_per_op"], 1), harness.fmt(100 * o["engine_share_of_step"], 1) + "%"])
    notes = [
        f"- `{' '.join(['python', 'benchmarks/models.py'] + sys.argv[1:])}`",
        f"- data: {data_note}",
        f"- {args.steps} timed steps after {args.warmup} warm-up steps, frameworks interleaved step by step "
        f"(order rotating); median step time; s/epoch = steps per epoch (60000 / batch) x median."
        + (" GPU: synchronised before and after every step." if args.device != "cpu" else ""),
        f"- dropout in the timed run: {'as in training' if args.dropout == 'on' else 'off (eval mode)'}.",
        "- peak MB: " + ("increase of the process's peak RSS over 3 training steps (gradients, optimiser state, "
                         "activations, temporaries; not the weights), each framework in a fresh process on a synthetic "
                         "batch, after a throwaway warm-up step that loads the compiled kernels." if args.device == "cpu" else
                         "CuPy memory-pool growth / torch.cuda.max_memory_allocated over 3 steps."),
        "- noise: interquartile range of the step times over their median (other processes share the machine).",
    ]
    sections = ["## Step time", "", *notes, "", harness.markdown_table(speed_header, speed), "",
                "## Loss check", "",
                f"Eval loss on 500 test images after the steps, both frameworks from the same initial weights on the "
                f"same batches; PASS when the relative difference is below {CHECK_TOLERANCE:g}. "
                "'train max rel' is the largest relative difference of the per-step training losses. "
                f"A float32 FAIL is followed by a float64 rerun of the same steps (tolerance {FLOAT64_TOLERANCE:g}): "
                "agreement there means the float32 gap is rounding amplified by training, not a different "
                "computation.", "",
                harness.markdown_table(["model", "tinynet loss", "torch loss", "rel diff", "train max rel", "check", "run"]
                                       + (["torch.compile loss (timed run)"] if compile_on else []), check), "",
                "## tinynet framework overhead", "",
                "Forward + loss + backward of tinynet's model on a batch of 2. ops = `Function.apply` calls per step; "
                "µs/op (tiny) = tiny step time / ops; engine µs/op = time outside the ops' forward/backward bodies / "
                "ops; engine share = engine µs/op x ops / the full step's median time.", "",
                harness.markdown_table(["model", "ops/step", "tiny step ms", "µs/op (tiny)", "engine µs/op",
                                        "engine share of step"], overhead)]
    harness.write_markdown(stem.with_suffix(".md"), f"tinynet vs PyTorch: report models, {args.device}", env, sections)
    harness.write_jsonl(stem.with_suffix(".jsonl"), env, rows)
    series = {"tinynet": [r["tinynet"]["median_ms"] for r in rows], "torch": [r["torch"]["median_ms"] for r in rows]}
    if tn_compiled:
        series["tinynet compiled"] = [r["tinynet compiled"]["median_ms"] for r in rows]
    if compile_on:
        series["torch.compile"] = [r.get("torch.compile", {}).get("median_ms") for r in rows]
    harness.bar_chart(stem.with_suffix(".png"), [r["model"] for r in rows], series, "median ms per training step (log)",
                      f"training step, {args.device} ({env['cpu'] if args.device == 'cpu' else env.get('gpu')}), "
                      f"{f'{args.threads} thread(s) per pool' if args.threads else 'default threads'}", log=True)
    return [stem.with_suffix(s) for s in (".jsonl", ".md", ".png")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--models", default="all", help="all, or a comma-separated list of " + ", ".join(SPECS))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per framework")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--epochs", type=float, default=None,
                        help="time this many epochs' worth of steps instead of --steps (ceil(60000/batch) per epoch)")
    parser.add_argument("--check-steps", type=int, default=5, help="steps of the dropout-free loss-check run")
    parser.add_argument("--dropout", choices=["on", "off"], default="on", help="dropout in the timed run")
    parser.add_argument("--torch-compile", action="store_true", help="add a torch.compile column (slow to compile)")
    parser.add_argument("--compile", action="store_true",
                        help="add a column for tinynet.compile_step (the step recorded once and replayed)")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory measurement")
    parser.add_argument("--data-dir", default=harness.default_data_dir(), help="folder with the MNIST files")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads for every pool (OpenBLAS, numba, OpenMP, torch); 0 keeps each library's default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(harness.RESULTS_DIR), help="folder for the .jsonl, .md and .png")
    parser.add_argument("--memory-worker", choices=["tinynet", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    specs = parse_models(args.models)
    if args.compile and args.warmup < 2:
        parser.error("--compile needs --warmup 2 or more (compile_step records the first two steps)")
    harness.set_threads(args.threads)  # before NumPy, numba or torch start their pools
    if args.memory_worker:  # a child of cpu_memory(): only the framework it measures is imported
        print(json.dumps(memory_worker(args.memory_worker, specs[0], args.device)))
        return 0
    tinynet, torch = harness.import_frameworks()  # in this order: see there
    if args.device == "gpu" and not tinynet.cuda.is_available():
        raise SystemExit("--device gpu: CuPy does not see a GPU (pip install -e .[cuda12])")
    cache = {}

    def data(normalize, train):
        if (normalize, train) not in cache:
            cache[normalize, train] = harness.mnist_arrays(args.data_dir, normalize, train)
        return cache[normalize, train]

    rows = []
    for spec in specs:
        train_images, labels, note = data(spec.normalize, True)
        test_images, test_labels, _ = data(spec.normalize, False)
        spec_args = copy.copy(args)
        if args.epochs is not None:
            spec_args.steps = max(1, round(args.epochs * math.ceil(TRAIN_SIZE / spec.batch)))
        print(f"{spec.name}: {spec_args.steps} steps of batch {spec.batch} ...", flush=True)
        row = benchmark_model(spec, spec_args, (train_images, labels), (test_images, test_labels))
        c = row["loss_check"]
        compiled = (f", tinynet compiled {row['tinynet compiled']['median_ms']:.1f} ms/step "
                    f"({row['ratio_tinynet_compiled']:.2f}x)") if "tinynet compiled" in row else ""
        print(f"  tinynet {row['tinynet']['median_ms']:.1f} ms/step, torch {row['torch']['median_ms']:.1f} ms/step "
              f"({row['ratio']:.2f}x){compiled}; loss {c['tinynet']:.6f} vs {c['torch']:.6f} "
              f"(rel {c['rel_diff']:.1e}) {check_label(c).replace('*', '')}", flush=True)
        rows.append(row)
    env = harness.environment(args.device)
    env["torch_threads"] = torch.get_num_threads()
    paths = write_results(rows, env, args, note)
    print("wrote " + ", ".join(str(p) for p in paths))
    # Exit status 1 only for a real disagreement: a float32 FAIL whose float64 rerun fails too.
    return 0 if all(r["loss_check"]["pass"] or r["loss_check"]["float64"]["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
