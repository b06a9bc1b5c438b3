"""``paddyclf prepare``: metadata.csv + label2id.json from a class-per-folder image tree.

``DIR/<class>/**/<image>`` (the layout of Paddy Doctor's ``train_images/``) becomes a stratified
train / valid / test split. Paths in the CSV are relative to the output folder.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from .data import IMAGE_SUFFIXES, stratified_order
from .errors import UserError
from .fileio import atomic_path, write_json


def find_class_images(images_dir: Path) -> dict[str, list[Path]]:
    """{class folder name: sorted image files below it}; classes without images are left out."""
    if not images_dir.is_dir():
        raise UserError(f"--images {images_dir} is not a folder.")
    classes = {}
    for folder in sorted(p for p in images_dir.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            classes[folder.name] = files
    if not classes:
        raise UserError(
            f"No class folders with images under {images_dir}. Expected DIR/<class>/<image>.jpg "
            f"(suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})."
        )
    return classes


def prepare_dataset(
    images_dir: str | Path,
    out_dir: str | Path,
    valid_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 42,
) -> tuple[Path, Path]:
    """Write ``out_dir/metadata.csv`` (path,label,split) and ``out_dir/label2id.json``."""
    if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise UserError("--valid-fraction and --test-fraction must be in [0, 1) and sum to less than 1.")
    out_dir = Path(out_dir)
    classes = find_class_images(Path(images_dir))
    label2id = {name: i for i, name in enumerate(classes)}
    files = [(path, name) for name, paths in classes.items() for path in paths]
    order = stratified_order([label2id[name] for _, name in files], seed)
    n_valid, n_test = round(len(files) * valid_fraction), round(len(files) * test_fraction)
    split = {int(i): "valid" for i in order[:n_valid]} | {int(i): "test" for i in order[n_valid : n_valid + n_test]}
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = out_dir / "metadata.csv"
    with atomic_path(metadata) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split"])
        for i, (path, name) in enumerate(files):
            rel = os.path.relpath(path.resolve(), out_dir.resolve())
            writer.writerow([Path(rel).as_posix(), name, split.get(i, "train")])
    label_path = write_json(out_dir / "label2id.json", label2id)
    return metadata, label_path
