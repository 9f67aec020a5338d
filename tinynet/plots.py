"""Figures the MNIST reports showed, written as PNG files with matplotlib's headless backend:
loss/accuracy curves, a confusion-matrix heatmap, grids of digits with their predictions, and
accuracy against a swept setting."""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_history", "plot_confusion", "plot_digits", "plot_sweep"]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_history(history, path, title: str = "") -> Path:
    """Loss (left) and accuracy (right) per epoch, train and test."""
    plt = _pyplot()
    h = history.as_dict() if hasattr(history, "as_dict") else dict(history)
    epochs = np.arange(1, len(h["train_loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, h["train_loss"], "o-", label="train")
    if h.get("test_loss"):
        ax_loss.plot(epochs[:len(h["test_loss"])], h["test_loss"], "s-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.plot(epochs, np.asarray(h["train_acc"]) * 100, "o-", label="train")
    if h.get("test_acc"):
        ax_acc.plot(epochs[:len(h["test_acc"])], np.asarray(h["test_acc"]) * 100, "s-", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_confusion(cm: np.ndarray, path, title: str = "confusion matrix") -> Path:
    """Heatmap of ``cm[true, predicted]`` with the count written in every cell."""
    plt = _pyplot()
    n = len(cm)
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(np.log1p(cm), cmap="Blues")  # log scale: the diagonal would hide the errors
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > cm.max() / 3 else "black")
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    return _save(fig, path)


def plot_digits(images, labels, predictions, path, title: str = "", columns: int = 8) -> Path:
    """A grid of images titled ``true -> predicted`` (red where they differ)."""
    plt = _pyplot()
    images = np.asarray(images).reshape(len(images), *np.asarray(images).shape[-2:])
    n = max(len(images), 1)
    rows = (n + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.2, rows * 1.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            ax.imshow(images[k], cmap="gray_r")
            wrong = labels[k] != predictions[k]
            ax.set_title(f"{labels[k]}→{predictions[k]}", fontsize=9, color="red" if wrong else "black")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_sweep(settings, accuracies, path, xlabel: str, log_x: bool = False, title: str = "") -> Path:
    """Test accuracy against a swept hyper-parameter (learning rate, batch size)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(settings, np.asarray(accuracies) * 100, "o-")
    if log_x:
        ax.set_xscale("log", base=2)
    ax.set(xlabel=xlabel, ylabel="test accuracy (%)", title=title or f"accuracy vs {xlabel}")
    ax.grid(alpha=0.3)
    return _save(fig, path)
