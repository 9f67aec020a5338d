"""One framework's process for ``models.py``: it imports tinynet *or* PyTorch (never both, unless
the job asks for the other as a neighbour), trains one report model and writes what it measured
as JSON.

    python benchmarks/model_worker.py JOB.json      # started by models.py, not by hand

The job (a JSON object written by ``models.py``) names the framework, the model, the device, the
initial weights (``.npz``, the state_dict keys both frameworks share) and the batches (``.npz``
of NumPy arrays cut by the parent, the same file for both frameworks). The worker can do four
things, each asked for by a key of the job:

* ``timed``: ``warmup`` untimed then ``steps`` timed training steps (eager, and the compiled
  variant when asked: ``tinynet.compile_step`` or ``torch.compile``, interleaved step by step
  with the eager one), then the eval loss on the shared test batch;
* ``check``: a loss-check run from the same initial weights with every dropout layer in eval
  mode, in float32 or float64;
* ``overhead`` (tinynet only): the per-op cost of the framework on a batch of 2;
* ``memory``: the peak memory of 3 training steps (CPU: peak RSS; GPU: the framework's pool).

Thread pools are set by the parent through the environment (``OMP_NUM_THREADS`` and friends)
before this process starts; PyTorch's own count is also set with ``torch.set_num_threads``.
"""
from __future__ import annotations

import gc
import json
import os
import sys
import time

import harness  # first: it puts the checkout on sys.path and records the launch environment
import models


# -------------------------------------------------------------------------------- set-up
def start_neighbour(framework: str) -> None:
    """Import the *other* framework first and run one small parallel op in it, so that its
    thread pool exists (the situation of a script that uses both libraries)."""
    import numpy as np
    x = np.random.default_rng(0).standard_normal((64, 8, 28, 28), dtype=np.float32)
    if framework == "tinynet":
        torch = harness.require_torch()
        torch.nn.functional.conv2d(torch.from_numpy(x), torch.ones(16, 8, 3, 3)).sum().item()
    else:
        import tinynet
        tinynet.nn.functional.conv2d(tinynet.tensor(x), tinynet.ones(16, 8, 3, 3)).sum().item()


def set_tf32(framework: str, on: bool) -> None:
    """TF32 for float32 GEMMs and convolutions on a GPU, the same in both frameworks (it changes
    the results: the loss check must compare like with like). No effect on the CPU."""
    if framework == "tinynet":
        import tinynet
        tinynet.backends.allow_tf32 = on
    else:
        import torch
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on


def to_framework(framework: str, array, device: str):
    """A NumPy array as a tinynet or torch tensor on the device."""
    if framework == "tinynet":
        import tinynet
        return tinynet.tensor(array, device=harness.tinynet_device(device))
    import torch
    return torch.from_numpy(array).to(models.torch_device(device))


def load_arrays(framework: str, path: str, device: str, dtype: str):
    """The images ``x`` (cast to ``dtype``) and labels ``y`` of the ``.npz`` at ``path`` as the
    framework's tensors on the device."""
    import numpy as np
    with np.load(path) as data:
        x, y = data["x"].astype(dtype), data["y"]
    return to_framework(framework, x, device), to_framework(framework, y, device)


def load_batches(framework: str, path: str, batch: int, device: str, dtype: str):
    """The arrays of :func:`load_arrays` cut into (x, y) batches, in order."""
    xs, ys = load_arrays(framework, path, device, dtype)
    return [(xs[i:i + batch], ys[i:i + batch]) for i in range(0, xs.shape[0], batch)]


