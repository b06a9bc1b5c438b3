"""``paddyclf benchmark review-queue``: which order of the review queue finds the model's mistakes soonest?

Per training seed, on a leak-free ``metadata.csv`` (a ``split`` column; a ``group`` column, as
``paddyclf prepare`` writes it, for the copy groups):

1. A model is trained, as ``train`` does (calibration included), on ``--train-limit`` photos of the
   train split (the stratified subset ``--train-limit`` always takes, 30 per class for 150 on 5 classes).
2. The **rest of the train split** plays the field photos an app collects: each is diagnosed
   through the predictor the server runs (calibrated probabilities, rounded to 6 places as the
   history stores them, the model's OOD score and verdict). A photo whose duplicate group holds a
   training photo is left out: a field photo is not a copy of a photo the model learned from.
3. Each strategy of :mod:`paddyclf.serve.review_queue` orders them, with copies (one duplicate
   group) collapsed to one entry exactly as the served queue collapses them; ``random`` once per
   ``--random-seeds`` seed.

Reported per strategy: **mistake recall at 10% and 20% of the queue**, the share of the wrong
entries (an entry is wrong when the answer the expert sees, its representative's, is wrong) that
lie in the first ``ceil(f x entries)`` entries; the same without collapsing copies (per photo); the
model's error rate; and the best any order could do, ``min(1, f x entries / wrong entries)``.
Mean ± std over training seeds (random: over training and random seeds). Writes PREFIX.json,
PREFIX.md and PREFIX.png (recall against the fraction of the queue reviewed).
"""

from __future__ import annotations

import math
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data import load_label2id, read_metadata
from ..data.metadata import resolve_samples, split_samples, stratified_subset
from ..errors import UserError
from ..fileio import atomic_write, write_json
from ..inference import load_predictor
from ..inference.evaluate import collect_predictions
from ..serve.review_queue import STRATEGIES, build_queue
from ..training.config import TrainConfig
from ..trust import verdicts
from .common import PRINT, environment
from .trust import train_quietly

FRACTIONS = (0.1, 0.2)
CURVE = np.round(np.linspace(0.0, 1.0, 51), 3)  # the plot's fractions of the queue


def mistake_recall(wrong_in_order: np.ndarray, fraction: float) -> float:
    """Share of the wrong entries among the first ``ceil(fraction x n)`` of ``n`` entries in queue order."""
    total = int(wrong_in_order.sum())
    if total == 0:
        return float("nan")
    head = math.ceil(fraction * len(wrong_in_order) - 1e-9)
    return float(wrong_in_order[:head].sum() / total)


def field_photos(metadata: str | Path, label2id: dict[str, int], train_limit: int, seed: int):
    """(the rest of the train split, their groups): the train photos ``--train-limit`` leaves out at
    ``seed`` (the subset training takes, :func:`paddyclf.data.metadata.stratified_subset`), without
    those whose ``group`` holds a training photo; groups are the ``group`` column, else one per photo."""
    rows = read_metadata(metadata)
    tagged = resolve_samples(rows, Path(metadata).resolve().parent, label2id)
    if not any(split for _, split in tagged):
        raise UserError(f"{metadata} has no split column; make a leak-free one with `paddyclf prepare`.")
    train_rows = [(sample, row.get("group") or f"photo{i}") for i, ((sample, split), row) in
                  enumerate(zip(tagged, rows, strict=True)) if split == "train"]  # fmt: skip
    train = split_samples(tagged, seed)["train"]
    if not train_limit < len(train):
        raise UserError(f"--train-limit ({train_limit}) must be below the train split's {len(train)} photos.")
    trained = {s.path for s in stratified_subset(train, train_limit, seed)}
    trained_groups = {group for sample, group in train_rows if sample.path in trained}
    rest = [(s, g) for s, g in train_rows if s.path not in trained and g not in trained_groups]
    if not rest:
        raise UserError("Every photo of the train split not trained on is a copy of one that is: nothing to queue.")
    return [s for s, _ in rest], [g for _, g in rest]


