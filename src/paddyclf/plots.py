"""Figures, drawn with matplotlib's Agg backend: never opens a window, works without a display."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from .fileio import atomic_path  # noqa: E402


def save_figure(fig, path: str | Path) -> Path:
    """Save ``fig`` as PNG atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_history(history: dict, path: str | Path, title: str = "") -> Path:
    """Loss, accuracy, macro-F1 and learning rate per epoch, one panel each."""
    epochs = range(1, len(history["train_loss"]) + 1)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    panels = [
        ("loss", [("train", history["train_loss"]), ("valid", history["valid_loss"])]),
        ("accuracy", [("train", history["train_acc"]), ("valid", history["valid_acc"])]),
        ("valid macro-F1", [("valid", history["valid_f1"])]),
        ("learning rate (new modules)", [("head", history["learning_rates"])]),
    ]
    for ax, (name, series) in zip(axes.flat, panels, strict=True):
        for label, values in series:
            ax.plot(list(epochs), values, marker="o", markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def confusion_figure(matrix, names: list[str]):
    """A confusion matrix (rows true, columns predicted) as counts and row-normalised, side by side."""
    matrix = np.asarray(matrix)
    row_sums = matrix.sum(1, keepdims=True)
    normalised = np.divide(matrix, row_sums, out=np.zeros_like(matrix, dtype=float), where=row_sums > 0)
    size = max(5.0, 0.55 * len(names) + 3)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size))
    for ax, data, title, fmt in (
        (axes[0], matrix, "counts", "d"),
        (axes[1], normalised, "row-normalised", ".2f"),
    ):
        ax.imshow(data, cmap="Blues")
        ax.set(title=title, xlabel="predicted", ylabel="true", xticks=range(len(names)), yticks=range(len(names)))
        ax.set_xticklabels(names, rotation=45, ha="right")
        ax.set_yticklabels(names)
        peak = data.max() if data.size else 0
        for (i, j), value in np.ndenumerate(data):
            color = "white" if peak and value > peak / 2 else "black"
            ax.text(j, i, format(value, fmt), ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    return fig
