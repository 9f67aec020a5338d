"""Train each report model for a few steps in tinynet and in PyTorch, each framework alone in its
own process, from the same initial weights on the same MNIST batches, and compare step time,
memory and the loss reached.

    python benchmarks/models.py --device cpu --models all --steps 20 --threads 0,1
    python benchmarks/models.py --device gpu --models lenet,vgg_bn --steps 50 --torch-compile

Per model, this process builds PyTorch's twin (``torch_models.py``) with a fixed seed and saves
its initial ``state_dict`` (the keys are the same in tinynet) to a ``.npz``; it cuts the batches
from one shuffled copy of MNIST and saves them too. Then each framework trains in a process of
its own (``model_worker.py``), which imports only that framework: it loads the weights and the
batches, runs ``--warmup`` untimed and ``--steps`` timed training steps (forward, loss,
zero_grad, backward, optimizer step; GPU: synchronised before and after each step) and reports
every step time. The two frameworks' processes alternate, ``--repeats`` times each (the order
flips from repeat to repeat), at every thread setting of ``--threads`` (0: each library's
default; ``--threads 0,1`` runs both), so load from other processes falls on both alike. Times
are medians over all steps of all repeats.

Loss check: after the timed steps both models are evaluated on the same 500 test images (eval
mode); the two processes' losses must agree to a relative 1e-3, else the row says FAIL. The
timed steps use dropout as in training, so for the models with dropout (mlp, cnn5,
pytorch_example) the check is made in a separate run of ``--check-steps`` steps from the same
initial weights with every dropout layer in eval mode in both frameworks (``--dropout off``
makes the timed run itself deterministic instead). A float32 FAIL is followed by a float64
rerun of the same steps. On a GPU, TF32 is off in both frameworks (``--tf32 on``: on in both,
``torch.backends`` and ``tinynet.backends.allow_tf32``), so that they compute alike.

Memory (``--memory``, on by default): each framework trains 3 steps in yet another fresh
process; on the CPU the increase of its peak resident set size, on the GPU CuPy's memory pool
and ``torch.cuda.max_memory_allocated``.

Framework overhead: tinynet's model runs forward + backward on a batch of 2; the number of
``Function.apply`` calls is counted by wrapping it, and two figures are reported: the tiny
step's time per op, and the time per op spent outside the ops' own ``forward``/``backward``
bodies (the engine, module calls, argument checks, gradient accumulation).

``--neighbour`` makes each framework's process import the other framework first and run one
small op in it (its thread pool started): the cost of sharing a process with it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import harness

WORKER = Path(__file__).resolve().parent / "model_worker.py"


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



# ------------------------------------------------------------------------- building models
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


def torch_twin(spec, seed=0):
    """PyTorch's twin of the model on the CPU, initialised from ``seed``."""
    torch = harness.require_torch()
    import torch_models
    torch.manual_seed(seed)
    return spec.torch_build(torch_models)


def initial_state(torch_model) -> dict:
    """A model's ``state_dict`` as NumPy arrays (tinynet and PyTorch share the keys)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in torch_model.state_dict().items()}


def model_from_state(framework: str, spec, device: str, state: dict, dtype: str = "float32"):
    """The framework's model with the weights of ``state`` (the copy is checked bit for bit in
    tinynet: the comparison means nothing otherwise), in ``dtype``."""
    import numpy as np
    if framework == "tinynet":
        import tinynet
        model = build_tinynet(spec, device)
        model.load_state_dict(state)
        for key, value in model.state_dict().items():
            if not np.array_equal(value.detach().cpu().numpy(), state[key]):
                raise RuntimeError(f"{spec.name}: weight {key} differs after load_state_dict")
        return model.to(tinynet.float64) if dtype == "float64" else model
    torch = harness.require_torch()
    model = torch_twin(spec)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    model = model.to(torch_device(device))
    return model.double() if dtype == "float64" else model


def build_pair(spec, device, seed=0):
    """(tinynet model, torch model) in one process, both with PyTorch's initial weights
    (``accuracy.py``); both frameworks' generators seeded with ``seed``."""
    import tinynet
    state = initial_state(torch_twin(spec, seed))
    tinynet.manual_seed(seed)
    harness.require_torch().manual_seed(seed)
    return model_from_state("tinynet", spec, device, state), model_from_state("torch", spec, device, state)


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



