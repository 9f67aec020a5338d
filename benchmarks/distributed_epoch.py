"""Seconds per training epoch of LeNet (examples/lenet.py, batch 256 in all) on the CPU, on 1 or
more ranks: wall time and each rank's CPU time (``time.process_time``), training steps only.

    python benchmarks/distributed_epoch.py --data-dir DIR                       # 1 rank
    python -m tinynet.distributed.run -n 2 benchmarks/distributed_epoch.py --data-dir DIR

On a machine whose cores other processes also use, the wall time depends on the share the ranks
get; the CPU time says what the work costs.
"""
from __future__ import annotations

import argparse
import time

import tinynet
import tinynet.distributed as dist
from tinynet import nn, optim
from tinynet.data import MNIST, DataLoader
from tinynet.train import make_train_step

from harness import load_example


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--global-batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    train = MNIST(args.data_dir, train=True, normalize=None)
    sampler = dist.DistributedSampler(train, seed=1)
    loader = DataLoader(train, batch_size=args.global_batch // world, sampler=sampler)
    tinynet.manual_seed(1)
    model = dist.DistributedDataParallel(load_example("lenet").lenet())
    optimizer = optim.SGD(model.parameters(), lr=0.9)
    step = make_train_step(model, optimizer, nn.CrossEntropyLoss())
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        dist.barrier()
        wall, cpu = time.perf_counter(), time.process_time()
        for x, y in loader:
            step(x, y)
        dist.barrier()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        times = tinynet.tensor([wall, cpu], dtype=tinynet.float64)
        gathered = [tinynet.zeros(2, dtype=tinynet.float64) for _ in range(world)]
        dist.all_gather(gathered, times)
        if rank == 0:
            cpus = ", ".join(f"{g[1].item():.1f}" for g in gathered)
            print(f"{world} rank(s), batch {args.global_batch // world} per rank, epoch {epoch + 1}: "
                  f"{wall:.1f} s wall, CPU s per rank [{cpus}]", flush=True)


if __name__ == "__main__":
    main()
