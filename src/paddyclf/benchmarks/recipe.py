"""``paddyclf benchmark recipe``: the guide recipe, each addition alone, and the field recipe, over seeds.

Every variant trains the same model on the same data for the same number of epochs (early
stopping off), once per seed, through :func:`paddyclf.training.train`. Reported per variant: mean and
standard deviation over seeds of valid accuracy, macro-F1 and NLL of the best checkpoint (chosen
on valid macro-F1, as the trainer does), the same on the test split when the metadata has one (not
used for any choice, so not biased by it), and training time; the relative change of the error
against the guide recipe. Writes PREFIX.json, PREFIX.md and PREFIX.png.
"""

from __future__ import annotations

import contextlib
import functools
import io
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..data import Normalization, load_label2id, load_splits, make_loader
from ..errors import UserError
from ..fileio import atomic_write, write_json
from ..training.config import TrainConfig
from ..training.engine import evaluate
from ..training.recipe import RECIPE_FIELDS
from ..training.run import train
from .common import PRINT, environment

# each addition alone, at the value timm's train.py / the papers use for fine-tuning; learning rates
# 4x and 10x the guide's (its 5e-5 backbone rate barely moves the backbone in 50 steps)
VARIANTS: dict[str, dict[str, object]] = {
    "guide": {},
    "label_smoothing": {"label_smoothing": 0.1},
    "ema": {"ema_decay": 0.998},
    "mixup": {"mixup": 0.2},
    "cutmix": {"cutmix": 1.0},
    "trivial": {"augment": "trivial"},
    "randaugment": {"augment": "randaugment"},
    "random_erasing": {"random_erasing": 0.25},
    "warmup": {"warmup_epochs": 2},
    "lr_x4": {"base_lr": 2e-4, "head_lr": 2e-3},
    "lr_x10": {"base_lr": 5e-4, "head_lr": 5e-3},
    "field": {"recipe": "field"},
}
METRICS = ("valid_acc", "valid_f1", "valid_nll", "test_acc", "test_f1", "test_nll", "train_seconds")


def run_variant(base: TrainConfig, overrides: dict, seed: int, quiet: bool = True) -> dict:
    """Train one variant at one seed in a temporary folder; its best checkpoint's valid (and test) scores."""
    with tempfile.TemporaryDirectory() as tmp:
        values = {**base.__dict__, "recipe": "guide", **_recipe_unset(overrides), **overrides}
        config = TrainConfig(**{**values, "seed": seed, "output_dir": tmp})
        start = time.perf_counter()
        out = io.StringIO()
        with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
            train(config, progress=False)
        seconds = time.perf_counter() - start
        ckpt = load_checkpoint(Path(tmp) / f"{config.run_name}_best.pt")
        row = {
            "valid_acc": ckpt["metrics"]["valid_acc"],
            "valid_f1": ckpt["metrics"]["valid_f1"],
            "valid_nll": ckpt["metrics"]["valid_loss"],
            "best_epoch": ckpt["epoch"],
            "train_seconds": seconds,
        }
        row.update(_test_scores(config, ckpt))
    return row


def _recipe_unset(overrides: dict) -> dict:
    """With ``recipe`` in ``overrides``, the recipe fields the base config fixed are reset to None (recipe decides)."""
    return {name: None for name in RECIPE_FIELDS} if "recipe" in overrides else {}


def _test_scores(config: TrainConfig, ckpt: dict) -> dict:
    label2id = load_label2id(config.label2id)
    splits = load_splits(config.metadata, label2id, config.seed, required=("train", "valid"))
    if not splits["test"]:
        return {}
    model = model_from_checkpoint(ckpt)
    norm = Normalization(**ckpt["normalization"])
    loader = make_loader(splits["test"], config.image_size, norm, False, 64, config.num_workers, config.seed)
    result = evaluate(model, loader, torch.device("cpu"), len(label2id), progress=False)
    return {"test_acc": result.accuracy, "test_f1": result.f1, "test_nll": result.loss}


