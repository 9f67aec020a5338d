"""Training tools shared by the examples: ``fit``, ``evaluate``, metrics and checkpoints.

Under data-parallel training (``tinynet.distributed``) every rank runs ``fit``; only rank 0
prints, shows a progress bar and writes checkpoints, and the epoch's training loss and accuracy
are summed over the ranks (one all-reduce per epoch) so that rank 0 reports the whole epoch.

The training loop never reads device memory inside a step: the running loss and the count
of correct predictions are accumulated as device tensors and read (one synchronisation) only
every ``log_every`` steps and at the end of the epoch. That keeps the GPU busy and the step
capturable into a CUDA graph.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import random as _random
from .autograd import no_grad
from .compile import compile_step
from .distributed import process_group as _dist
from .serialization import load, save
from .tensor import Tensor

__all__ = ["History", "fit", "evaluate", "make_train_step", "accuracy", "confusion_matrix", "per_class_accuracy",
           "save_checkpoint", "load_checkpoint"]


@dataclass
class History:
    """Per-epoch loss and accuracy (train and test), learning rate and seconds."""

    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    test_loss: list = field(default_factory=list)
    test_acc: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    seconds: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def save_json(self, path) -> None:
        Path(path).write_text(json.dumps(self.as_dict(), indent=1))

    @property
    def best_test_acc(self) -> float:
        return max(self.test_acc) if self.test_acc else float("nan")


# ------------------------------------------------------------------------------------ metrics
def _numpy(x) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().data
    return np.asarray(x)


def accuracy(predictions, targets) -> float:
    """Fraction of predictions equal to the targets."""
    p, t = _numpy(predictions), _numpy(targets)
    return float((p == t).mean()) if t.size else float("nan")


def confusion_matrix(predictions, targets, num_classes: int = 10) -> np.ndarray:
    """``cm[true, predicted]`` counts (rows are the true classes, as scikit-learn's)."""
    p, t = _numpy(predictions).astype(np.int64), _numpy(targets).astype(np.int64)
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Accuracy of each true class: the diagonal over the row sums."""
    totals = cm.sum(axis=1)
    return np.divide(np.diag(cm), totals, out=np.full(len(cm), np.nan), where=totals > 0)


# --------------------------------------------------------------------------------- evaluation
@no_grad()
def evaluate(model, loader, loss_fn=None, num_classes: int = 10, compile: bool = False) -> dict:
    """Run ``model`` in eval mode over ``loader``.

    Returns a dict with ``loss`` (mean over samples, if ``loss_fn`` is given), ``accuracy``,
    ``predictions`` and ``targets`` (NumPy arrays) and the ``confusion`` matrix. The model's
    train/eval mode is restored afterwards. ``compile=True`` records the evaluation step once
    per batch shape and replays it (:func:`tinynet.compile_step`).
    """
    was_training = model.training
    model.eval()
    step = _compiled_eval_step(model, loss_fn) if compile else _eval_step(model, loss_fn)
    predictions, targets, loss_sum, count = [], [], None, 0
    for x, y in loader:
        batch_loss, predicted = step(x, y)
        # clone(): a step replayed as a CUDA graph returns the same output buffers every call
        if batch_loss is not None:
            loss_sum = batch_loss.clone() if loss_sum is None else loss_sum + batch_loss
        predictions.append(predicted.clone())
        targets.append(y)
        count += y.shape[0]
    model.train(was_training)
    from .functional import cat
    pred = _numpy(cat(predictions)) if predictions else np.zeros(0, np.int64)
    true = _numpy(cat(targets)) if targets else np.zeros(0, np.int64)
    return {
        "loss": float(loss_sum.item() / count) if loss_sum is not None and count else float("nan"),
        "accuracy": accuracy(pred, true),
        "predictions": pred,
        "targets": true,
        "confusion": confusion_matrix(pred, true, num_classes),
    }


def _eval_step(model, loss_fn):
    """One evaluation batch: (loss summed over the batch or None, predicted classes)."""
    def eval_step(x, y):
        logits = model(x)
        batch_loss = loss_fn(logits, y).detach() * y.shape[0] if loss_fn is not None else None
        return batch_loss, logits.argmax(1)
    return eval_step


def _compiled_eval_step(model, loss_fn):
    """The compiled evaluation step of (model, loss function), kept on the model between calls
    of ``evaluate`` so that each epoch's evaluation replays the first one's recording (one at a
    time: a new loss function replaces it)."""
    cached = model.__dict__.get("_compiled_eval_step")
    if cached is None or cached[0] is not loss_fn:
        cached = (loss_fn, compile_step(_eval_step(model, loss_fn), model=model, warmup=0))
        object.__setattr__(model, "_compiled_eval_step", cached)  # not a submodule or buffer
    return cached[1]


# -------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path, model, optimizer, scheduler=None, epoch: int = 0, history: History | None = None,
                    devices=("cpu",)) -> None:
    """Everything needed to resume: weights, optimiser and scheduler state, the finished epoch,
    the history and the random generators' states."""
    state = {
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "history": history.as_dict() if history is not None else None,
        "rng": json.dumps(_random.get_rng_state("cpu")),
    }
    save(state, path)


def load_checkpoint(path, model, optimizer=None, scheduler=None) -> tuple[int, History]:
    """Restore what :func:`save_checkpoint` wrote; returns (finished epoch, history)."""
    state = load(path)
    _unwrap(model).load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    _random.set_rng_state(json.loads(state["rng"]), "cpu")
    history = History(**state["history"]) if state.get("history") else History()
    return int(state["epoch"]), history


# ------------------------------------------------------------------------------------ fitting
def fit(model, optimizer, loss_fn, train_loader, test_loader=None, epochs: int = 1, scheduler=None,
        checkpoint_dir=None, resume: bool = False, log_every: int = 50, progress: bool = True,
        on_epoch_end=None, compile: bool = False) -> History:
    """Train ``model`` for ``epochs`` and return the :class:`History`.

    Args:
        loss_fn: ``loss_fn(logits, targets)`` -> scalar tensor.
        scheduler: stepped once per epoch (after the epoch's last step).
        checkpoint_dir: if given, ``epoch_{k}.npz`` and ``last.npz`` are written after every
            epoch; with ``resume=True`` training continues after the epoch in ``last.npz``.
        log_every: steps between reads of the running loss from the device (the only
            host-device synchronisations inside an epoch).
        on_epoch_end: optional ``fn(epoch, history)`` called after each epoch.
        Data-parallel (``model`` a DistributedDataParallel, the loader's sampler a
        DistributedSampler): every rank calls ``fit``; rank 0 alone prints and writes the
        checkpoints, and on ``resume`` every rank reads rank 0's ``last.npz``.
        compile: record the training and evaluation steps once and replay them
            (:func:`tinynet.compile_step`): the same results with less Python per step.
    """
    history, start = History(), 0
    main = _dist.get_rank() == 0
    progress = progress and main
    train_step = make_train_step(model, optimizer, loss_fn)
    if compile:
        train_step = compile_step(train_step, model=model)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if resume and checkpoint_dir is not None and (checkpoint_dir / "last.npz").exists():
        start, history = load_checkpoint(checkpoint_dir / "last.npz", model, optimizer, scheduler)
        if main:
            print(f"resumed from {checkpoint_dir / 'last.npz'} after epoch {start}")
    if checkpoint_dir is not None and main:
        os.makedirs(checkpoint_dir, exist_ok=True)

    for epoch in range(start + 1, epochs + 1):
        # A new order per epoch, the same on every rank: the loader tells its sampler.
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        elif hasattr(getattr(train_loader, "sampler", None), "set_epoch"):
            train_loader.sampler.set_epoch(epoch)
        began = time.perf_counter()
        train_loss, train_acc = _train_one_epoch(train_step, model, train_loader, epoch, epochs, log_every,
                                                 progress)
        history.train_loss.append(train_loss)
        history.train_acc.append(train_acc)
        history.lr.append(optimizer.param_groups[0]["lr"])
        if scheduler is not None:
            scheduler.step()
        history.seconds.append(time.perf_counter() - began)
        if test_loader is not None:
            result = evaluate(model, test_loader, loss_fn, compile=compile)
            history.test_loss.append(result["loss"])
            history.test_acc.append(result["accuracy"])
        test_part = f", test loss {history.test_loss[-1]:.4f} acc {history.test_acc[-1]:.4f}" \
            if test_loader is not None else ""
        if main:
            print(f"epoch {epoch}/{epochs}: train loss {train_loss:.4f} acc {train_acc:.4f}{test_part} "
                  f"({history.seconds[-1]:.1f} s)")
        if checkpoint_dir is not None and main:
            save_checkpoint(checkpoint_dir / f"epoch_{epoch}.npz", model, optimizer, scheduler, epoch, history)
            save_checkpoint(checkpoint_dir / "last.npz", model, optimizer, scheduler, epoch, history)
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
    return history


def make_train_step(model, optimizer, loss_fn):
    """The training step ``fit`` runs: forward, loss, backward and update on one batch. It
    returns (loss summed over the batch, number of correct predictions) as device tensors, so
    that nothing is read on the host inside the step."""
    def train_step(x, y):
        logits = model(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=False)  # gradients stay in their buffers, updated in place
        loss.backward()
        optimizer.step()
        with no_grad():
            return loss.detach() * y.shape[0], (logits.argmax(1) == y).sum()
    return train_step


def _train_one_epoch(train_step, model, loader, epoch, epochs, log_every, progress):
    from tqdm import tqdm

    model.train()
    bar = tqdm(loader, desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False,
               unit="batch", dynamic_ncols=True)
    loss_sum = correct = None  # device tensors: read every log_every steps only
    seen = 0
    began = time.perf_counter()
    for step, (x, y) in enumerate(bar, 1):
        batch_loss, batch_correct = train_step(x, y)
        with no_grad():
            # clone(): a step replayed as a CUDA graph returns the same output buffers every call
            loss_sum = batch_loss.clone() if loss_sum is None else loss_sum + batch_loss
            correct = batch_correct.clone() if correct is None else correct + batch_correct
        seen += y.shape[0]
        if progress and step % log_every == 0:
            rate = seen / (time.perf_counter() - began)
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", img_s=f"{rate:.0f}")
    bar.close()
    if _dist.get_world_size() > 1:  # the whole epoch's numbers, over every rank's share
        loss_sum, correct, seen = _sum_over_ranks(loss_sum, correct, seen)
    if seen == 0:
        return float("nan"), float("nan")
    return loss_sum.item() / seen, correct.item() / seen


def _sum_over_ranks(loss_sum, correct, seen):
    """(loss sum, correct count, samples) summed over the ranks in one all-reduce."""
    from .creation import tensor
    from .dtypes import float64
    totals = tensor([0.0 if loss_sum is None else loss_sum.item(), 0 if correct is None else correct.item(), seen],
                    dtype=float64, device="cpu" if loss_sum is None else loss_sum.device)
    _dist.all_reduce(totals)
    loss, right, count = totals.tolist()
    return tensor(loss), tensor(right), int(count)


def _unwrap(model):
    """The model inside a DistributedDataParallel (its checkpoints load into a plain model)."""
    from .distributed.ddp import DistributedDataParallel
    return model.module if isinstance(model, DistributedDataParallel) else model
