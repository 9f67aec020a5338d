"""MNIST speedrun: the least training time to 99% test accuracy (the mean over seeds, not one
lucky seed). One epoch of a small convnet (three conv + BatchNorm + ReLU blocks, one of them
max-pooled, then one linear layer; about 1.3 MFLOP per image forward), SGD with Nesterov
momentum, a per-step learning rate that warms up linearly and then decays linearly to zero,
label smoothing 0.1, batch 64, and the whole training set held on the device. The training
step reads nothing back from the device, so ``tinynet.compile_step`` records it once and
replays it (``--no-compile`` runs it eagerly).

Only the training is timed: from the first step to the last, the device synchronised at the
end. The evaluation on the 10,000 test images comes after and is not part of the time.

    python examples/speedrun.py --runs 3                 # CPU
    python examples/speedrun.py --device gpu --runs 3
"""
import time

import tinynet
import tinynet.nn.functional as F
from tinynet import nn, optim
from tinynet.backend import device as _device
from tinynet.data import DataLoader
from tinynet.experiment import (UsageError, command_line, command_parser, fraction, mnist_sets, non_negative_float,
                                positive_int, seed_everything)
from tinynet.train import evaluate, make_train_step


def speednet(widths=(8, 16, 64)):
    """A 4x4 stride-2 "patch" convolution straight to 14x14, a 3x3 convolution + 2x2 max-pool to
    7x7, a 3x3 stride-2 convolution to 4x4, each followed by BatchNorm and ReLU, then a linear
    layer to the 10 classes. Convolutions have no bias (BatchNorm follows). Pooling comes before
    BatchNorm and ReLU, so that those run on a quarter of the pixels (the full-resolution
    layers are what costs most on a CPU: every op there is a pass over memory)."""
    c1, c2, c3 = widths
    return nn.Sequential(
        nn.Conv2d(1, c1, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(),   # c1x14x14
        nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(c2), nn.ReLU(),  # c2x7x7
        nn.Conv2d(c2, c3, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c3), nn.ReLU(),  # c3x4x4
        nn.Flatten(),
        nn.Linear(c3 * 4 * 4, 10),
    )


def lr_at(step, total, peak, warmup):
    """Linear warm-up from 0 to ``peak`` over the first ``warmup`` fraction of the steps, then
    linear decay to 0 at the last step. Written into the optimiser's groups by hand before each
    step (OneCycleLR with anneal_strategy='linear' is close, but starts at peak/25 and stops
    above 0)."""
    ramp = max(1, round(warmup * total))
    if step < ramp:
        return peak * (step + 1) / ramp
    return peak * max(0.0, (total - step) / max(1, total - ramp))


def train_once(args, seed, train_set, test_set, dev):
    seed_everything(seed)
    model = speednet(tuple(args.widths)).to(dev)
    optimizer = optim.SGD(model.parameters(), lr=0.0, momentum=args.momentum, nesterov=True,
                          weight_decay=args.weight_decay)
    # fit's step: forward, loss, backward, update; it returns the batch's summed loss (and its
    # correct count) as device tensors, with no read on the host, so it can be recorded and replayed.
    step_fn = make_train_step(model, optimizer,
                              lambda logits, y: F.cross_entropy(logits, y, label_smoothing=args.label_smoothing))
    if not args.no_compile:
        step_fn = tinynet.compile_step(step_fn, model=model)
    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, seed=seed, drop_last=True)
    total = args.epochs * len(loader)
    model.train()

    if total == 0:
        raise UsageError(f"speedrun: fewer training images ({len(train_set)}) than one batch ({args.batch_size})")
    step, loss_sum, first_loss, seen = 0, None, None, 0
    began, began_cpu = time.perf_counter(), time.process_time()
    for epoch in range(1, args.epochs + 1):
        loader.set_epoch(epoch)
        for x, y in loader:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, args.lr, args.warmup)
            batch_loss, _ = step_fn(x, y)
            # On the device, no read; clone(): a CUDA graph's step returns the same buffers every call.
            loss_sum = batch_loss.clone() if loss_sum is None else loss_sum + batch_loss
            if first_loss is None:
                with tinynet.no_grad():
                    first_loss = batch_loss / y.shape[0]  # a new tensor: read after training
            seen += y.shape[0]
            step += 1
    if dev.type == "cuda":
        tinynet.cuda.synchronize()
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu

    losses = (first_loss.item(), loss_sum.item() / seen)
    test_loader = DataLoader(test_set, batch_size=args.test_batch_size)
    result = evaluate(model, test_loader)
    return result["accuracy"], seconds, cpu_seconds, losses


def main():
    p = command_parser(__doc__)
    p.add_argument("--seed", type=int, default=0, help="seed of the first run")
    p.add_argument("--runs", type=positive_int, default=1, help="train N times with seeds seed .. seed+N-1")
    p.add_argument("--epochs", type=positive_int, default=1, help="passes over the training set")
    p.add_argument("--batch-size", type=positive_int, default=64, help="training batch size")
    p.add_argument("--test-batch-size", type=positive_int, default=2000, help="evaluation batch size")
    p.add_argument("--lr", type=non_negative_float, default=0.3, help="peak learning rate")
    p.add_argument("--warmup", type=fraction, default=0.2, help="fraction of the steps warming up")
    p.add_argument("--momentum", type=non_negative_float, default=0.9, help="Nesterov momentum")
    p.add_argument("--weight-decay", type=non_negative_float, default=5e-4, help="SGD weight decay")
    p.add_argument("--label-smoothing", type=fraction, default=0.1, help="cross-entropy label smoothing")
    p.add_argument("--widths", type=positive_int, nargs=3, default=[8, 16, 64], metavar="C",
                   help="channels of the three conv blocks")
    p.add_argument("--subset", type=positive_int, default=None,
                   help="use only the first N training and N test images (quick runs)")
    p.add_argument("--no-compile", action="store_true", help="run the training step eagerly")
    args = p.parse_args()

    dev = _device(args.device)
    train_set, test_set = mnist_sets(args)
    print(f"speedrun: {len(train_set)} training images on {dev}, widths {args.widths}, {args.epochs} epoch(s), "
          f"batch {args.batch_size}, lr {args.lr}, compile {not args.no_compile}")
    accuracies, times, cpu_times = [], [], []
    for seed in range(args.seed, args.seed + args.runs):
        acc, seconds, cpu_seconds, (first_loss, train_loss) = train_once(args, seed, train_set, test_set, dev)
        accuracies.append(acc)
        times.append(seconds)
        cpu_times.append(cpu_seconds)
        print(f"run seed {seed}: train loss {first_loss:.4f} (first batch), {train_loss:.4f} (mean), "
              f"test accuracy {acc * 100:.2f}%, "
              f"training time {seconds:.2f} s (process CPU time {cpu_seconds:.2f} s)")
    n = len(accuracies)
    mean_acc, mean_time, mean_cpu = sum(accuracies) / n, sum(times) / n, sum(cpu_times) / n
    verdict = "reached" if mean_acc >= 0.99 else "did NOT reach"
    print(f"mean over {n} run(s): test accuracy {mean_acc * 100:.2f}%, training time {mean_time:.2f} s "
          f"(process CPU time {mean_cpu:.2f} s) on {dev}: {verdict} 99%")


if __name__ == "__main__":
    command_line(main)
