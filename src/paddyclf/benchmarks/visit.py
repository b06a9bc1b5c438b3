"""``paddyclf benchmark visit``: does a visit of several leaves answer more often, and better, than one photo?

On a leak-free split (a ``metadata.csv`` with a ``group`` column, as ``paddyclf prepare`` writes it),
every photo is diagnosed once. A visit of n photos draws a class at random, then n photos of that
class from n distinct duplicate groups, so that no two photos of a visit are copies of one leaf.
Each visit is answered by each rule of :mod:`paddyclf.trust.visit`. Reported per visit size and
rule: the share of visits answered (``ok``), the accuracy of those answers, the top-1 accuracy of
all visits, and the share refused as out of distribution. Writes PREFIX.json and PREFIX.md.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data import read_metadata
from ..data.metadata import SPLIT_ALIASES, Sample, resolve_samples
from ..errors import UserError
from ..fileio import atomic_write, write_json
from ..inference import load_predictor
from ..inference.evaluate import collect_predictions
from ..trust import OK, OUT_OF_DISTRIBUTION
from ..trust.visit import RULES, combine_visit
from .common import PRINT

DEFAULT_SIZES = (1, 3, 5)


def split_with_groups(metadata: str | Path, split: str, classes: list[str]) -> tuple[list[Sample], list[str]]:
    """The samples of ``split`` and the duplicate group of each (the ``group`` column)."""
    rows = read_metadata(metadata)
    if not rows or "group" not in rows[0]:
        raise UserError(
            f"{metadata} has no group column: a visit takes photos of distinct leaves, so it needs the "
            "duplicate groups. Make the data with `paddyclf prepare --images DIR --out DIR` (it writes one)."
        )
    resolved = resolve_samples(rows, Path(metadata).resolve().parent, {c: i for i, c in enumerate(classes)})
    chosen = [(sample, row["group"]) for (sample, s), row in zip(resolved, rows, strict=True) if s == split]
    if not chosen:
        raise UserError(f"{metadata} has no {split} rows (a split column with {split} is needed).")
    return [s for s, _ in chosen], [g for _, g in chosen]


def draw_visits(
    labels: np.ndarray, groups: list[str], size: int, count: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """``count`` visits of ``size`` photo indices: a random class, then photos from distinct groups of it."""
    by_class: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for index, (label, group) in enumerate(zip(labels, groups, strict=True)):
        by_class[int(label)][group].append(index)
    eligible = sorted(c for c, g in by_class.items() if len(g) >= size)
    if not eligible:
        raise UserError(f"No class has {size} distinct duplicate groups in this split; use smaller --sizes.")
    visits = []
    for _ in range(count):
        members = by_class[eligible[rng.integers(len(eligible))]]
        names = sorted(members)
        picked = rng.choice(len(names), size=size, replace=False)
        visits.append(np.array([members[names[g]][rng.integers(len(members[names[g]]))] for g in picked]))
    return visits


def score_visits(logits, ood, labels, visits, trust, rule: str) -> dict:
    answers = [combine_visit(logits[v], None if ood is None else ood[v], trust, rule) for v in visits]
    truth = np.array([labels[v[0]] for v in visits])
    guess = np.array([a.probabilities.argmax() for a in answers])
    answered = np.array([a.status == OK for a in answers])
    return {
        "visits": len(visits),
        "answered": float(answered.mean()),
        "answered_accuracy": float((guess == truth)[answered].mean()) if answered.any() else None,
        "top1_accuracy": float((guess == truth).mean()),
        "out_of_distribution": float(np.mean([a.status == OUT_OF_DISTRIBUTION for a in answers])),
    }


def run_visit_benchmark(
    checkpoint: str | Path,
    metadata: str | Path,
    split: str = "test",
    sizes: Sequence[int] = DEFAULT_SIZES,
    visits: int = 1000,
    seed: int = 0,
    output: str | Path = "results/visit_benchmark",
    batch_size: int = 32,
    num_workers: int = 0,
    log=PRINT,
) -> dict:
    split = SPLIT_ALIASES.get(split, split)
    if split not in ("train", "valid", "test") or min(sizes) < 1 or visits < 1:
        raise UserError("--split must be train, valid or test; --sizes and --visits at least 1.")
    predictor = load_predictor(checkpoint)
    samples, groups = split_with_groups(metadata, split, predictor.classes)
    predictions = collect_predictions(predictor, samples, batch_size, num_workers, False, False, split)
    kept = predictions.indices  # unreadable photos are skipped
    labels, kept_groups = predictions.targets, [groups[i] for i in kept]
    log(f"{len(kept)} {split} photos in {len(set(kept_groups))} duplicate groups; {visits} visits per size")
    rows = []
    for size in sizes:
        drawn = draw_visits(labels, kept_groups, size, visits, np.random.default_rng([seed, size]))
        for rule in RULES:
            row = {"size": size, "rule": rule} | score_visits(
                predictions.logits, predictions.ood_score, labels, drawn, predictor.trust, rule
            )
            rows.append(row)
            log(
                f"  {size} photo(s), {rule:7s}: answered {row['answered']:6.1%}, accuracy of answers "
                f"{_share(row['answered_accuracy'])}, top-1 {row['top1_accuracy']:6.1%}"
            )
    result = {
        "checkpoint": str(checkpoint),
        "metadata": str(metadata),
        "split": split,
        "photos": int(len(kept)),
        "groups": len(set(kept_groups)),
        "seed": seed,
        "trust": predictor.trust.to_dict() | {"fit": "see the checkpoint"},
        "rows": rows,
    }
    write_json(Path(f"{output}.json"), result)
    atomic_write(Path(f"{output}.md"), lambda tmp: tmp.write_text(markdown(result), encoding="utf-8"))
    return result


def _share(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:6.1%}"


def markdown(result: dict) -> str:
    lines = [
        f"Visits of photos from distinct duplicate groups of one class, {result['split']} split "
        f"({result['photos']} photos, {result['groups']} groups), seed {result['seed']}.",
        "",
        "| photos per visit | rule | answered (`ok`) | accuracy of answers | top-1 accuracy | out of distribution |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['size']} | {r['rule']} | {r['answered']:.1%} | {_share(r['answered_accuracy']).strip()} "
            f"| {r['top1_accuracy']:.1%} | {r['out_of_distribution']:.1%} |"
        )
    return "\n".join(lines) + "\n"