# ----------------------------------------------------------------------------- the runs
def kernel_launches_per_step(framework: str, spec):
    """Kernel launches in one training step of ``spec``'s model, counted on the simulated CUDA
    device (``benchmarks/launches.py``; the count is the same on every machine). Where CuPy
    sees a GPU, the count runs in a child process that hides it. None for PyTorch."""
    if framework != "tinynet":
        return None
    import tinynet
    if not tinynet.backend.cuda_available():
        import launches
        return launches.launches_per_step(spec, harness.load_example(spec.example))["launches"]
    import os
    import subprocess
    code = ("import json, harness, models, launches; spec = models.SPECS[%r]; "
            "print(launches.launches_per_step(spec, harness.load_example(spec.example))['launches'])" % spec.name)
    done = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(os.path.abspath(__file__)),
                          env=dict(os.environ, CUDA_VISIBLE_DEVICES=""), capture_output=True, text=True)
    return int(done.stdout.split()[-1]) if done.returncode == 0 else None


def timed_run(framework: str, spec, job: dict, state: dict) -> dict:
    """``warmup`` + ``steps`` training steps of the eager model (and of its compiled twin when
    the job asks), interleaved step by step; the eval loss after them."""
    device, dropout_active = job["device"], job["dropout_active"]
    trainers = {framework: models.Trainer(framework, models.model_from_state(framework, spec, device, state), spec)}
    if framework == "tinynet" and job.get("compile"):
        trainers["tinynet compiled"] = models.Trainer("tinynet", models.model_from_state(framework, spec, device, state), spec,
                                                      compiled=True)
    if framework == "torch" and job.get("torch_compile"):
        import torch
        module = models.model_from_state(framework, spec, device, state)
        trainers["torch.compile"] = models.Trainer("torch.compile", torch.compile(module), spec, module=module)
    for trainer in trainers.values():
        trainer.module.train()
        models.set_dropout(trainer.module, spec, dropout_active)
    data = load_batches(framework, job["batches"], spec.batch, device, "float32")
    warmup = job["warmup"]
    sync = harness.Synchronizer(device)
    times = harness.alternate({name: (lambda t: lambda r: t.step(*data[r + warmup]))(trainer)
                               for name, trainer in trainers.items()}, job["steps"], warmup, sync)
    eval_x, eval_y = load_arrays(framework, job["eval"], device, "float32")
    result = {"times_s": times, "eval_loss": {}, "train_losses": {}}
    for name, trainer in trainers.items():
        result["eval_loss"][name] = trainer.evaluate_loss(eval_x, eval_y, dropout_active)
        result["train_losses"][name] = trainer.train_losses()
    if "tinynet compiled" in trainers:
        compiled, last = trainers["tinynet compiled"]._step, data[-1]
        if compiled.fallback_reason(*last) is not None:
            raise RuntimeError(f"{spec.name}: compile_step fell back to eager: {compiled.fallback_reason(*last)}")
        result["instructions"] = len(compiled.program(*last))
        # On a GPU the compiled step is one CUDA graph launch, unless its capture failed (why):
        result["cuda_graph"] = compiled.graph(*last) is not None or compiled.graph_fallback_reason(*last)
    result["launches_per_step"] = kernel_launches_per_step(framework, spec)
    return result


def check_run(framework: str, spec, job: dict, state: dict, check: dict) -> dict:
    """``check['batches']`` training steps from the initial weights with every dropout layer in
    eval mode, in ``check['dtype']``; the eval loss after them and every training loss."""
    device, dtype = job["device"], check["dtype"]
    trainer = models.Trainer(framework, models.model_from_state(framework, spec, device, state, dtype), spec)
    trainer.module.train()
    models.set_dropout(trainer.module, spec, False)
    for x, y in load_batches(framework, check["batches"], spec.batch, device, dtype):
        trainer.step(x, y)
    eval_x, eval_y = load_arrays(framework, job["eval"], device, dtype)
    return {"eval_loss": trainer.evaluate_loss(eval_x, eval_y, False), "train_losses": trainer.train_losses(),
            "dtype": dtype}


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