def diagnose_field(checkpoint: Path, samples: list, groups: list[str], batch_size: int, num_workers: int) -> dict:
    """What the history would hold for each photo: calibrated probabilities (6 places), OOD score,
    verdict; and whether the answer is wrong, and the copy group of each readable photo."""
    predictor = load_predictor(checkpoint)
    predictions = collect_predictions(predictor, samples, batch_size, num_workers, False, False, "field photos")
    probabilities = np.round(predictor.calibrated(predictions.logits).astype(np.float64), 6)
    ood = predictions.ood_score
    statuses = verdicts(probabilities, ood, predictor.trust)
    records = [
        {"id": i + 1, "probabilities": p.tolist(), "ood_score": None if ood is None else float(ood[i]),
         "status": statuses[i], "top_k": [], "reviewed_label": None}
        for i, p in enumerate(probabilities)
    ]  # fmt: skip
    names = {g: n for n, g in enumerate(dict.fromkeys(groups))}
    return {
        "records": records,
        "wrong": probabilities.argmax(1) != predictions.targets,
        "groups": np.array([names[groups[i]] for i in predictions.indices], dtype=np.int64),
        "num_classes": len(predictor.classes),
        "statuses": statuses,
    }


def score_order(field: dict, strategy: str, collapsed: bool, seed: int) -> dict:
    """Mistake recall of ``strategy``'s queue at :data:`FRACTIONS` and along :data:`CURVE`."""
    groups = field["groups"] if collapsed else np.arange(len(field["records"]))
    entries = build_queue(field["records"], strategy, groups, field["num_classes"], seed)
    wrong = field["wrong"][[e.index for e in entries]]
    row = {f"recall_at_{round(f * 100)}": mistake_recall(wrong, f) for f in FRACTIONS}
    row |= {"entries": len(entries), "wrong_entries": int(wrong.sum()), "error_rate": float(wrong.mean())}
    row["curve"] = [0.0 if f == 0 else mistake_recall(wrong, f) for f in CURVE]
    return row


def best_possible(entries: int, wrong: int, fraction: float) -> float:
    """The recall an oracle order reaches: every wrong entry first."""
    return min(1.0, math.ceil(fraction * entries - 1e-9) / wrong) if wrong else float("nan")


def run_seed(base: TrainConfig, seed: int, random_seeds: int, folder: Path, log=PRINT) -> dict:
    """Train at ``seed``, diagnose the field photos, score every strategy (collapsed and per photo)."""
    label2id = load_label2id(base.label2id)
    samples, groups = field_photos(base.metadata, label2id, base.train_limit, seed)
    config = TrainConfig(**{**base.__dict__, "seed": seed, "output_dir": str(folder)})
    checkpoint = train_quietly(config)
    field = diagnose_field(checkpoint, samples, groups, base.batch_size, base.num_workers)
    out: dict = {
        "photos": len(field["records"]),
        "groups": int(len(set(field["groups"].tolist()))),
        "photo_error_rate": float(field["wrong"].mean()),
        "verdicts": {v: field["statuses"].count(v) for v in sorted(set(field["statuses"]))},
        "strategies": {},
    }
    for collapsed in (True, False):
        level = "entries" if collapsed else "photos"
        for strategy in STRATEGIES:
            seeds = range(random_seeds) if strategy == "random" else [0]
            runs = [score_order(field, strategy, collapsed, s) for s in seeds]
            out["strategies"].setdefault(strategy, {})[level] = runs
        first = out["strategies"]["least_confidence"][level][0]
        out[f"best_possible_{level}"] = {
            f"recall_at_{round(f * 100)}": best_possible(first["entries"], first["wrong_entries"], f) for f in FRACTIONS
        }
    summary = ", ".join(
        f"{s} {np.mean([r['recall_at_10'] for r in out['strategies'][s]['entries']]):.1%}" for s in STRATEGIES
    )
    log(
        f"seed {seed}: {out['photos']} field photos in {out['groups']} copy groups, error rate "
        f"{out['photo_error_rate']:.1%}; mistake recall at 10% of the queue: {summary}"
    )
    return out


def _mean_std(values: list[float]) -> dict:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def summarise(runs: dict) -> dict:
    """Per strategy and level: mean ± std of each measure over every run (training x random seeds)."""
    summary: dict = {}
    for strategy in STRATEGIES:
        for level in ("entries", "photos"):
            rows = [r for seed in runs.values() for r in seed["strategies"][strategy][level]]
            cell = {k: _mean_std([r[k] for r in rows]) for k in ("recall_at_10", "recall_at_20", "error_rate")}
            cell["curve"] = np.nanmean(np.array([r["curve"] for r in rows], dtype=np.float64), axis=0).tolist()
            summary.setdefault(strategy, {})[level] = cell
    for level in ("entries", "photos"):
        summary.setdefault("best_possible", {})[level] = {
            k: _mean_std([seed[f"best_possible_{level}"][k] for seed in runs.values()])
            for k in ("recall_at_10", "recall_at_20")
        }
    return summary