def summarise(rows: list[dict]) -> dict:
    """Mean and standard deviation over seeds of each metric present in every row."""
    out = {}
    for key in METRICS:
        values = [r[key] for r in rows if key in r]
        if len(values) == len(rows) and values:
            out[key] = {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def error_change(summary: dict, baseline: dict, key: str) -> float | None:
    """Relative change of the error (1 - accuracy) against the baseline: -0.25 = a quarter fewer errors."""
    if key not in summary or key not in baseline:
        return None
    base_error = 1 - baseline[key]["mean"]
    return None if base_error <= 0 else ((1 - summary[key]["mean"]) - base_error) / base_error


def _cell(summary: dict, key: str, digits: int = 4) -> str:
    return f"{summary[key]['mean']:.{digits}f} ± {summary[key]['std']:.{digits}f}"


def _change(variant: dict, key: str) -> str:
    c = variant.get(f"{key}_error_change")
    return "—" if c is None else f"{c:+.0%}"


def markdown(result: dict) -> str:
    has_test = all("test_acc" in v["summary"] for v in result["variants"].values())
    head = "| variant | flags | valid acc | valid F1 | valid NLL | valid error vs guide |"
    rule = "|---|---|---|---|---|---|"
    if has_test:
        head += " test acc | test F1 | test NLL | test error vs guide |"
        rule += "---|---|---|---|"
    lines = [head + " train s |", rule + "---|"]
    for name, v in result["variants"].items():
        s = v["summary"]
        cell = functools.partial(_cell, s)
        change = functools.partial(_change, v)
        flags = ", ".join(f"{k}={val}" for k, val in v["overrides"].items()) or "—"
        line = f"| {name} | {flags} | {cell('valid_acc')} | {cell('valid_f1')} | {cell('valid_nll', 3)} | "
        line += f"{change('valid_acc')} |"
        if has_test:
            line += f" {cell('test_acc')} | {cell('test_f1')} | {cell('test_nll', 3)} | {change('test_acc')} |"
        lines.append(line + f" {s['train_seconds']['mean']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path:
    from ..plots import plt, save_figure

    names = list(result["variants"])
    keys = [k for k in ("valid_acc", "test_acc") if all(k in v["summary"] for v in result["variants"].values())]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 4))
    width = 0.8 / len(keys)
    for n, key in enumerate(keys):
        means = [result["variants"][v]["summary"][key]["mean"] for v in names]
        stds = [result["variants"][v]["summary"][key]["std"] for v in names]
        ax.bar([i + n * width for i in range(len(names))], means, width, yerr=stds, capsize=3, label=key)
    ax.set_xticks([i + width * (len(keys) - 1) / 2 for i in range(len(names))], names, rotation=30, ha="right")
    low = min(result["variants"][v]["summary"][k]["mean"] for v in names for k in keys)
    ax.set_ylim(max(0.0, low - 0.1), 1.0)
    ax.set_ylabel("accuracy (mean ± std over seeds)")
    ax.set_title(f"Recipe ablation, {result['train_images']} training images, {result['epochs']} epochs")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def run_recipe_benchmark(
    base: TrainConfig,
    variants: Sequence[str],
    seeds: Sequence[int],
    output: str | Path,
    log=PRINT,
) -> dict:
    """Train every variant at every seed on ``base``'s data; write and return the comparison."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise UserError(f"Unknown --variants {', '.join(unknown)}; choose from {', '.join(VARIANTS)}.")
    if not seeds:
        raise UserError("--seeds needs at least one seed.")
    base.validate()
    label2id = load_label2id(base.label2id)
    train_images = len(
        load_splits(base.metadata, label2id, base.seed, {"train": base.train_limit, "valid": base.valid_limit})["train"]
    )
    result = {
        "environment": environment(torch.device("cpu")),
        "metadata": str(base.metadata),
        "train_images": train_images,
        "epochs": base.epochs,
        "seeds": list(seeds),
        "base_config": {k: v for k, v in base.__dict__.items() if k not in ("seed", "output_dir")},
        "variants": {},
    }
    for name in variants:
        rows = []
        for seed in seeds:
            row = run_variant(base, VARIANTS[name], seed)
            rows.append(row)
            log(
                f"{name:15} seed {seed}: valid acc {row['valid_acc']:.4f} F1 {row['valid_f1']:.4f} "
                f"NLL {row['valid_nll']:.3f}"
                + (f" | test acc {row['test_acc']:.4f}" if "test_acc" in row else "")
                + f" | {row['train_seconds']:.0f}s"
            )
        result["variants"][name] = {"overrides": VARIANTS[name], "runs": rows, "summary": summarise(rows)}
    baseline = result["variants"].get("guide", {}).get("summary")
    if baseline:
        for v in result["variants"].values():
            for key in ("valid_acc", "test_acc"):
                v[f"{key}_error_change"] = error_change(v["summary"], baseline, key)
    output = Path(output)
    write_json(output.with_suffix(".json"), result)
    table = markdown(result)
    atomic_write(output.with_suffix(".md"), lambda tmp: tmp.write_text(table))
    plot(result, output.with_suffix(".png"))
    log(table)
    log(f"Wrote {output.with_suffix('.json')}, .md, .png")
    return result
