"""Peak memory of one training step, tinynet against PyTorch, measured without a GPU.

    python benchmarks/memory.py --models all                  # the report batch sizes
    python benchmarks/memory.py --models cnn5 --breakdown     # and what tinynet holds at its peak
    python benchmarks/memory.py --models all --out benchmarks/results/cpu-2026-12-04-memory.md

Both sides run the same step on the same model at the report batch size (``models.SPECS``):
``zero_grad()``, forward, loss, ``backward()``, ``optimizer.step()``, after one warm-up step (so
the optimiser state exists), with the model's real optimiser and loss. What each number counts:

* **tinynet**: the device buffers of the simulated GPU (``tinynet.sim``, through
  ``tinynet.launch_count.count_training_step``): the most bytes alive at once during the step,
  parameters, gradients, optimiser state and the batch included. This is what a GPU's caching
  pool must hold at least; CuPy's pool rounds every block up to 512 bytes and keeps freed blocks
  in size bins, so the pool a GPU shows is larger (fragmentation). The simulator runs tinynet's
  cuda code path, so a GPU allocates the same buffers; what CuPy or cuBLAS allocate inside a
  call (workspaces, copies of non-contiguous operands) is not counted.
* **PyTorch**: its CPU allocator, as ``torch.profiler.profile(profile_memory=True)`` reports it:
  every allocation and free during the step, summed in time order, the peak of that running sum
  added to the bytes alive when the step starts (parameters, gradients, optimiser state, batch).
  The profiler only reports frees of blocks allocated while it records, so two steps are
  profiled and the second is measured. On the CPU PyTorch runs convolutions with oneDNN, which
  keeps no im2col matrix; cuDNN on a GPU may add workspaces, so PyTorch's GPU peak can be higher.

"tinynet launches": the kernel launches of tinynet's step at that batch (memory is often bought
with launches: a convolution on the GPU keeps no im2col columns and still launches 3 kernels, see
``tinynet/kernels/cuda/conv.py``). "above params + batch" subtracts the
parameters and the batch: that is what
``benchmarks/models.py --memory`` measures on a GPU (CuPy's pool or
``torch.cuda.max_memory_allocated`` after the model and the batch were on the device), the
figures of issue 14 (cnn5: tinynet 599 MB, PyTorch 326 MB on an H200).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import models  # noqa: E402

MB = 2 ** 20


def tinynet_step_memory(spec, batch: int, breakdown: bool = False) -> dict:
    """Peak device bytes of one training step of ``spec``'s tinynet model on the simulated GPU."""
    import tinynet
    import tinynet.nn.functional as F
    from tinynet import backend, optim
    from tinynet.launch_count import count_training_step
    with backend.simulate_cuda(True):
        tinynet.manual_seed(0)
        model = spec.build(harness.load_example(spec.example)).to("cuda")
        model.train()
        optimizer = getattr(optim, spec.optimizer)(model.parameters(), **spec.optim_kwargs)
        rng = np.random.default_rng(0)
        x = tinynet.tensor(rng.random((batch, 1, 28, 28), dtype=np.float32), device="cuda")
        y = tinynet.tensor(rng.integers(0, 10, batch), device="cuda")
        counts = count_training_step(model, optimizer, getattr(F, spec.loss), x, y, trace=breakdown)
        fixed = sum(p.data.nbytes for p in model.parameters()) + x.data.nbytes + y.data.nbytes
    result = {"peak": counts["peak_bytes"], "before": counts["live_bytes_before"], "fixed": fixed,
              "phase": counts["peak_phase"], "launches": counts["launches"]}
    if breakdown:
        result["breakdown"] = counts["memory_trace"].by_creator()
    return result


def torch_step_memory(spec, batch: int) -> dict:
    """Peak bytes of one training step of ``spec``'s PyTorch twin, from its CPU allocator."""
    import torch
    import torch_models
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile, record_function
    torch.manual_seed(0)
    model = spec.torch_build(torch_models)
    model.train()
    optimizer = getattr(torch.optim, spec.optimizer)(model.parameters(), **spec.optim_kwargs)
    loss_fn = getattr(torch.nn.functional, spec.loss)
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

    def step():
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()

    step()  # warm-up: the optimiser state is made here
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()  # its blocks are then known to the profiler when the measured step frees them
        with record_function("measured_step"):
            before = _storage_bytes([x, y, *model.parameters(), *(p.grad for p in model.parameters()),
                                     *(v for state in optimizer.state.values() for v in state.values())])
            step()
    allocations = []

    def collect(nodes, inside):
        for node in nodes:
            inside_here = inside or node.name == "measured_step"
            if inside_here and node.tag == _EventType.Allocation:
                allocations.append((node.start_time_ns, node.extra_fields.alloc_size))
            collect(node.children, inside_here)

    collect(prof.profiler.kineto_results.experimental_event_tree(), False)
    running = peak = 0
    for _, size in sorted(allocations):
        running += size
        peak = max(peak, running)
    fixed = _storage_bytes([x, y, *model.parameters()])
    return {"peak": before + peak, "before": before, "fixed": fixed, "net": running,
            "allocations": sum(size > 0 for _, size in allocations)}


def _storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (None and non-tensors skipped)."""
    import torch
    storages = {}
    for t in tensors:
        if isinstance(t, torch.Tensor):
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="all", help="comma-separated names from models.SPECS, or 'all'")
    parser.add_argument("--batch", type=int, default=None, help="instead of each model's report batch size")
    parser.add_argument("--breakdown", action="store_true", help="what tinynet holds at its peak, by creator")
    parser.add_argument("--out", help="also write the table (Markdown) here")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    names = list(models.SPECS) if args.models == "all" else args.models.split(",")
    rows, notes = [], []
    for name in names:
        spec = models.SPECS[name]
        batch = args.batch or spec.batch
        start = time.perf_counter()
        tiny = tinynet_step_memory(spec, batch, args.breakdown)
        ref = torch_step_memory(spec, batch)
        print(f"{name}: measured in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        rows.append([f"{name} ({batch})", f"{tiny['peak'] / MB:.1f}", f"{ref['peak'] / MB:.1f}",
                     f"{tiny['peak'] / ref['peak']:.2f}", f"{(tiny['peak'] - tiny['fixed']) / MB:.1f}",
                     f"{(ref['peak'] - ref['fixed']) / MB:.1f}", f"{tiny['before'] / MB:.1f}",
                     f"{ref['before'] / MB:.1f}", tiny["phase"], tiny["launches"]])
        if args.breakdown:
            lines = [f"{nbytes / MB:8.1f} MB {count:4d} buffers  {creator}" for nbytes, count, creator in
                     tiny["breakdown"] if nbytes >= 0.001 * tiny["peak"]]
            notes.append(f"tinynet {name} (batch {batch}), alive at the peak ({tiny['peak'] / MB:.1f} MB) by "
                         f"creator:\n\n```text\n" + "\n".join(lines) + "\n```")
    header = ["model (batch)", "peak MB tinynet", "peak MB torch", "tinynet / torch",
              "above params+batch tinynet", "above params+batch torch", "at step start tinynet",
              "at step start torch", "tinynet peak in", "tinynet launches"]
    table = harness.markdown_table(header, rows)
    text = table + ("\n\n" + "\n\n".join(notes) if notes else "")
    print(text)
    if args.out:
        command = "python benchmarks/memory.py " + " ".join(sys.argv[1:] if argv is None else argv)
        Path(args.out).write_text(f"# Peak memory of a training step (`{command}`)\n\n"
                                  f"{__doc__.split(chr(10) + chr(10), 1)[1]}\n{text}\n")


if __name__ == "__main__":
    main()
