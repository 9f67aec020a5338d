"""tinynet alone (PyTorch is not imported): a training step of each report model run eagerly and
through ``tinynet.compile_step``, at the report's batch size and at a tiny batch where the
Python around the kernels is most of the step.

    python benchmarks/replay.py --threads 1
    TINYNET_MALLOC_TUNING=0 python benchmarks/replay.py --threads 1   # glibc's malloc defaults

Both variants of a model start from the same weights and train on the same random batch; they
alternate step by step after 5 warm-up steps (the compiled one records on its first calls);
times are medians. ``saved µs/call`` is the eager-minus-replay time over the number of recorded
calls. Also reports the kernel (system) CPU time per step, which shows page faults.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import harness  # first: it puts the checkout on sys.path and records the launch environment


def measure(spec, batch: int, steps: int) -> dict:
    import numpy as np
    import tinynet
    import models
    rng = np.random.default_rng(0)
    x = tinynet.tensor(rng.standard_normal((batch, 1, 28, 28)).astype(np.float32))
    y = tinynet.tensor(rng.integers(0, 10, batch))
    tinynet.manual_seed(0)
    eager_model = models.build_tinynet(spec, "cpu")
    compiled_model = models.build_tinynet(spec, "cpu")
    compiled_model.load_state_dict(eager_model.state_dict())
    trainers = {"eager": models.Trainer("tinynet", eager_model, spec),
                "compiled": models.Trainer("tinynet", compiled_model, spec, compiled=True)}
    for trainer in trainers.values():
        for _ in range(5):
            trainer.step(x, y)
    times = {name: [] for name in trainers}
    system = {name: 0.0 for name in trainers}
    for _ in range(steps):
        for name, trainer in trainers.items():
            before, began = os.times().system, time.perf_counter()
            trainer.step(x, y)
            times[name].append(time.perf_counter() - began)
            system[name] += os.times().system - before
    compiled = trainers["compiled"]._step
    calls = len(compiled.program(x, y))
    if calls == 0:
        raise RuntimeError(f"{spec.name}: compile_step did not replay: {compiled.fallback_reason(x, y)}")
    eager, replay = harness.median(times["eager"]), harness.median(times["compiled"])
    return {"model": spec.name, "batch": batch, "eager_ms": eager * 1e3, "compiled_ms": replay * 1e3,
            "calls": calls, "saved_us_per_call": (eager - replay) / calls * 1e6,
            "eager_sys_ms": system["eager"] / steps * 1e3, "compiled_sys_ms": system["compiled"] / steps * 1e3}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="pytorch_example,lenet,lenet_resnet_conv,lenet_resnet_fc,mlp")
    parser.add_argument("--batches", default="report,2", help="comma-separated batch sizes; 'report' = the report's")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="threads for every pool (0: library defaults)")
    args = parser.parse_args(argv)
    harness.set_threads(args.threads)
    import models
    import tinynet
    print(f"- `{' '.join(['python', 'benchmarks/replay.py'] + sys.argv[1:])}`; allocator tuned: "
          f"{tinynet.HOST_ALLOCATOR_TUNED}; threads: {args.threads or 'library defaults'}")
    rows = []
    for spec in models.parse_models(args.models):
        for batch in args.batches.split(","):
            rows.append(measure(spec, spec.batch if batch == "report" else int(batch), args.steps))
            r = rows[-1]
            print(f"  {r['model']} batch {r['batch']}: eager {r['eager_ms']:.2f} ms, compiled {r['compiled_ms']:.2f} ms",
                  file=sys.stderr, flush=True)
    print(harness.markdown_table(
        ["model", "batch", "eager ms", "compiled ms", "compiled/eager", "recorded calls", "saved µs/call",
         "kernel CPU ms/step eager, compiled"],
        [[r["model"], r["batch"], harness.fmt(r["eager_ms"], 2), harness.fmt(r["compiled_ms"], 2),
          harness.fmt(r["compiled_ms"] / r["eager_ms"], 2) + "x", r["calls"], harness.fmt(r["saved_us_per_call"], 1),
          f"{harness.fmt(r['eager_sys_ms'], 1)}, {harness.fmt(r['compiled_sys_ms'], 1)}"] for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
