"""``paddyclf prepare``: metadata.csv + label2id.json from an image tree, split without leaks.

Two layouts are read:

* ``ROOT/<class>/**/<image>`` (the layout of Paddy Doctor's ``train_images/``);
* ``ROOT/<split>/<class>/**/<image>`` with split folders ``train``, ``val``/``valid``/``validation``
  and ``test`` (the layout of many public sets, rice5's among them).

By default duplicates and near-duplicates (:mod:`paddyclf.data.dedupe`) are grouped first and every
group goes into one split, stratified by class over groups, so no photo is scored that the model
trained on. A tree with split folders is re-split that way; ``keep_splits`` keeps its folders and
reports the leaks they contain. Paths in the CSV are relative to the output folder.
"""

from __future__ import annotations

import csv
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..fileio import atomic_path, write_json
from .images import IMAGE_SUFFIXES
from .metadata import SPLIT_ALIASES

SPLITS = ("train", "valid", "test")


def _images_below(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_class_images(images_dir: Path) -> dict[str, list[Path]]:
    """{class folder name: sorted image files below it}; classes without images are left out."""
    if not images_dir.is_dir():
        raise UserError(f"--images {images_dir} is not a folder.")
    classes = {}
    for folder in sorted(p for p in images_dir.iterdir() if p.is_dir()):
        files = _images_below(folder)
        if files:
            classes[folder.name] = files
    if not classes:
        raise UserError(
            f"No class folders with images under {images_dir}. Expected DIR/<class>/<image>.jpg or "
            f"DIR/<split>/<class>/<image>.jpg (suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})."
        )
    return classes


@dataclass
class TreeImage:
    path: Path
    label: str
    given_split: str = ""  # from a split folder, else ""


def read_tree(images_dir: str | Path) -> tuple[list[TreeImage], bool]:
    """The images of a class-per-folder tree, with or without split folders; (images, has_split_folders)."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise UserError(f"--images {images_dir} is not a folder.")
    subfolders = [p for p in images_dir.iterdir() if p.is_dir()]
    split_folders = [p for p in subfolders if p.name.lower() in SPLIT_ALIASES]
    if split_folders and len(split_folders) == len(subfolders):
        images = [
            TreeImage(path, label, SPLIT_ALIASES[folder.name.lower()])
            for folder in sorted(split_folders)
            for label, paths in find_class_images(folder).items()
            for path in paths
        ]
        return images, True
    if split_folders:
        raise UserError(
            f"{images_dir} mixes split folders ({', '.join(sorted(p.name for p in split_folders))}) with other "
            "folders. Use ROOT/<class>/<image> or ROOT/<split>/<class>/<image>."
        )
    return [TreeImage(path, label) for label, paths in find_class_images(images_dir).items() for path in paths], False


def group_split(
    groups: list[int], labels: list[str], valid_fraction: float, test_fraction: float, seed: int
) -> list[str]:
    """A split per image such that each group lies in one split, stratified by class over groups.

    A group counts for its most common label. Within each class the groups are shuffled (by ``seed``)
    and assigned to valid, then test, until each holds its share of that class's images; the rest
    is train.
    """
    members: dict[int, list[int]] = defaultdict(list)
    for k, g in enumerate(groups):
        members[g].append(k)
    by_class: dict[str, list[int]] = defaultdict(list)
    for g, ks in sorted(members.items()):
        by_class[Counter(labels[k] for k in ks).most_common(1)[0][0]].append(g)
    rng = np.random.default_rng(seed)
    split = ["train"] * len(groups)
    for label in sorted(by_class):
        class_groups = [by_class[label][i] for i in rng.permutation(len(by_class[label]))]
        total = sum(len(members[g]) for g in class_groups)
        targets = [("valid", round(total * valid_fraction)), ("test", round(total * test_fraction))]
        cursor = 0
        for name, target in targets:
            taken = 0
            while cursor < len(class_groups) and taken < target:
                # take the group if it brings the count closer to the target than leaving it out
                size = len(members[class_groups[cursor]])
                if taken > 0 and abs(taken + size - target) > abs(taken - target):
                    break
                for k in members[class_groups[cursor]]:
                    split[k] = name
                taken += size
                cursor += 1
    return split


def prepare_dataset(
    images_dir: str | Path,
    out_dir: str | Path,
    valid_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 42,
    dedupe: bool = True,
    keep_splits: bool = False,
    workers: int | None = None,
    progress: bool = False,
    log=print,
) -> tuple[Path, Path]:
    """Write ``out_dir/metadata.csv`` (path,label,split,group) and ``out_dir/label2id.json``."""
    if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise UserError("--valid-fraction and --test-fraction must be in [0, 1) and sum to less than 1.")
    out_dir = Path(out_dir)
    images, has_splits = read_tree(images_dir)
    if keep_splits and not has_splits:
        raise UserError(f"--keep-splits needs split folders (train/, val/ or validation/, test/) under {images_dir}.")
    labels = [im.label for im in images]
    label2id = {name: i for i, name in enumerate(sorted(set(labels)))}
    if has_splits:
        log(
            f"Found split folders in {images_dir}: "
            + ", ".join(f"{s} {n}" for s, n in Counter(im.given_split for im in images).items())
        )
    groups = list(range(len(images)))
    if dedupe:
        from .audit import audit_images

        audit = audit_images(
            [im.path for im in images], labels, [im.given_split for im in images],
            out_dir / ".fingerprints", workers, progress,
        )  # fmt: skip
        groups = [im.group if im.group >= 0 else -1 - k for k, im in enumerate(audit.images)]
        grouped = audit.duplicate_groups()
        log(
            f"Grouped {sum(len(g) for g in grouped)} of {len(images)} images into {len(grouped)} groups of "
            f"duplicates ({len(set(groups))} distinct photos); each group stays in one split."
        )
        conflicts = audit.label_conflicts()
        if conflicts:
            log(f"warning: {len(conflicts)} groups hold one photo under several labels; `paddyclf audit` lists them.")
        if keep_splits:
            cross = audit.cross_split_groups()
            if cross:
                log(
                    f"warning: --keep-splits keeps {len(cross)} duplicate groups ({sum(len(g) for g in cross)} "
                    "images) that cross the given splits: scores on them are inflated by memorisation."
                )
    if keep_splits:
        split = [im.given_split for im in images]
    else:
        split = group_split(groups, labels, valid_fraction, test_fraction, seed)
    if has_splits and not keep_splits:
        log("Re-split leak-free (pass --keep-splits to keep the folders' split).")
    counts = Counter(split)
    log("Split: " + ", ".join(f"{name} {counts.get(name, 0)}" for name in SPLITS))
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = out_dir / "metadata.csv"
    group_ids = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    with atomic_path(metadata) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split", "group"])
        for im, s, g in zip(images, split, groups, strict=True):
            rel = os.path.relpath(im.path.resolve(), out_dir.resolve())
            writer.writerow([Path(rel).as_posix(), im.label, s, group_ids[g]])
    label_path = write_json(out_dir / "label2id.json", label2id)
    return metadata, label_path
