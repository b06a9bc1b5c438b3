"""Where a version comes from: the dataset rows it saw, its configuration, its parent, paddyclf's version.

A version's tags (all ``paddyclf.*``) say::

    parent_version       the version it was fine-tuned from ('' for a first model)
    metadata_sha256      sha256 of the metadata CSV it was trained from
    photos_sha256        sha256 of its photo list: the sorted '<sha256 of the photo>  <split>' lines
    photos               how many photos it learned from (train) or was selected and calibrated on (valid)
    config               the checkpoint's architecture, and the training flags when its run left them
    paddyclf_version     the package that trained or registered it

The list itself (split, path, sha256 per photo) is the artifact ``lineage/photos.csv``: a tag holds
a fixed-size fingerprint, an artifact the thousands of lines behind it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .. import __version__
from ..checkpoint import class_names
from ..data import load_label2id, load_splits
from ..errors import UserError
from ..fileio import file_sha256, write_csv
from ..training.config import TrainConfig

LINEAGE_SPLITS = ("train", "valid")  # what a model saw; the test split is what it is judged on


def training_config(checkpoint: Path) -> dict | None:
    """The training flags of the run that wrote ``checkpoint``: its ``<stem>_last.pt`` beside it, if kept."""
    import torch

    last = checkpoint.with_name(checkpoint.name.replace("_best.pt", "_last.pt"))
    if last == checkpoint or not last.is_file():
        return None
    try:
        state = torch.load(last, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - lineage is best effort: an unreadable state only loses the flags
        return None
    return state.get("train_config") if isinstance(state, dict) else None


def photo_rows(metadata: Path, label2id: dict[str, int], train_config: dict | None) -> list[dict]:
    """(split, path, sha256) of the photos a model trained on ``metadata`` saw; the run's own limits
    and seed, when known, pick the same subset it did."""
    seed = int((train_config or {}).get("seed", TrainConfig.seed))
    limits = {
        "train": (train_config or {}).get("train_limit"),
        "valid": (train_config or {}).get("valid_limit"),
    }
    splits = load_splits(metadata, label2id, seed, limits, required=())
    return [
        {"split": split, "path": str(sample.path), "sha256": file_sha256(sample.path)}
        for split in LINEAGE_SPLITS
        for sample in splits[split]
        if sample.path.is_file()
    ]


def photos_fingerprint(rows: list[dict]) -> str:
    lines = sorted(f"{row['sha256']}  {row['split']}" for row in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def lineage(
    ckpt: dict,
    checkpoint: Path,
    metadata: Path | None,
    label2id: Path | None,
    parent: int | None,
    lineage_dir: Path,
) -> dict[str, str]:
    """The lineage tags of a version; writes ``lineage_dir/photos.csv`` when the dataset is known."""
    train_config = training_config(checkpoint)
    if metadata is None and train_config and Path(train_config.get("metadata") or "").is_file():
        # the run's own paths, relative to where it ran: used only when they still lead to the files
        metadata = Path(train_config["metadata"])
        label2id = Path(train_config["label2id"]) if Path(train_config.get("label2id") or "").is_file() else None
    tags = {
        "parent_version": "" if parent is None else str(parent),
        "config": json.dumps({"architecture": ckpt["config"], "training": train_config}, default=str),
        "paddyclf_version": __version__,
    }
    if metadata is None:
        return tags
    if not metadata.is_file():
        raise UserError(f"--metadata {metadata} not found (the dataset the checkpoint was trained on).")
    labels = load_label2id(label2id) if label2id else ckpt["label2id"]
    if class_names(labels) != class_names(ckpt["label2id"]):
        raise UserError(f"The label map of {metadata} does not name the checkpoint's classes in its order.")
    rows = photo_rows(metadata, labels, train_config)
    write_csv(lineage_dir / "photos.csv", ["split", "path", "sha256"], rows)
    tags.update(
        metadata=str(metadata.resolve()),
        metadata_sha256=file_sha256(metadata),
        photos_sha256=photos_fingerprint(rows),
        photos=str(len(rows)),
    )
    return tags
