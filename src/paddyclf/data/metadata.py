"""The data contract: ``metadata.csv`` + ``label2id.json``, and the train / valid / test splits.

``metadata.csv`` has columns ``path,label[,split]``. Paths are relative to the CSV's folder or
absolute. Split values are train / valid / test (val and validation mean valid). Without a split
column, a stratified 20% of the rows (by ``--seed``) becomes the validation set.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

SPLIT_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "test": "test"}
DEFAULT_VALID_FRACTION = 0.2


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


def load_label2id(path: str | Path) -> dict[str, int]:
    """Read ``label2id.json``; ids must be the distinct integers 0..K-1."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"Label map {path} not found. Create data with `paddyclf demo` (synthetic) or "
            "`paddyclf prepare --images DIR --out data` (a class-per-folder tree), or pass --label2id."
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"Label map {path} is not valid JSON: {exc}.") from None
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"Label map {path} must be a non-empty JSON object {{label: id}}.")
    try:
        label2id = {str(k).strip(): int(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise UserError(f"Label map {path}: every id must be an integer.") from None
    if sorted(label2id.values()) != list(range(len(label2id))):
        raise UserError(f"Label map {path}: ids must be 0..{len(label2id) - 1}, each used once.")
    return label2id


def read_metadata(path: str | Path) -> list[dict[str, str]]:
    """Rows of ``metadata.csv`` as dicts with ``path``, ``label`` and (maybe) ``split``.

    A UTF-8 BOM and CRLF line ends are accepted; stray spaces around values are stripped;
    exact duplicate rows are kept once.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"Metadata file {path} not found. Create data with `paddyclf demo` (synthetic) or "
            "`paddyclf prepare --images DIR --out data` (a class-per-folder tree), or pass --metadata."
        )
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        missing = {"path", "label"} - set(columns)
        if missing:
            raise UserError(
                f"Metadata file {path} must have columns path,label[,split]; "
                f"missing {', '.join(sorted(missing))} (found: {', '.join(columns) or 'nothing'})."
            )
        rows, seen = [], set()
        for raw in reader:
            row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
            key = (row["path"], row["label"], row.get("split", ""))
            if row["path"] and key not in seen:
                seen.add(key)
                rows.append(row)
    return rows


def resolve_samples(rows: list[dict[str, str]], root: Path, label2id: dict[str, int]) -> list[tuple[Sample, str]]:
    """(Sample, split) per row; split is '' when the CSV has none. Raises on unknown labels."""
    unknown = sorted({r["label"] for r in rows} - set(label2id))
    if unknown:
        raise UserError(
            f"{len(unknown)} label(s) in the metadata are missing from label2id: {', '.join(unknown[:20])}. "
            "Add them to label2id.json or fix the CSV."
        )
    out = []
    for row in rows:
        split = row.get("split", "").lower()
        if split and split not in SPLIT_ALIASES:
            raise UserError(f"Unknown split value {row['split']!r}; use train, valid (val, validation) or test.")
        p = Path(row["path"])
        out.append((Sample(p if p.is_absolute() else root / p, label2id[row["label"]]), SPLIT_ALIASES.get(split, "")))
    return out


def stratified_order(labels: Sequence[int], seed: int) -> np.ndarray:
    """Indices ordered so that every prefix is (as nearly as possible) stratified by label.

    Within each class the samples are shuffled; sample i of a class of n gets the key i / n, and all
    samples are sorted by key (ties broken at random). Taking the first k indices takes about
    k * n_c / n of each class, and every class once k reaches the number of classes.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    keys = np.empty(len(labels))
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        keys[idx] = np.arange(len(idx)) / len(idx)
    return np.lexsort((rng.random(len(labels)), keys))


def stratified_subset(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """A deterministic stratified subset of ``limit`` samples (all of them when limit is None)."""
    if limit is None or limit >= len(samples):
        return samples
    order = stratified_order([s.label for s in samples], seed)[:limit]
    return [samples[i] for i in sorted(order)]


def split_samples(
    tagged: list[tuple[Sample, str]], seed: int, valid_fraction: float = DEFAULT_VALID_FRACTION
) -> dict[str, list[Sample]]:
    """Group samples by split; with no split column, take a stratified ``valid_fraction`` as valid."""
    if any(split for _, split in tagged):
        splits: dict[str, list[Sample]] = {"train": [], "valid": [], "test": []}
        for sample, split in tagged:
            splits[split or "train"].append(sample)
        return splits
    samples = [s for s, _ in tagged]
    n_valid = round(len(samples) * valid_fraction)
    valid_idx = set(stratified_order([s.label for s in samples], seed)[:n_valid].tolist())
    return {
        "train": [s for i, s in enumerate(samples) if i not in valid_idx],
        "valid": [s for i, s in enumerate(samples) if i in valid_idx],
        "test": [],
    }


def check_files_exist(samples: list[Sample]) -> None:
    missing = [s.path for s in samples if not s.path.is_file()]
    if missing:
        shown = missing[:5]
        raise UserError(
            f"{len(missing)} image file(s) listed in the metadata do not exist; "
            f"first {len(shown)}: {', '.join(str(p) for p in shown)}."
        )


def load_splits(
    metadata: str | Path,
    label2id: dict[str, int],
    seed: int,
    limits: dict[str, int | None] | None = None,
    required: Sequence[str] = ("train", "valid"),
) -> dict[str, list[Sample]]:
    """Read, split, subset and check the dataset described by ``metadata``.

    ``limits`` caps a split at a stratified subset; every split in ``required`` must be non-empty,
    and every file of the returned splits must exist (all checked before any training starts).
    """
    rows = read_metadata(metadata)
    splits = split_samples(resolve_samples(rows, Path(metadata).resolve().parent, label2id), seed)
    for name, limit in (limits or {}).items():
        splits[name] = stratified_subset(splits[name], limit, seed)
    for name in required:
        if not splits[name]:
            raise UserError(
                f"The {name} split of {metadata} is empty. Give it rows with split={name}, "
                "or drop the split column to split automatically (20% valid)."
            )
    check_files_exist([s for name in required for s in splits[name]])
    return splits


# --------------------------------------------------------------------------- images