def relative_difference(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


# ------------------------------------------------------------------------------ processes
def thread_environment(threads: int, extra: dict | None = None) -> dict:
    """This process's environment for a worker: every pool limited to ``threads`` (0: as the
    user launched us, so each library picks its default)."""
    env = dict(os.environ, **(extra or {}))
    if threads:
        env.update({var: str(threads) for var in harness.POOL_VARIABLES})
    return env


class Workers:
    """Starts ``model_worker.py`` processes, one job each, in a temporary folder that also holds
    the weights and batches they share."""

    def __init__(self, folder: Path):
        self.folder, self.count = folder, 0

    def path(self, name: str) -> str:
        return str(self.folder / name)

    def run(self, job: dict, extra_env: dict | None = None) -> dict:
        self.count += 1
        job = dict(job, out=self.path(f"result-{self.count}.json"))
        job_path = self.folder / f"job-{self.count}.json"
        job_path.write_text(json.dumps(job))
        done = subprocess.run([sys.executable, str(WORKER), str(job_path)], capture_output=True, text=True,
                              env=thread_environment(job["threads"], extra_env))
        if done.returncode != 0:
            raise RuntimeError(f"{job['model']}: the {job['framework']} process failed:\n{done.stderr[-4000:]}")
        return json.loads(Path(job["out"]).read_text())


def save_batches(path: str, images, labels, count: int, batch: int, seed: int) -> None:
    """``count`` batches cut from one shuffled copy of the images (reshuffled for each pass),
    saved for both frameworks' processes."""
    import numpy as np
    rng = np.random.default_rng(seed)
    need = count * batch
    order = np.concatenate([rng.permutation(len(images)) for _ in range(math.ceil(need / len(images)))])[:need]
    np.savez(path, x=images[order], y=labels[order])


# ----------------------------------------------------------------------------- one model
def benchmark_model(spec, args, train_data, test_data, workers: Workers) -> list[dict]:
    """One row per thread setting: both frameworks' step times, the loss check, the overhead."""
    import numpy as np
    twin = torch_twin(spec, args.seed)
    dropout_active = has_dropout(twin, spec) and args.dropout == "on"
    name = spec.name
    np.savez(workers.path(f"{name}-init.npz"), **initial_state(twin))
    save_batches(workers.path(f"{name}-train.npz"), *train_data, args.warmup + args.steps, spec.batch, args.seed)
    np.savez(workers.path(f"{name}-eval.npz"), x=test_data[0][:500], y=test_data[1][:500])
    check_batches = workers.path(f"{name}-check.npz")
    if dropout_active:
        save_batches(check_batches, *train_data, args.check_steps, spec.batch, args.seed + 1)
    base = {"model": name, "device": args.device, "seed": args.seed, "tf32": args.tf32 == "on",
            "init": workers.path(f"{name}-init.npz"), "batches": workers.path(f"{name}-train.npz"),
            "eval": workers.path(f"{name}-eval.npz"), "dropout_active": dropout_active, "warmup": args.warmup,
            "steps": args.steps, "compile": args.compile, "torch_compile": args.torch_compile,
            "neighbour": args.neighbour}
    first = args.threads[0]
    runs = {t: {"tinynet": [], "torch": []} for t in args.threads}
    for r in range(args.repeats):
        for i, threads in enumerate(args.threads):
            order = ("tinynet", "torch") if (r + i) % 2 == 0 else ("torch", "tinynet")
            for framework in order:
                is_first = r == 0 and threads == first
                check = {"batches": check_batches, "dtype": "float32"} if is_first and dropout_active else None
                job = dict(base, framework=framework, threads=threads, timed=True, check=check,
                           overhead=is_first and framework == "tinynet")
                runs[threads][framework].append(workers.run(job))

    check = loss_check(spec, args, base, runs[first], dropout_active, check_batches, workers)
    overhead = runs[first]["tinynet"][0]["overhead"]
    peak = {"tinynet": None, "torch": None}
    if args.memory:
        # CPU: large blocks straight from and back to the OS (glibc), so freed memory is not
        # reused unseen from the heap: the same rule for both frameworks (tinynet's own
        # allocator settings, tinynet/allocator.py, are switched off for this measurement).
        extra = {"MALLOC_MMAP_THRESHOLD_": "131072", "TINYNET_MALLOC_TUNING": "0"} if args.device == "cpu" else None
        for framework in peak:
            peak[framework] = workers.run(dict(base, framework=framework, threads=first, memory=True), extra)["peak_mb"]
    return [model_row(spec, args, threads, runs[threads], dropout_active, check, overhead, peak)
            for threads in args.threads]


def model_row(spec, args, threads, runs, dropout_active, check, overhead, peak) -> dict:
    """The row of one thread setting: medians over every timed step of every repeat."""
    timed = {fw: [run["timed"] for run in runs[fw]] for fw in runs}
    times = {name: [t for run in timed[fw] for t in run["times_s"][name]] for fw in timed for name in timed[fw][0]["times_s"]}
    row = {"type": "model", "model": spec.name, "report": spec.report, "batch": spec.batch, "threads": threads,
           "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
           "steps_per_epoch": math.ceil(TRAIN_SIZE / spec.batch), "dropout_in_timed_run": dropout_active,
           "times_s": times, "workers": {fw: [run["env"] for run in runs[fw]] for fw in runs}}
    for name, t in times.items():
        fw = "tinynet" if name.startswith("tinynet") else "torch"
        med = harness.median(t)
        row[name] = {"median_ms": med * 1e3, "steps_per_s": 1 / med, "epoch_s": med * row["steps_per_epoch"],
                     "iqr_over_median": harness.spread(t),
                     "process_median_ms": [harness.median(run["times_s"][name]) * 1e3 for run in timed[fw]],
                     "eval_loss": timed[fw][0]["eval_loss"][name],
                     "last_train_loss": timed[fw][0]["train_losses"][name][-1]}
    row["ratio"] = row["tinynet"]["median_ms"] / row["torch"]["median_ms"]
    row["tinynet"]["launches_per_step"] = timed["tinynet"][0]["launches_per_step"]
    if "torch.compile" in row:
        row["ratio_compile"] = row["tinynet"]["median_ms"] / row["torch.compile"]["median_ms"]
    if "tinynet compiled" in row:
        row["tinynet compiled"]["instructions"] = timed["tinynet"][0]["instructions"]
        row["tinynet compiled"]["cuda_graph"] = timed["tinynet"][0]["cuda_graph"]
        row["ratio_tinynet_compiled"] = row["tinynet compiled"]["median_ms"] / row["torch"]["median_ms"]
        row["compiled_over_eager"] = row["tinynet compiled"]["median_ms"] / row["tinynet"]["median_ms"]
    row["load_1min"] = [run["env"]["load_1min"] for fw in runs for run in runs[fw]]
    row["loss_check"] = check
    row["overhead"] = dict(overhead, engine_share_of_step=overhead["engine_us_per_op"] * overhead["ops_per_step"]
                           / 1e3 / row["tinynet"]["median_ms"])
    row["peak_mb"] = peak
    return row


def loss_check(spec, args, base, first_runs, dropout_active, check_batches, workers) -> dict:
    """Compare the eval losses the two processes reached: of the timed run when it is
    deterministic, else of the dropout-free check run both made."""
    results = {fw: first_runs[fw][0] for fw in first_runs}
    if not dropout_active:
        found = {fw: {"eval_loss": results[fw]["timed"]["eval_loss"][fw],
                      "train_losses": results[fw]["timed"]["train_losses"][fw]} for fw in results}
        check = {"run": "timed run"}
        batches, steps = base["batches"], args.warmup + args.steps
    else:
        found = {fw: results[fw]["check"] for fw in results}
        check = {"run": f"separate {args.check_steps}-step run, dropout layers in eval mode"}
        batches, steps = check_batches, args.check_steps
    check.update(compare(found))
    check["pass"] = bool(check["rel_diff"] < CHECK_TOLERANCE)
    if not check["pass"]:
        # Rounding or a real difference? Rerun the same steps in float64: if the two agree
        # there, float32 rounding was amplified by training (Adam does that); if not, a bug.
        rerun = {fw: workers.run(dict(base, framework=fw, threads=args.threads[0], timed=False,
                                      check={"batches": batches, "dtype": "float64"}))["check"] for fw in found}
        f64 = dict(run=f"float64 rerun of the same {steps} steps, dropout layers in eval mode", **compare(rerun))
        f64["pass"] = bool(f64["rel_diff"] < FLOAT64_TOLERANCE)
        check["float64"] = f64
    return check


def compare(found: dict) -> dict:
    """The two frameworks' eval losses, their relative difference, and the largest relative
    difference of their per-step training losses."""
    tn, th = found["tinynet"], found["torch"]
    return {"tinynet": tn["eval_loss"], "torch": th["eval_loss"],
            "rel_diff": relative_difference(tn["eval_loss"], th["eval_loss"]),
            "train_max_rel": max(relative_difference(a, b) for a, b in zip(tn["train_losses"], th["train_losses"]))}



# ------------------------------------------------------------------------------- results
def check_label(c) -> str:
    if c["pass"]:
        return "PASS"
    f64 = c.get("float64")
    if f64 is None:
        return "**FAIL**"
    return f"**FAIL** (float64 rerun: rel diff {f64['rel_diff']:.1e}, {'PASS' if f64['pass'] else '**FAIL**'})"


def threads_label(row) -> str:
    """'1' or 'default (N)', N being the threads PyTorch's process found."""
    if row["threads"]:
        return str(row["threads"])
    return f"default ({row['workers']['torch'][0].get('torch_threads')})"


def tf32_note(args) -> str:
    if args.device == "cpu":
        return "TF32: not applicable on the CPU."
    state = "on" if args.tf32 == "on" else "off"
    return (f"TF32 {state} in both frameworks for every step and the loss check (torch.backends.cuda.matmul."
            f"allow_tf32 = torch.backends.cudnn.allow_tf32 = tinynet.backends.allow_tf32 = {args.tf32 == 'on'}).")


def summary_table(rows, thread_values) -> str:
    """Model by model, each thread setting side by side (when there are several)."""
    labels = {t: next(threads_label(r) for r in rows if r["threads"] == t) for t in thread_values}
    header = ["model (batch)"]
    for t in thread_values:
        header += [f"tinynet, {labels[t]}", f"PyTorch, {labels[t]}", "ratio"]
    lines = []
    for name in dict.fromkeys(r["model"] for r in rows):
        by_threads = {r["threads"]: r for r in rows if r["model"] == name}
        line = [f"{name} ({by_threads[thread_values[0]]['batch']})"]
        for t in thread_values:
            r = by_threads[t]
            line += [harness.fmt(r["tinynet"]["median_ms"], 1), harness.fmt(r["torch"]["median_ms"], 1),
                     harness.fmt(r["ratio"], 2) + "x"]
        lines.append(line)
    return harness.markdown_table(header, lines)


def results_kind(threads: list[int]) -> str:
    return "models" + ("" if threads == [0] else "-threads" + "-".join(str(t) for t in threads))


def write_results(rows, env, args, data_note) -> list:
    stem = harness.results_stem(args.out, args.device, results_kind(args.threads))
    compile_on = any("torch.compile" in r for r in rows)
    tn_compiled = any("tinynet compiled" in r for r in rows)
    speed_header = ["model", "batch", "threads", "tinynet ms/step", "torch ms/step", "tinynet/torch"]
    if tn_compiled:
        speed_header += ["tinynet compiled ms/step", "compiled/torch", "compiled/eager"]
    if compile_on:
        speed_header += ["torch.compile ms/step", "tinynet/compile"]
    speed_header += ["launches/step", "tinynet steps/s", "torch steps/s", "tinynet s/epoch", "torch s/epoch",
                     "peak MB tinynet", "peak MB torch", "noise (IQR/median) tinynet, torch", "load (1-min)"]
    speed, check, overhead = [], [], []
    for r in rows:
        line = [r["model"], r["batch"], threads_label(r), harness.fmt(r["tinynet"]["median_ms"], 1),
                harness.fmt(r["torch"]["median_ms"], 1), harness.fmt(r["ratio"], 2) + "x"]
        if tn_compiled:
            line += [harness.fmt(r["tinynet compiled"]["median_ms"], 1), harness.fmt(r["ratio_tinynet_compiled"], 2) + "x",
                     harness.fmt(r["compiled_over_eager"], 2) + "x"]
        if compile_on:
            c = r.get("torch.compile")
            line += [harness.fmt(c["median_ms"], 1) if c else "n/a", harness.fmt(r.get("ratio_compile"), 2) + "x"]
        loads = [v for v in r["load_1min"] if v is not None]
        line += [harness.fmt(r["tinynet"]["launches_per_step"], 0),
                 harness.fmt(r["tinynet"]["steps_per_s"], 2), harness.fmt(r["torch"]["steps_per_s"], 2),
                 harness.fmt(r["tinynet"]["epoch_s"], 0), harness.fmt(r["torch"]["epoch_s"], 0),
                 harness.fmt(r["peak_mb"]["tinynet"], 0), harness.fmt(r["peak_mb"]["torch"], 0),
                 f"{harness.fmt(r['tinynet']['iqr_over_median'], 2)}, {harness.fmt(r['torch']['iqr_over_median'], 2)}",
                 f"{min(loads):.1f}-{max(loads):.1f}" if loads else "n/a"]
        speed.append(line)
        if r["threads"] != args.threads[0]:
            continue  # the loss check and the overhead are measured once per model
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
        "- each framework alone in its own process (`benchmarks/model_worker.py`)"
        + (", which first imported the other framework and ran one op in it (`--neighbour`)" if args.neighbour else "")
        + f"; {args.repeats} process(es) per framework and thread setting, alternating with the other "
        f"framework's (order flipping each repeat); in each, {args.steps} timed steps after {args.warmup} warm-up "
        "steps. Median step time over all timed steps; s/epoch = steps per epoch (60000 / batch) x median."
        + (" GPU: synchronised before and after every step." if args.device != "cpu" else ""),
        "- threads: 'default' leaves every library its own default; N sets OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, "
        "MKL_NUM_THREADS, NUMBA_NUM_THREADS and torch.set_num_threads to N.",
        f"- dropout in the timed run: {'as in training' if args.dropout == 'on' else 'off (eval mode)'}. {tf32_note(args)}",
        "- peak MB: " + ("increase of the process's peak RSS over 3 training steps (gradients, optimiser state, "
                         "activations, temporaries; not the weights), each framework in a fresh process on the first "
                         "batch, after a throwaway warm-up step that loads the compiled kernels." if args.device == "cpu" else
                         "CuPy memory-pool growth / torch.cuda.max_memory_allocated over 3 steps, each in a fresh process."),
        "- launches/step: kernel launches per tinynet training step (batch 2), counted on the simulated CUDA device (benchmarks/launches.py): what a GPU would queue, the same on every machine.",
        "- noise: interquartile range of the step times over their median; load: the 1-minute load average when "
        "each of the row's processes started (other processes share the machine).",
    ]
    sections = ["## Step time", "", *notes, ""]
    if len(args.threads) > 1:
        sections += ["Median ms per training step:", "", summary_table(rows, args.threads), ""]
    sections += [harness.markdown_table(speed_header, speed), "",
                 "## Loss check", "",
                 f"Eval loss on 500 test images after the steps, both frameworks from the same initial weights on the "
                 f"same batches, each in its own process; PASS when the relative difference is below {CHECK_TOLERANCE:g}. "
                 "'train max rel' is the largest relative difference of the per-step training losses. "
                 f"A float32 FAIL is followed by a float64 rerun of the same steps (tolerance {FLOAT64_TOLERANCE:g}): "
                 "agreement there means the float32 gap is rounding amplified by training, not a different "
                 f"computation. {tf32_note(args)}", "",
                 harness.markdown_table(["model", "tinynet loss", "torch loss", "rel diff", "train max rel", "check", "run"]
                                        + (["torch.compile loss (timed run)"] if compile_on else []), check), "",
                 "## tinynet framework overhead", "",
                 "Forward + loss + backward of tinynet's model on a batch of 2. ops = `Function.apply` calls per step; "
                 "µs/op (tiny) = tiny step time / ops; engine µs/op = time outside the ops' forward/backward bodies / "
                 "ops; engine share = engine µs/op x ops / the full step's median time (first thread setting).", "",
                 harness.markdown_table(["model", "ops/step", "tiny step ms", "µs/op (tiny)", "engine µs/op",
                                         "engine share of step"], overhead)]
    harness.write_markdown(stem.with_suffix(".md"), f"tinynet vs PyTorch: report models, {args.device}", env, sections)
    harness.write_jsonl(stem.with_suffix(".jsonl"), env, rows)
    series = {}
    for t in args.threads:
        label = "default threads" if not t else f"{t} thread{'s' if t > 1 else ''}"
        chosen = [r for r in rows if r["threads"] == t]
        names = ["tinynet", "torch"] + [n for n in ("tinynet compiled", "torch.compile") if n in chosen[0]]
        for n in names:
            series[f"{n}, {label}"] = [r.get(n, {}).get("median_ms") for r in chosen]
    models_in_order = list(dict.fromkeys(r["model"] for r in rows))
    harness.bar_chart(stem.with_suffix(".png"), models_in_order, series, "median ms per training step (log)",
                      f"training step, {args.device} ({env['cpu'] if args.device == 'cpu' else env.get('gpu')}), "
                      "each framework in its own process", log=True)
    return [stem.with_suffix(s) for s in (".jsonl", ".md", ".png")]