def framework_overhead(spec, job: dict, repeats=15) -> dict:
    """tinynet's per-op cost on a batch of 2 (forward + loss + backward, no optimiser step)."""
    import tinynet
    device = job["device"]
    sync = harness.Synchronizer(device)
    model = models.build_tinynet(spec, device)
    model.train()
    models.set_dropout(model, spec, job["dropout_active"])
    x, y = load_batches("tinynet", job["eval"], 2, device, "float32")[0]
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
def peak_memory(framework: str, spec, job: dict, state: dict) -> float | None:
    """MB added at the peak of 3 training steps on the first batch. On the CPU (run in a
    process of its own, see ``models.cpu_memory``): the peak resident set size, after a
    throwaway copy of the model trained one step on 2 images, so that loading compiled kernels
    (numba's cache, oneDNN's JIT) is not counted. On the GPU: CuPy's pool (emptied first: it
    keeps freed blocks, so its size after the steps is the peak) or
    ``torch.cuda.max_memory_allocated``."""
    device = job["device"]
    x, y = load_batches(framework, job["batches"], spec.batch, device, "float32")[0]
    if device == "cpu":
        warm = models.Trainer(framework, models.model_from_state(framework, spec, device, state), spec)
        warm.step(x[:2], y[:2])
        del warm
        gc.collect()
    trainer = models.Trainer(framework, models.model_from_state(framework, spec, device, state), spec)
    sync = harness.Synchronizer(device)
    if device == "cpu":
        before = harness.rss_bytes()
        harness.reset_peak_rss()
    elif framework == "tinynet":
        import cupy
        pool = cupy.get_default_memory_pool()
        pool.free_all_blocks()
        before = pool.total_bytes()
    else:
        import torch
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    for _ in range(3):
        trainer.step(x, y)
    trainer.train_losses()
    sync(framework)
    if device == "cpu":
        return None if before is None else (harness.peak_rss_bytes() - before) / 2 ** 20
    if framework == "tinynet":
        return (cupy.get_default_memory_pool().total_bytes() - before) / 2 ** 20
    return (torch.cuda.max_memory_allocated() - before) / 2 ** 20


# ---------------------------------------------------------------------------------- main
def worker_environment(framework: str) -> dict:
    """What this process ran with: its thread pools, its load, and which frameworks it imported."""
    env = {"load_1min": harness.START_LOAD, "modules": {m: m in sys.modules for m in ("tinynet", "torch")},
           "OPENBLAS_THREAD_TIMEOUT": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}
    if "numba" in sys.modules:
        import numba
        env["numba_threads"] = numba.get_num_threads()
        try:
            env["numba_threading_layer"] = numba.threading_layer()
        except ValueError:  # no parallel kernel has run in this process
            env["numba_threading_layer"] = None
    if "torch" in sys.modules:
        import torch
        env["torch_threads"] = torch.get_num_threads()
    return env


def run(job: dict) -> dict:
    """Everything the job asks for, in this process; returns the measurements."""
    framework, spec = job["framework"], models.SPECS[job["model"]]
    if job.get("neighbour"):
        start_neighbour(framework)
    elif framework == "tinynet":
        import tinynet  # noqa: F401 - first, as a script does: its import settings precede NumPy's
    import numpy as np
    if framework == "torch":
        torch = harness.require_torch()
        if job["threads"]:
            torch.set_num_threads(job["threads"])
        torch.manual_seed(job["seed"])
    else:
        import tinynet
        tinynet.manual_seed(job["seed"])
    set_tf32(framework, job["tf32"])
    with np.load(job["init"]) as saved:
        state = dict(saved)
    result = {}
    if job.get("memory"):
        result["peak_mb"] = peak_memory(framework, spec, job, state)
    if job.get("timed"):
        result["timed"] = timed_run(framework, spec, job, state)
    if job.get("check"):
        result["check"] = check_run(framework, spec, job, state, job["check"])
    if job.get("overhead") and framework == "tinynet":
        result["overhead"] = framework_overhead(spec, job)
    result["env"] = worker_environment(framework)
    return result


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: model_worker.py JOB.json (started by benchmarks/models.py)")
    with open(argv[0]) as f:
        job = json.load(f)
    result = run(job)
    with open(job["out"], "w") as f:
        json.dump(harness.jsonable(result), f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
