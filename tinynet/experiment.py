"""What every MNIST example shares: its command line, loading the data onto the device, and the
run itself (train, evaluate, write figures and history). An example defines its model in plain
sight and hands it to :func:`run`."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from . import random as _random
from .backend import device as _device
from .data import MNIST, DataLoader, TensorDataset, random_rotation
from .plots import plot_confusion, plot_digits, plot_history
from .train import evaluate, fit, per_class_accuracy

__all__ = ["make_parser", "load_mnist", "run"]


def make_parser(description: str, *, epochs: int, batch_size: int, lr: float, seed: int = 1,
                test_batch_size: int = 1000, out: str = "runs/example") -> argparse.ArgumentParser:
    """The options every example takes, with the report's settings as defaults."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, gpu, cuda or cuda:N")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--test-batch-size", type=int, default=test_batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--seed", type=int, default=seed)
    p.add_argument("--data-dir", default=None,
                   help="folder with the MNIST files (default: $TINYNET_DATA, else ~/.cache/tinynet)")
    p.add_argument("--download", action="store_true", help="download MNIST if it is not in --data-dir")
    p.add_argument("--out", default=out, help="folder for figures, history.json and checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.npz")
    p.add_argument("--log-every", type=int, default=50, help="steps between progress-bar updates")
    p.add_argument("--subset", type=int, default=None,
                   help="use only the first N training and N test images (quick runs)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--compile", action="store_true",
                   help="record the training and evaluation steps once and replay them (tinynet.compile_step)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel training over the ranks that `python -m tinynet.distributed.run -n N` "
                        "starts (backend mpi on cpu, nccl on gpu); --batch-size is per rank")
    p.add_argument("--export-onnx", default=None, metavar="PATH",
                   help="after training, export the model to this ONNX file (needs tinynet[onnx])")
    return p


def load_mnist(args, normalize=(0.1307, 0.3081), train_transform=None):
    """MNIST train and test loaders with the whole set on ``args.device``; ``train_transform``
    (e.g. a random rotation) is applied to every training batch of images on the device."""
    _init_distributed(args)
    dev = _device(args.device)
    train = MNIST(args.data_dir, train=True, download=args.download, device=dev, normalize=normalize)
    test = MNIST(args.data_dir, train=False, download=args.download, device=dev, normalize=normalize)
    if args.subset:
        train = TensorDataset(train.data[:args.subset], train.targets[:args.subset])
        test = TensorDataset(test.data[:args.subset], test.targets[:args.subset])
    if getattr(args, "distributed", False):  # each rank its share, reshuffled by fit's set_epoch
        from .distributed import DistributedSampler
        train_loader = DataLoader(train, batch_size=args.batch_size, sampler=DistributedSampler(train, seed=args.seed),
                                  batch_transform=train_transform)
    else:
        train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, seed=args.seed,
                                  batch_transform=train_transform)
    test_loader = DataLoader(test, batch_size=args.test_batch_size, shuffle=False)
    return train_loader, test_loader


def rotation(degrees: float, fill: float = -1.0):
    """A batch transform rotating each training image by a random angle in [-degrees, degrees]
    (``RandomRotation(degrees)`` of torchvision), or None when ``degrees`` is 0. ``fill`` is the
    background after normalisation: -1 is black under Normalize(0.5, 0.5)."""
    if not degrees:
        return None
    return lambda images: random_rotation(images, degrees, fill=fill)


def _init_distributed(args) -> None:
    """With ``--distributed``, join the process group once (``mpi`` on the CPU, ``nccl`` on a
    GPU, which also gives each rank its own GPU)."""
    if not getattr(args, "distributed", False):
        ranks = int(os.environ.get("PMI_SIZE", "1"))  # set by mpiexec for each rank it starts
        if ranks > 1:
            raise SystemExit(f"this script was started on {ranks} ranks (tinynet.distributed.run or mpiexec) "
                             "without --distributed: every rank would train alone and write the same files; "
                             "add --distributed")
        return
    from . import distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("mpi" if _device(args.device).type == "cpu" else "nccl")
    if dist.get_backend() == "nccl":
        args.device = str(dist.process_group.require_group("--distributed").device)


def run(model, optimizer, loss_fn, args, train_loader, test_loader, scheduler=None, name: str = "model"):
    """Train, evaluate, and write ``history.json``, ``curves.png``, ``confusion.png``,
    ``misclassified.png`` and ``predictions.png`` under ``args.out``. Returns the history.
    With ``--distributed`` the model is wrapped in DistributedDataParallel; every rank trains,
    and rank 0 alone evaluates, prints and writes."""
    out = Path(args.out)
    module = model  # what is exported to ONNX: the model itself, never its DDP wrapper
    if getattr(args, "distributed", False):
        from .distributed import DistributedDataParallel, get_rank
        _init_distributed(args)
        model = DistributedDataParallel(model)
        if get_rank() != 0:
            return fit(model, optimizer, loss_fn, train_loader, test_loader=None, epochs=args.epochs,
                       scheduler=scheduler, checkpoint_dir=out / "checkpoints", resume=args.resume,
                       progress=False, compile=args.compile)
    out.mkdir(parents=True, exist_ok=True)
    history = fit(model, optimizer, loss_fn, train_loader, test_loader, epochs=args.epochs,
                  scheduler=scheduler, checkpoint_dir=out / "checkpoints", resume=args.resume,
                  log_every=args.log_every, progress=not args.no_progress, compile=args.compile)
    result = evaluate(model, test_loader, loss_fn, compile=args.compile)
    history.save_json(out / "history.json")
    plot_history(history, out / "curves.png", title=name)
    plot_confusion(result["confusion"], out / "confusion.png", title=f"{name}: confusion matrix")
    images = test_loader.dataset.tensors[0].detach().cpu().numpy()
    wrong = np.flatnonzero(result["predictions"] != result["targets"])[:32]
    plot_digits(images[wrong], result["targets"][wrong], result["predictions"][wrong],
                out / "misclassified.png", title=f"{name}: misclassified test digits (true→predicted)")
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(result["targets"]), size=min(32, len(result["targets"])), replace=False)
    plot_digits(images[pick], result["targets"][pick], result["predictions"][pick],
                out / "predictions.png", title=f"{name}: random test digits (true→predicted)")
    if args.export_onnx:
        from .onnx import export
        example = next(iter(test_loader))[0][:2]  # a batch of 2, so the batch dim is unambiguous
        export(module, example, args.export_onnx)
        print(f"ONNX model written to {args.export_onnx}")
    per_class = per_class_accuracy(result["confusion"])
    summary = {"final_test_acc": result["accuracy"], "best_test_acc": history.best_test_acc,
               "per_class_acc": [round(float(a), 4) for a in per_class]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print("per-class accuracy: " + "  ".join(f"{c}:{a * 100:.2f}%" for c, a in enumerate(per_class)))
    print(f"final test accuracy {result['accuracy'] * 100:.2f}%, best {history.best_test_acc * 100:.2f}%")
    print(f"figures, history and checkpoints written to {out}/")
    return history


def seed_everything(seed: int) -> None:
    """Seed every device's generator (examples call this before building the model)."""
    _random.manual_seed(seed)