def parse_threads(text: str) -> list[int]:
    """'0', '1', '0,1' or 'default,1' -> a list of thread counts (0: the libraries' defaults)."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if part == "default":
            part = "0"
        if not part.isdigit():
            raise argparse.ArgumentTypeError(f"--threads: expected counts like 0, 1 or 0,1 (0 = default), got {text!r}")
        values.append(int(part))
    return list(dict.fromkeys(values))


def worker_summary(rows) -> dict:
    """What the workers ran with, per thread setting (the parent's own pools are idle)."""
    summary = {}
    for r in rows:
        label = threads_label(r)
        tn, th = r["workers"]["tinynet"][0], r["workers"]["torch"][0]
        summary.setdefault(label, {"numba_threads": tn.get("numba_threads"),
                                   "numba_threading_layer": tn.get("numba_threading_layer"),
                                   "torch_threads": th.get("torch_threads")})
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--models", default="all", help="all, or a comma-separated list of " + ", ".join(SPECS))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per process")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first, in every process")
    parser.add_argument("--repeats", type=int, default=2, help="processes per framework and thread setting")
    parser.add_argument("--epochs", type=float, default=None,
                        help="time this many epochs' worth of steps instead of --steps (ceil(60000/batch) per epoch)")
    parser.add_argument("--check-steps", type=int, default=5, help="steps of the dropout-free loss-check run")
    parser.add_argument("--dropout", choices=["on", "off"], default="on", help="dropout in the timed run")
    parser.add_argument("--tf32", choices=["off", "on"], default="off",
                        help="TF32 GEMMs/convolutions on a GPU, the same in both frameworks (default off)")
    parser.add_argument("--torch-compile", action="store_true", help="add a torch.compile column (slow to compile)")
    parser.add_argument("--compile", action="store_true",
                        help="add a column for tinynet.compile_step (the step recorded once and replayed)")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory measurement")
    parser.add_argument("--neighbour", action="store_true",
                        help="each framework's process first imports the other and runs one op in it")
    parser.add_argument("--data-dir", default=harness.default_data_dir(), help="folder with the MNIST files")
    parser.add_argument("--threads", type=parse_threads, default=[0],
                        help="threads for every pool (OpenBLAS, numba, OpenMP, torch); 0 (default) keeps each "
                             "library's default; a list such as 0,1 runs each setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(harness.RESULTS_DIR), help="folder for the .jsonl, .md and .png")
    args = parser.parse_args(argv)
    specs = parse_models(args.models)
    if args.compile and args.warmup < 2:
        parser.error("--compile needs --warmup 2 or more (compile_step records the first two steps)")
    if args.repeats < 1:
        parser.error("--repeats must be 1 or more")
    harness.require_torch()
    if args.device == "gpu":
        import tinynet
        if not tinynet.cuda.is_available():
            raise SystemExit("--device gpu: CuPy does not see a GPU (pip install -e .[cuda12])")
    cache = {}

    def data(normalize, train):
        if (normalize, train) not in cache:
            cache[normalize, train] = harness.mnist_arrays(args.data_dir, normalize, train)
        return cache[normalize, train]

    rows = []
    with tempfile.TemporaryDirectory(prefix="tinynet-bench-") as folder:
        workers = Workers(Path(folder))
        for spec in specs:
            train_images, labels, note = data(spec.normalize, True)
            test_images, test_labels, _ = data(spec.normalize, False)
            spec_args = argparse.Namespace(**vars(args))
            if args.epochs is not None:
                spec_args.steps = max(1, round(args.epochs * math.ceil(TRAIN_SIZE / spec.batch)))
            print(f"{spec.name}: {spec_args.steps} steps of batch {spec.batch}, {args.repeats} process(es) per "
                  f"framework and thread setting ...", flush=True)
            for row in benchmark_model(spec, spec_args, (train_images, labels), (test_images, test_labels), workers):
                c = row["loss_check"]
                compiled = (f", tinynet compiled {row['tinynet compiled']['median_ms']:.1f} ms/step "
                            f"({row['ratio_tinynet_compiled']:.2f}x)") if "tinynet compiled" in row else ""
                print(f"  threads {threads_label(row)}: tinynet {row['tinynet']['median_ms']:.1f} ms/step, torch "
                      f"{row['torch']['median_ms']:.1f} ms/step ({row['ratio']:.2f}x){compiled}; loss "
                      f"{c['tinynet']:.6f} vs {c['torch']:.6f} (rel {c['rel_diff']:.1e}) "
                      f"{check_label(c).replace('*', '')}", flush=True)
                rows.append(row)
    env = harness.environment(args.device)
    env["workers"] = worker_summary(rows)
    env["tf32"] = None if args.device == "cpu" else args.tf32 == "on"
    paths = write_results(rows, env, args, note)
    print("wrote " + ", ".join(str(p) for p in paths))
    # Exit status 1 only for a real disagreement: a float32 FAIL whose float64 rerun fails too.
    return 0 if all(r["loss_check"]["pass"] or r["loss_check"]["float64"]["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
