"""``paddyclf compare``: one table and two plots from several ``*_metrics.json`` files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..errors import UserError
from ..fileio import atomic_path

COLUMNS = ("model", "params", "size_mb", "valid_acc", "valid_f1", "fps", "training_seconds")


def load_results(paths: list[str | Path]) -> list[dict]:
    rows = []
    for path in map(Path, paths):
        try:
            data = json.loads(path.read_text())
            rows.append(
                {
                    "model": data["model_name"],
                    "params": data["num_params"],
                    "size_mb": data["size_mb"],
                    "valid_acc": data["valid_acc"],
                    "valid_f1": data["valid_f1"],
                    "fps": data["fps"],
                    "training_seconds": data.get("training_seconds"),
                }
            )
        except FileNotFoundError:
            raise UserError(f"Results file {path} not found.") from None
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(f"{path} is not a metrics JSON written by `--save-history` ({exc!r}).") from None
    if not rows:
        raise UserError("Give at least one metrics JSON.")
    return rows


def markdown_table(rows: list[dict]) -> str:
    def cell(value, key):
        if value is None:
            return "-"
        return (
            f"{value:,}"
            if key == "params"
            else f"{value:.4f}"
            if key.startswith("valid")
            else (f"{value:.2f}" if isinstance(value, float) else str(value))
        )

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r[k], k) for k in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def compare_results(paths: list[str | Path], output_dir: str | Path = "comparison") -> list[dict]:
    """Write ``comparison.md``, ``comparison.csv``, ``accuracy_vs_fps.png`` and ``size.png``."""
    from ..plots import plt, save_figure

    rows = load_results(paths)
    out = Path(output_dir)
    with atomic_path(out / "comparison.md") as tmp:
        tmp.write_text(markdown_table(rows))
    with atomic_path(out / "comparison.csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    fig, ax = plt.subplots(figsize=(7, 5))
    for r in rows:
        ax.scatter(r["fps"], r["valid_acc"], s=60)
        ax.annotate(r["model"], (r["fps"], r["valid_acc"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set(xlabel="inference images/s", ylabel="valid accuracy", title="accuracy vs speed")
    ax.grid(alpha=0.3)
    save_figure(fig, out / "accuracy_vs_fps.png")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.barh([r["model"] for r in rows], [r["size_mb"] for r in rows])
    ax.set(xlabel="size (MiB, float32)", title="model size")
    save_figure(fig, out / "size.png")
    return rows
