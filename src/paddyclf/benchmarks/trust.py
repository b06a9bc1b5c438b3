"""``paddyclf benchmark trust``: does the model say when it does not know? Calibration, "unsure", OOD.

Two measurements, each through the same commands a user runs (``train``, which calibrates the
best checkpoint, then ``evaluate`` on valid and test with ``--ood``):

1. **Closed set, per seed**: a model trained on ``--train-limit`` photos (all classes). Reported:
   accuracy; NLL, ECE and Brier score before and after calibration on valid (where the
   temperature was fitted) and test (never used for any choice); the unsure threshold chosen on
   valid for ``--target-accuracy`` and the coverage and accuracy of the ``ok`` answers on valid
   and test; AUROC and FPR at 95% TPR of every OOD score against the non-leaf photos.
2. **Open set, per held-out class**: the same training without one class (and ``--train-limit``
   scaled to keep the photos per class); its test photos are the unknowns (a disease the model
   never learned) against the known classes' test photos.

Writes PREFIX.json and PREFIX.md.
"""

from __future__ import annotations

import contextlib
import csv
import io
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from ..data import SPLIT_ALIASES, load_label2id, read_metadata
from ..data.nonleaf import make_nonleaf_images
from ..errors import UserError
from ..fileio import atomic_write, write_json
from ..inference.evaluate import run_evaluation
from ..training.config import TrainConfig
from ..training.run import train
from .common import PRINT, environment


def train_quietly(config: TrainConfig) -> Path:
    with contextlib.redirect_stdout(io.StringIO()):
        train(config, progress=False)
    return Path(config.output_dir) / f"{config.run_name}_best.pt"


def evaluate_both(ckpt: Path, config: TrainConfig, ood_dirs: list[Path], folder: Path) -> dict:
    """The checkpoint's evaluation reports on valid and test, each with ``--ood``."""
    return {
        split: run_evaluation(
            ckpt,
            config.metadata,
            split=split,
            output_dir=folder / split,
            progress=False,
            ood_dirs=ood_dirs,
            num_workers=config.num_workers,
        )  # fmt: skip
        for split in ("valid", "test")
    }


def closed_set_row(reports: dict) -> dict:
    """One seed's numbers from its valid and test reports."""
    row = {}
    for split, report in reports.items():
        trust = report["trust"]
        row[f"{split}_acc"] = report["accuracy"]
        for when in ("before", "after"):
            for metric in ("nll", "ece", "brier"):
                row[f"{split}_{metric}_{when}"] = trust[when][metric]
        row[f"{split}_ece_floor"] = trust["after"]["ece_of_a_perfect_model"]
        row[f"{split}_coverage"] = trust["answered"]["coverage"]
        row[f"{split}_answered_acc"] = trust["answered"]["selective_accuracy"]
    valid = reports["valid"]
    row["temperature"] = valid["trust"]["temperature"]
    row["unsure_below"] = valid["trust"]["unsure_below"]
    for name, metrics in next(iter(valid["ood"].values()))["scores"].items():
        row[f"nonleaf_auroc_{name}"] = metrics["auroc"]
        row[f"nonleaf_fpr95_{name}"] = metrics["fpr_at_95_tpr"]
    return row


def held_out_dataset(metadata: str, held_out: str, folder: Path) -> tuple[Path, Path, Path]:
    """(metadata, label2id) without ``held_out``, and a folder of links to its test photos."""
    root = Path(metadata).resolve().parent
    rows = read_metadata(metadata)
    known = sorted({r["label"] for r in rows} - {held_out})
    unknown = folder / "unknown"
    unknown.mkdir(parents=True)
    kept = []
    for i, r in enumerate(rows):
        path = (root / r["path"]).resolve()
        if r["label"] != held_out:
            kept.append({**r, "path": str(path)})
        elif r.get("split") == "test":
            (unknown / f"{i:05d}{path.suffix}").symlink_to(path)
    csv_path, map_path = folder / "metadata.csv", folder / "label2id.json"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    write_json(map_path, {name: i for i, name in enumerate(known)})
    return csv_path, map_path, unknown


def summarise(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if all(r.get(k) is not None for r in rows)]
    return {
        k: {
            "mean": statistics.mean(r[k] for r in rows),
            "std": statistics.stdev(r[k] for r in rows) if len(rows) > 1 else 0.0,
        }
        for k in keys
    }


