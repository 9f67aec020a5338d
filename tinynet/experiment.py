"""What every MNIST example shares: its command line, loading the data onto the device, and the
run itself (train, evaluate, write figures and history). An example defines its model in plain
sight and hands it to :func:`run`.

Command-line errors a user can fix (a bad option value, ``--device gpu`` on a machine without a
usable GPU, a missing data folder, a damaged data file) print one line on stderr and exit with
status 2, as argparse does: bad values are refused while parsing (:class:`CommandParser`), the
rest are raised as :class:`UsageError` (or FileNotFoundError) and reported by
:func:`command_line`, which every example's ``__main__`` calls. ``--debug`` or
``TINYNET_DEBUG=1`` shows the full traceback instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from . import backend
from . import random as _random
from .backend import device as _device
from .data import MNIST, DataLoader, DownloadError, TensorDataset, random_rotation
from .data.mnist import default_root
from .plots import plot_confusion, plot_digits, plot_history
from .train import evaluate, fit, per_class_accuracy

__all__ = ["make_parser", "command_parser", "command_line", "UsageError", "load_mnist", "mnist_sets", "run",
           "positive_int", "non_negative_float", "fraction", "device_option"]


# ------------------------------------------------------------------------------ the command line
class UsageError(Exception):
    """A problem the person at the command line can fix (missing or damaged data, an option
    that does not fit): :func:`command_line` prints it as one line and exits with status 2."""


def _debug_requested() -> bool:
    return "--debug" in sys.argv[1:] or os.environ.get("TINYNET_DEBUG", "").strip().lower() not in ("", "0", "no")


def command_line(main) -> None:
    """Run an example's ``main()`` as a command. A :class:`UsageError` or FileNotFoundError
    becomes one line on stderr (``lenet.py: error: ...``) and exit status 2, like argparse's own
    errors; any other exception is a bug and keeps its traceback. With ``--debug`` or
    ``TINYNET_DEBUG=1`` every error shows its full traceback."""
    try:
        main()
    except (UsageError, FileNotFoundError) as error:
        if _debug_requested():
            raise
        message = " ".join(str(error).split())  # one line, however the message was laid out
        print(f"{Path(sys.argv[0]).name}: error: {message} (--debug shows the traceback)", file=sys.stderr)
        sys.exit(2)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` keeps the example's docstring as written (its usage lines one per line) and
    shows each option's default."""

    def _get_help_string(self, action):  # the hook ArgumentDefaultsHelpFormatter itself overrides
        if action.default is None or action.default is False:  # unset options and flags: nothing to show
            return action.help
        return super()._get_help_string(action)


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (``prog: error: ...``, exit status
    2): the usage summary argparse prints first would bury the one line that matters."""

    def __init__(self, description: str, **kwargs):
        super().__init__(description=description, formatter_class=HelpFormatter, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def _number(convert, text: str, low: float, high: float | None, expected: str):
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not value >= low or (high is not None and not value <= high):  # 'not >=' also refuses nan
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse ``type=``: an integer >= 1 (epochs, batch sizes, counts)."""
    return _number(int, text, 1, None, "a positive integer")


def non_negative_float(text: str) -> float:
    """argparse ``type=``: a number >= 0 (learning rates, momentum, weight decay)."""
    return _number(float, text, 0.0, None, "a number >= 0")


def fraction(text: str) -> float:
    """argparse ``type=``: a number in [0, 1] (warm-up fractions, label smoothing)."""
    return _number(float, text, 0.0, 1.0, "a number between 0 and 1")


