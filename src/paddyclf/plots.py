"""Figures, drawn with matplotlib's Agg backend: never opens a window, works without a display."""

from __future__ import annotations

from pathlib import Path

import matplotlib

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