def run_trust_benchmark(
    base: TrainConfig,
    seeds: Sequence[int] = (0, 1, 2),
    nonleaf_dir: str | None = None,
    open_set: bool = True,
    output: str | Path = "results/trust_benchmark",
    log=PRINT,
) -> dict:
    label2id = load_label2id(base.label2id)
    splits = {SPLIT_ALIASES.get((r.get("split") or "").lower()) for r in read_metadata(base.metadata)}
    if not {"train", "valid", "test"} <= splits:
        raise UserError(f"{base.metadata} needs train, valid and test splits (make them with `paddyclf prepare`).")
    result: dict = {
        "environment": environment(torch.device("cpu")),
        "config": base.__dict__,
        "closed_set": {},
        "open_set": {},
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        nonleaf = Path(nonleaf_dir) if nonleaf_dir else tmp / "nonleaf"
        if not nonleaf_dir:
            make_nonleaf_images(nonleaf)
        for seed in seeds:
            config = TrainConfig(**{**base.__dict__, "seed": seed, "output_dir": str(tmp / f"seed{seed}")})
            ckpt = train_quietly(config)
            row = closed_set_row(evaluate_both(ckpt, config, [nonleaf], tmp / f"seed{seed}"))
            result["closed_set"][str(seed)] = row
            log(
                f"seed {seed}: valid ECE {row['valid_ece_before']:.4f} -> {row['valid_ece_after']:.4f}, test ECE "
                f"{row['test_ece_before']:.4f} -> {row['test_ece_after']:.4f}; answered valid "
                f"{row['valid_coverage']:.1%} at {_share(row['valid_answered_acc'])}, test "
                f"{row['test_coverage']:.1%} at {_share(row['test_answered_acc'])}; non-leaf AUROC mahalanobis "
                f"{row.get('nonleaf_auroc_mahalanobis', float('nan')):.3f} msp {row['nonleaf_auroc_msp']:.3f}"
            )
        result["closed_set_summary"] = summarise(list(result["closed_set"].values()))
        for held_out in sorted(label2id) if open_set else []:
            folder = tmp / f"without_{held_out}"
            metadata, label_map, unknown = held_out_dataset(base.metadata, held_out, folder)
            known_limit = None if base.train_limit is None else round(base.train_limit * (1 - 1 / len(label2id)))
            config = TrainConfig(
                **{**base.__dict__, "metadata": str(metadata), "label2id": str(label_map), "output_dir": str(folder)},
            )
            config.train_limit = known_limit  # the same photos per class as the closed set
            ckpt = train_quietly(config)
            report = run_evaluation(
                ckpt, metadata, split="test", output_dir=folder / "test", progress=False, ood_dirs=[unknown],
                num_workers=config.num_workers,
            )  # fmt: skip
            scores = report["ood"][str(unknown)]["scores"]
            result["open_set"][held_out] = {"known_test_acc": report["accuracy"], "scores": scores}
            log(f"held out {held_out}: " + ", ".join(f"{k} AUROC {v['auroc']:.3f}" for k, v in scores.items()))
    write_json(Path(f"{output}.json"), result)
    atomic_write(Path(f"{output}.md"), lambda p: p.write_text(markdown(result)))
    log(f"Wrote {output}.json and {output}.md")
    return result


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _pm(summary: dict, key: str, digits: int = 4, percent: bool = False) -> str:
    if key not in summary:
        return "—"
    m, s = summary[key]["mean"], summary[key]["std"]
    return f"{m:.1%} ± {s:.1%}" if percent else f"{m:.{digits}f} ± {s:.{digits}f}"


def markdown(result: dict) -> str:
    s = result["closed_set_summary"]
    seeds = ", ".join(result["closed_set"])
    lines = [
        f"Closed set, seeds {seeds} (mean ± std):",
        "",
        "| split | accuracy | NLL before | NLL after | ECE before | ECE after | ECE of a perfect model "
        "| Brier before | Brier after | answered (ok) | accuracy of ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for split in ("valid", "test"):
        cells = [_pm(s, f"{split}_acc")]
        for metric in ("nll", "ece", "brier"):
            cells += [_pm(s, f"{split}_{metric}_before"), _pm(s, f"{split}_{metric}_after")]
            if metric == "ece":
                cells.append(_pm(s, f"{split}_ece_floor"))
        cells += [_pm(s, f"{split}_coverage", percent=True), _pm(s, f"{split}_answered_acc", percent=True)]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Temperature {_pm(s, 'temperature', 3)}, unsure threshold {_pm(s, 'unsure_below', 3)}.",
        "",
        "| OOD score | non-leaf AUROC | non-leaf FPR at 95% TPR |"
        + "".join(f" open set: {k} AUROC |" for k in result["open_set"])
        + (" open set: mean |" if result["open_set"] else ""),
        "|---|---|---|" + "---|" * (len(result["open_set"]) + bool(result["open_set"])),
    ]
    names = [k.removeprefix("nonleaf_auroc_") for k in s if k.startswith("nonleaf_auroc_")]
    for name in names:
        line = f"| {name} | {_pm(s, f'nonleaf_auroc_{name}', 3)} | {_pm(s, f'nonleaf_fpr95_{name}', percent=True)} |"
        line += "".join(
            f" {entry['scores'][name]['auroc']:.3f} |" if name in entry["scores"] else " — |"
            for entry in result["open_set"].values()
        )
        aurocs = [e["scores"][name]["auroc"] for e in result["open_set"].values() if name in e["scores"]]
        if result["open_set"]:
            line += f" {statistics.mean(aurocs):.3f} |" if aurocs else " — |"
        lines.append(line)
    return "\n".join(lines) + "\n"