def device_option(text: str) -> str:
    """argparse ``type=`` of ``--device``: a device this machine can use, checked while parsing
    so that a missing GPU is a one-line error rather than a traceback halfway through loading
    the data. The message says what is missing: CuPy, or a GPU that CuPy can see."""
    try:
        dev = _device(text)
        if dev.type == "cuda":
            backend.array_module(dev)  # raises RuntimeError naming what is missing
    except (ValueError, RuntimeError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def command_parser(description: str) -> CommandParser:
    """The options every example script takes, whatever it trains: where it runs and where its
    data is. ``description`` is the script's docstring, shown by ``--help`` as written."""
    p = CommandParser(description)
    p.add_argument("--device", default="cpu", type=device_option, help="cpu, gpu, cuda or cuda:N")
    p.add_argument("--data-dir", default=None,
                   help="folder with the MNIST files (default: $TINYNET_DATA, else ~/.cache/tinynet)")
    p.add_argument("--download", action="store_true", help="download MNIST if it is not in --data-dir")
    p.add_argument("--verify-data", action="store_true",
                   help="check the MNIST files in --data-dir against their known sha256 first")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error (or TINYNET_DEBUG=1)")
    return p


def make_parser(description: str, *, epochs: int, batch_size: int, lr: float, seed: int = 1,
                test_batch_size: int = 1000, out: str = "runs/example") -> argparse.ArgumentParser:
    """The options every training example takes, with the report's settings as defaults."""
    p = command_parser(description)
    p.add_argument("--epochs", type=positive_int, default=epochs, help="passes over the training set")
    p.add_argument("--batch-size", type=positive_int, default=batch_size, help="training batch size")
    p.add_argument("--test-batch-size", type=positive_int, default=test_batch_size, help="evaluation batch size")
    p.add_argument("--lr", type=non_negative_float, default=lr, help="learning rate")
    p.add_argument("--seed", type=int, default=seed, help="seed of the weights, the shuffling and dropout")
    p.add_argument("--out", default=out, help="folder for figures, history.json and checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.npz")
    p.add_argument("--log-every", type=positive_int, default=50, help="steps between progress-bar updates")
    p.add_argument("--subset", type=positive_int, default=None,
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


# ------------------------------------------------------------------------------ data
def mnist_sets(args, normalize=(0.1307, 0.3081)) -> tuple:
    """The MNIST training and test sets on ``args.device`` (the first ``args.subset`` images of
    each when given), as the command line asked: ``--data-dir``, ``--download``,
    ``--verify-data``. Missing, damaged or undownloadable files raise :class:`UsageError`.
    With ``--distributed`` the process group is joined first (on a GPU it picks the device)."""
    _init_distributed(args)
    dev = _device(args.device)
    options = dict(download=args.download, verify=args.verify_data, device=dev, normalize=normalize)
    try:
        train = MNIST(args.data_dir, train=True, **options)
        test = MNIST(args.data_dir, train=False, **options)
    except FileNotFoundError as error:
        root = Path(args.data_dir).expanduser() if args.data_dir else default_root()
        where = f"{root} (no such folder)" if not root.is_dir() else str(root)
        raise UsageError(f"MNIST not found in {where}: pass --download to fetch it there, or --data-dir DIR "
                         "(or $TINYNET_DATA) for a folder that holds its four .gz files") from error
    except (ValueError, DownloadError) as error:  # damaged or foreign files; no mirror reachable
        raise UsageError(str(error)) from error
    if args.subset:
        train = TensorDataset(train.data[:args.subset], train.targets[:args.subset])
        test = TensorDataset(test.data[:args.subset], test.targets[:args.subset])
    return train, test


def load_mnist(args, normalize=(0.1307, 0.3081), train_transform=None):
    """MNIST train and test loaders with the whole set on ``args.device`` (:func:`mnist_sets`);
    ``train_transform`` (e.g. a random rotation) is applied to every training batch of images
    on the device. With ``--distributed`` each rank draws its share of the training set through a
    :class:`~tinynet.distributed.DistributedSampler`, reshuffled by fit's ``set_epoch``."""
    train, test = mnist_sets(args, normalize)
    if getattr(args, "distributed", False):
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


# ------------------------------------------------------------------------------ the run
def _init_distributed(args) -> None:
    """With ``--distributed``, join the process group once (``mpi`` on the CPU, ``nccl`` on a
    GPU, which also gives each rank its own GPU)."""
    if not getattr(args, "distributed", False):
        ranks = int(os.environ.get("PMI_SIZE", "1"))  # set by mpiexec for each rank it starts
        if ranks > 1:
            raise UsageError(f"this script was started on {ranks} ranks (tinynet.distributed.run or mpiexec) "
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
