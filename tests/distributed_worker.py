"""What each rank runs in tests/test_distributed.py, started by
``python -m tinynet.distributed.run -n N tests/distributed_worker.py SCENARIO OUT``. Each scenario
writes its results to OUT as ``{name}_rank{r}.npz`` for the test to compare with a computation
done in one process. The models, data and steps are defined here once and imported by the test
for its references."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import tinynet
from tinynet import nn, optim

STEPS, BATCH = 5, 64  # 5 steps of a global batch of 64: 32 per rank on 2 ranks


# ------------------------------------------------------------------ shared with the test
def lenet():
    """examples/lenet.py's LeNet (sigmoid), small enough for CI."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5), nn.Sigmoid(), nn.MaxPool2d(2, 2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(), nn.MaxPool2d(2, 2),
        nn.Flatten(), nn.Linear(256, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10))


def bn_net(sync: bool = False):
    """A convolution, BatchNorm, ReLU and a linear layer on 1x8x8 images (SyncBatchNorm if ``sync``)."""
    norm = tinynet.distributed.SyncBatchNorm(4) if sync else nn.BatchNorm2d(4)
    # No bias before BatchNorm: its true gradient is 0, and Adam would blow its rounding noise
    # up to steps of size lr, different in every summation order.
    return nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), norm, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


MODELS = {"lenet": (lenet, 28), "bn": (bn_net, 8), "syncbn": (lambda: bn_net(sync=True), 8)}
OPTIMIZERS = {"sgd": lambda params: optim.SGD(params, lr=0.1, momentum=0.9),
              "adam": lambda params: optim.Adam(params, lr=1e-3)}


