"""``paddyclf serve-export``: the expert-reviewed photos of a history as a dataset.

Writes ``OUT/images/<label>/<sha256>.jpg``, ``OUT/metadata.csv`` (path,label plus where each photo
came from) and ``OUT/label2id.json`` (the reviewed labels, in the order of the newest served model's classes,
so that every class of the map has photos). ``metadata.csv`` has no split column: ``train`` splits it (20% valid), and
``audit`` / ``prepare --images OUT/images`` work on it as on any class-per-folder tree. A photo reviewed
more than once keeps its latest label; identical photos (same sha256) are one row. The folder is
built beside OUT and renamed into place, so OUT is either complete or absent.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

from ..errors import UserError
from ..fileio import staging_folder
from .store import Store

METADATA_COLUMNS = [
    "path", "label", "predicted", "status", "diagnosis_id", "reviewed_at", "gps_latitude", "gps_longitude",
]  # fmt: skip


def dataset_classes(store: Store, labels: set[str]) -> list[str]:
    """The reviewed labels, in the newest served model's class order (then any others, sorted)."""
    served = next(iter(store.model_classes()), [])
    return [c for c in served if c in labels] + sorted(labels - set(served))


def export_reviewed(data_dir: str | Path, out: str | Path) -> dict:
    """Write the dataset; returns {"photos": N, "classes": {label: count}, "out": OUT}."""
    store = Store(data_dir, create=False)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not empty; give --out a new folder.")
    try:
        latest = {}  # photo sha256 -> its latest review (records come oldest first)
        for record in store.reviewed():
            latest[record["photo_sha256"]] = record
        if not latest:
            raise UserError(f"No reviewed diagnoses in {data_dir}: review photos on /history first (needs the token).")
        classes = dataset_classes(store, {r["reviewed_label"] for r in latest.values()})
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = staging_folder(out)
        try:
            rows = [_copy_photo(store, record, staging) for record in latest.values()]
            _write_metadata(staging / "metadata.csv", rows)
            (staging / "label2id.json").write_text(json.dumps({c: i for i, c in enumerate(classes)}, indent=2) + "\n")
            if out.exists():
                out.rmdir()
            os.replace(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    finally:
        store.close()
    counts = {c: sum(r["label"] == c for r in rows) for c in classes}
    return {"photos": len(rows), "classes": counts, "out": str(out)}


def _copy_photo(store: Store, record: dict, staging: Path) -> dict:
    sha, label = record["photo_sha256"], record["reviewed_label"]
    source = store.photo_path(sha)
    if not source.is_file():
        raise UserError(
            f"The photo of diagnosis {record['id']} is missing from {source.parent}; the history is damaged."
        )
    relative = Path("images") / safe_folder(label) / f"{sha}.jpg"
    (staging / relative).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, staging / relative)
    return {
        "path": relative.as_posix(),
        "label": label,
        "predicted": record["predicted"],
        "status": record["status"],
        "diagnosis_id": record["id"],
        "reviewed_at": record["reviewed_at"],
        "gps_latitude": record["gps_latitude"] if record["gps_latitude"] is not None else "",
        "gps_longitude": record["gps_longitude"] if record["gps_longitude"] is not None else "",
    }


def safe_folder(label: str) -> str:
    """A label as one folder name (labels come from the model's classes, but a path separator must not nest)."""
    name = "".join(c if c.isalnum() or c in "-_. " else "_" for c in label).strip(". ")
    return name or "_"


def _write_metadata(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=METADATA_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