def best_strategy(summary: dict) -> str:
    """The strategy with the highest mean recall at 10% of the collapsed queue (then at 20%), random excluded."""
    candidates = [s for s in STRATEGIES if s != "random"]
    return max(
        candidates,
        key=lambda s: (summary[s]["entries"]["recall_at_10"]["mean"], summary[s]["entries"]["recall_at_20"]["mean"]),
    )


def run_review_queue_benchmark(
    base: TrainConfig,
    seeds: Sequence[int] = (0, 1, 2),
    random_seeds: int = 10,
    output: str | Path = "results/review_queue_benchmark",
    log=PRINT,
) -> dict:
    if base.train_limit is None or base.train_limit < 1:
        raise UserError("--train-limit is needed: the photos the model learns from; the rest of train is queued.")
    if not seeds or random_seeds < 1:
        raise UserError("--seeds needs at least one seed and --random-seeds must be >= 1.")
    base.validate()
    result: dict = {
        "environment": environment(torch.device("cpu")),
        "metadata": str(base.metadata),
        "train_limit": base.train_limit,
        "epochs": base.epochs,
        "seeds": list(seeds),
        "random_seeds": random_seeds,
        "config": {k: v for k, v in base.__dict__.items() if k not in ("seed", "output_dir")},
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            result["runs"][str(seed)] = run_seed(base, seed, random_seeds, Path(tmp) / f"seed{seed}", log)
    result["summary"] = summarise(result["runs"])
    result["best_strategy"] = best_strategy(result["summary"])
    output = Path(output)
    write_json(Path(f"{output}.json"), result)
    table = markdown(result)
    atomic_write(Path(f"{output}.md"), lambda tmp: tmp.write_text(table, encoding="utf-8"))
    plot(result, Path(f"{output}.png"))
    log(table)
    log(f"Wrote {output}.json, .md and .png")
    return result


def _pm(cell: dict) -> str:
    if cell["n"] == 0:
        return "—"
    return f"{cell['mean']:.1%} ± {cell['std']:.1%}"


def markdown(result: dict) -> str:
    s = result["summary"]
    runs = list(result["runs"].values())
    photos = ", ".join(str(r["photos"]) for r in runs)
    groups = ", ".join(str(r["groups"]) for r in runs)
    errors = ", ".join(f"{r['photo_error_rate']:.1%}" for r in runs)
    lines = [
        f"Trained on {result['train_limit']} photos of the train split, {result['epochs']} epochs, training seeds "
        f"{', '.join(map(str, result['seeds']))}; queued: the rest of the train split ({photos} photos in "
        f"{groups} copy groups), error rate {errors}. Random: {result['random_seeds']} seeds per training "
        "seed. Mean ± std.",
        "",
        "| strategy | mistake recall at 10% | at 20% | per photo (copies not collapsed): at 10% | at 20% "
        "| error rate of the entries |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for strategy in [*STRATEGIES, "best_possible"]:
        e, p = s[strategy]["entries"], s[strategy]["photos"]
        name = "best possible (oracle)" if strategy == "best_possible" else f"`{strategy}`"
        error = _pm(e["error_rate"]) if "error_rate" in e else "—"
        lines.append(
            f"| {name} | {_pm(e['recall_at_10'])} | {_pm(e['recall_at_20'])} | {_pm(p['recall_at_10'])} "
            f"| {_pm(p['recall_at_20'])} | {error} |"
        )
    lines += ["", f"Most mistakes in the first 10% of the queue: `{result['best_strategy']}`."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path:
    from ..plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for strategy in STRATEGIES:
        curve = result["summary"][strategy]["entries"]["curve"]
        ax.plot(CURVE, curve, label=strategy, linestyle="--" if strategy == "random" else "-")
    for f in FRACTIONS:
        ax.axvline(f, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xlabel("fraction of the queue reviewed")
    ax.set_ylabel("share of the model's mistakes found")
    ax.set_title(f"Review queue, {result['train_limit']} training photos (mean over seeds)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
