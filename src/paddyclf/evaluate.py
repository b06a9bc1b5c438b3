"""``paddyclf evaluate``: a checkpoint on one split of a dataset, with every number and file a reviewer needs.

Writes to ``--output-dir``: ``evaluation.json`` (accuracy, macro-F1, per-class table, confusion
matrix), ``per_class.csv``, ``confusion_matrix.png`` (counts and row-normalised) and
``misclassified.csv`` (path, true, predicted, confidence).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from .checkpoint import class_names, load_checkpoint, model_from_checkpoint
from .data import Normalization, load_label2id, load_splits, make_loader
from .engine import evaluate
from .errors import UserError
from .fileio import atomic_path, write_json
from .metrics import classification_metrics


def per_class_table(per_class: dict) -> str:
    width = max(12, *(len(n) for n in per_class))
    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    for name, m in per_class.items():
        lines.append(f"{name:<{width}}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:.4f}  {m['support']:7d}")
    return "\n".join(lines)


def plot_confusion(matrix: np.ndarray, names: list[str], path: Path) -> None:
    from .plots import plt, save_figure

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
            ax.text(
                j,
                i,
                format(value, fmt),
                ha="center",
                va="center",
                color="white" if peak and value > peak / 2 else "black",
                fontsize=8,
            )
    fig.tight_layout()
    save_figure(fig, path)


def run_evaluation(
    checkpoint: str | Path,
    metadata: str | Path,
    label2id: str | Path | None = None,
    split: str = "valid",
    output_dir: str | Path = "evaluation",
    tta: bool = False,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
) -> dict:
    """Evaluate ``checkpoint`` on ``split`` of ``metadata``; write the files above and return the summary."""
    ckpt = load_checkpoint(checkpoint)
    labels = ckpt["label2id"]
    if label2id is not None and load_label2id(label2id) != labels:
        raise UserError(f"--label2id {label2id} differs from the label map stored in {checkpoint}.")
    if split not in ("train", "valid", "test"):
        raise UserError(f"--split must be train, valid or test (got {split!r}).")
    names = class_names(labels)
    samples = load_splits(metadata, labels, ckpt.get("seed", 42), required=(split,))[split]
    model = model_from_checkpoint(ckpt)
    loader = make_loader(
        samples,
        ckpt["config"]["image_size"],
        Normalization(**ckpt["normalization"]),
        False,
        batch_size,
        num_workers,
        seed=0,
    )
    result = evaluate(model, loader, torch.device("cpu"), len(names), progress=progress, tta=tta)
    if len(result.targets) == 0:
        raise UserError(f"None of the {len(samples)} images of the {split} split could be read.")
    summary = classification_metrics(result.targets, result.predictions, len(names), names)
    report = {
        "checkpoint": str(checkpoint),
        "metadata": str(metadata),
        "split": split,
        "tta": tta,
        "num_images": int(len(result.targets)),
        "unreadable": result.failures,
        "accuracy": summary["accuracy"],
        "macro_f1": summary["macro_f1"],
        "loss": result.loss,
        "classes": names,
        "per_class": summary["per_class"],
        "confusion_matrix": summary["confusion_matrix"],
    }
    out = Path(output_dir)
    write_json(out / "evaluation.json", report)
    with atomic_path(out / "per_class.csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["class", "precision", "recall", "f1", "support"])
        for name, m in summary["per_class"].items():
            writer.writerow([name, m["precision"], m["recall"], m["f1"], m["support"]])
    with atomic_path(out / "misclassified.csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "true", "predicted", "confidence"])
        for index, true, pred, probs in zip(
            result.indices, result.targets, result.predictions, result.probabilities, strict=True
        ):
            if true != pred:
                writer.writerow([samples[index].path, names[true], names[pred], f"{probs[pred]:.4f}"])
    plot_confusion(np.asarray(summary["confusion_matrix"]), names, out / "confusion_matrix.png")
    return report