def data(size: int):
    """STEPS global batches of BATCH images (1 x size x size) and labels, the same everywhere."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((STEPS * BATCH, 1, size, size)).astype(np.float32)
    y = rng.integers(0, 10, STEPS * BATCH)
    return x, y


def state_arrays(module) -> dict:
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


# ------------------------------------------------------------------ scenarios
def equivalence(out: Path, rank: int, world: int) -> None:
    """Train every (model, optimiser, eager/compiled) for STEPS steps on this rank's share of
    each global batch, from weights initialised differently on each rank (DDP must broadcast
    rank 0's); save the final state and how many all-reduces were started."""
    from tinynet.compile import compile_step
    from tinynet.distributed import DistributedDataParallel, process_group
    from tinynet.train import make_train_step

    group = process_group.require_group("worker")
    started = [0]
    start_all_reduce = group.start_all_reduce

    def counting(array, op):  # count the bucket all-reduces actually started
        started[0] += 1
        return start_all_reduce(array, op)
    group.start_all_reduce = counting

    share = BATCH // world
    for model_name, (build, size) in MODELS.items():
        x, y = data(size)
        for opt_name, make_optimizer in OPTIMIZERS.items():
            for compiled in (False, True):
                tinynet.manual_seed(100 + rank)  # different weights on each rank before DDP
                model = build()
                ddp = DistributedDataParallel(model, bucket_cap_mb=0.02)  # several buckets for LeNet
                optimizer = make_optimizer(ddp.parameters())
                step = make_train_step(ddp, optimizer, nn.CrossEntropyLoss())
                if compiled:
                    step = compile_step(step, model=ddp)
                started[0] = 0
                for k in range(STEPS):
                    lo = k * BATCH + rank * share
                    xb, yb = tinynet.tensor(x[lo:lo + share]), tinynet.tensor(y[lo:lo + share])
                    step(xb, yb)
                info = {"buckets": len(ddp._buckets), "all_reduces": started[0]}
                if compiled:
                    info["fallback"] = step.fallback_reason(xb, yb)
                    info["program_length"] = len(step.program(xb, yb))
                name = f"{model_name}_{opt_name}_{'compiled' if compiled else 'eager'}"
                np.savez(out / f"{name}_rank{rank}.npz", **state_arrays(model))
                (out / f"{name}_rank{rank}.json").write_text(json.dumps(info))
    group.start_all_reduce = start_all_reduce


def collectives(out: Path, rank: int, world: int) -> None:
    """all_reduce (sum, avg, max), broadcast, all_gather, barrier, and the sampler's shares."""
    import tinynet.distributed as dist
    results = {}
    t = tinynet.tensor([1.0, 2.0, 3.0]) * (rank + 1)
    dist.all_reduce(t)
    results["sum"] = t.numpy()
    t = tinynet.tensor([1.0, 2.0]) * (rank + 1)
    dist.all_reduce(t, op=dist.ReduceOp.AVG)
    results["avg"] = t.numpy()
    t = tinynet.tensor([float(rank), -float(rank)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    results["max"] = t.numpy()
    t = tinynet.full((2, 2), float(rank + 7))
    dist.broadcast(t, src=world - 1)
    results["broadcast"] = t.numpy()
    parts = [tinynet.zeros(3, dtype=tinynet.int64) for _ in range(world)]
    dist.all_gather(parts, tinynet.arange(3) + 10 * rank)
    results["all_gather"] = np.stack([p.numpy() for p in parts])
    dist.barrier()
    sampler = dist.DistributedSampler(range(10), seed=3)  # rank and world size from the group
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        results[f"sampler_epoch{epoch}"] = np.array(list(sampler))
    results["no_sync_grad"], results["no_sync_expected"] = _no_sync(rank, world)
    results.update(_sync_batchnorm_gradients(rank, world))
    results["shared_grads"], results["shared_expected"] = _shared_and_unused(rank, world)

    from tinynet.compile import compile_step

    def doubled_sum(x):  # a user's all_reduce inside a compiled step: recorded, then replayed
        y = x * 2
        dist.all_reduce(y)
        return y
    step = compile_step(doubled_sum)
    inputs = [tinynet.full((3,), float(k + rank)) for k in range(5)]
    results["compiled_all_reduce"] = np.stack([step(x).numpy() for x in inputs])
    results["compiled_replays"] = np.array(step.fallback_reason(inputs[0]) is None and len(step.program(inputs[0])) == 2)
    np.savez(out / f"collectives_rank{rank}.npz", **results)


def _sync_batchnorm_gradients(rank: int, world: int) -> dict:
    """SyncBatchNorm in float64 on this rank's share of a batch against BatchNorm2d on the whole
    batch: the output and the input gradient of this rank's rows, the running statistics, and
    the rank's share of the weight and bias gradients (summed over the ranks by the test)."""
    import tinynet.distributed as dist
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4 * world, 3, 5, 5)) * 2 + 1
    cotangent = rng.standard_normal(x.shape)
    rows = slice(4 * rank, 4 * (rank + 1))
    results = {}
    for name, layer, xs, vs in (("sync", dist.SyncBatchNorm(3), x[rows], cotangent[rows]),
                                ("full", nn.BatchNorm2d(3), x, cotangent)):
        layer = layer.double()
        layer.weight.data[...] = [0.5, 1.5, -2.0]
        inp = tinynet.tensor(xs, requires_grad=True)
        out = layer(inp)
        (out * tinynet.tensor(vs)).sum().backward()
        keep = rows if name == "full" else slice(None)
        results.update({f"bn_{name}_y": out.detach().numpy()[keep], f"bn_{name}_dx": inp.grad.numpy()[keep],
                        f"bn_{name}_dw": layer.weight.grad.numpy(), f"bn_{name}_db": layer.bias.grad.numpy(),
                        f"bn_{name}_mean": layer.running_mean.numpy(), f"bn_{name}_var": layer.running_var.numpy()})
    return results


class _SharedAndUnused(nn.Module):
    """A weight used on two paths (tinynet accumulates it twice) and a parameter never used."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(3, 3)
        self.unused = nn.Linear(3, 3)

    def forward(self, x):
        return self.shared(self.shared(x).tanh())


def _shared_and_unused(rank: int, world: int):
    """DDP on _SharedAndUnused for 2 steps (the hooks must wait for both paths into the shared
    weight and not wait for the unused one): returns (DDP's gradients, the ranks' average
    computed on a plain copy), each concatenated over all parameters."""
    import tinynet.distributed as dist
    rng = np.random.default_rng(5)
    xs = rng.standard_normal((world, 6, 3)).astype(np.float32)
    tinynet.manual_seed(0)
    model, plain = _SharedAndUnused(), _SharedAndUnused()
    plain.load_state_dict(model.state_dict())
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=1e-5)  # one parameter per bucket
    group, started = ddp._group, []
    start = group.start_all_reduce
    group.start_all_reduce = lambda array, op: started.append(1) or start(array, op)
    for _ in range(2):
        ddp.zero_grad()
        (ddp(tinynet.tensor(xs[rank])) ** 2).mean().backward()
    group.start_all_reduce = start
    assert len(started) == 2 * 4, f"{len(started)} bucket all-reduces for 2 steps of 4 buckets"  # once each
    for r in range(world):
        (plain(tinynet.tensor(xs[r])) ** 2).mean().backward()

    def flat(m, scale=1.0):
        return np.concatenate([(p.grad.numpy() * scale if p.grad is not None else np.zeros(p.shape)).ravel()
                               for p in m.parameters()])
    return flat(model), flat(plain, 1 / world)


def _no_sync(rank: int, world: int):
    """Two micro-batches per rank, the first inside ``no_sync()``: the gradient is the average
    over the ranks of each rank's summed micro-batch gradients. Returns (DDP's weight gradient,
    the same computed from every rank's data on a plain copy of the layer)."""
    import tinynet.distributed as dist
    rng = np.random.default_rng(7)
    xs = rng.standard_normal((world, 2, 4, 3)).astype(np.float32)  # [rank, micro-batch, samples, features]
    tinynet.manual_seed(0)
    layer = nn.Linear(3, 2)
    plain = nn.Linear(3, 2)
    plain.load_state_dict(layer.state_dict())
    ddp = dist.DistributedDataParallel(layer)
    with ddp.no_sync():
        (ddp(tinynet.tensor(xs[rank, 0])) ** 2).mean().backward()
    (ddp(tinynet.tensor(xs[rank, 1])) ** 2).mean().backward()
    for r in range(world):
        for m in range(2):
            (plain(tinynet.tensor(xs[r, m])) ** 2).mean().backward()
    return layer.weight.grad.numpy(), plain.weight.grad.numpy() / world


def fit_run(out: Path, rank: int, world: int) -> None:
    """tinynet.train.fit over a DistributedSampler with checkpoints; records every checkpoint
    write with the rank that made it. argv[3] (optional): 'resume' and the number of epochs."""
    import tinynet.distributed as dist
    from tinynet import train
    from tinynet.data import DataLoader, TensorDataset
    resume = len(sys.argv) > 3 and sys.argv[3] == "resume"
    epochs = int(sys.argv[4]) if resume else 2
    save = train.save

    def logged_save(state, path):
        with open(out / f"writes_rank{rank}.txt", "a") as log:
            log.write(f"{Path(path).name}\n")
        save(state, path)
    train.save = logged_save
    x, y = data(8)
    dataset = TensorDataset(tinynet.tensor(x), tinynet.tensor(y))
    loader = DataLoader(dataset, batch_size=BATCH // world, sampler=dist.DistributedSampler(dataset, seed=1))
    tinynet.manual_seed(0)
    model = dist.DistributedDataParallel(bn_net())
    optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    history = train.fit(model, optimizer, nn.CrossEntropyLoss(), loader, epochs=epochs, progress=False,
                        checkpoint_dir=out / "checkpoints", resume=resume)
    np.savez(out / f"fit{'_resumed' if resume else ''}_rank{rank}.npz", **state_arrays(model.module),
             train_loss=np.array(history.train_loss))


def fail(out: Path, rank: int, world: int) -> None:
    """Rank 1 raises or dies (argv[3]: 'raise' or 'kill') while rank 0 waits in a collective."""
    import tinynet.distributed as dist
    if rank == 1:
        time.sleep(0.5)
        if sys.argv[3] == "raise":
            raise ValueError("rank 1 fails on purpose")
        os.kill(os.getpid(), 9)
    dist.all_reduce(tinynet.ones(3))
    (out / "rank0_finished").write_text("the collective returned")


SCENARIOS = {"equivalence": equivalence, "collectives": collectives, "fit": fit_run, "fail": fail}

if __name__ == "__main__":
    import tinynet.distributed as dist
    dist.init_process_group("mpi")
    scenario, out = sys.argv[1], Path(sys.argv[2])
    SCENARIOS[scenario](out, dist.get_rank(), dist.get_world_size())
