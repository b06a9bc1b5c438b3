"""``paddyclf audit``: duplicates, leaks across splits, label conflicts and unreadable files of a dataset.

Reads a ``metadata.csv`` (path,label[,split]), groups exact and near-duplicate photos with
:mod:`paddyclf.data.dedupe`, and writes ``audit.csv`` (one row per image: group, path, split, label,
distance), ``audit.json`` (the summary) and ``contact_sheet.png`` (the largest groups that cross
splits). A group that spans two splits is a leak: the model is scored on photos it trained on.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..fileio import atomic_path, write_json
from . import dedupe
from .images import load_image
from .metadata import SPLIT_ALIASES, load_label2id, read_metadata


@dataclass
class AuditedImage:
    path: Path
    label: str
    split: str  # train / valid / test, or "" without a split column
    group: int = -1  # -1: unreadable
    distance: int | None = None  # hash distance to its closest confirmed duplicate (None: no duplicate)
    error: str = ""


@dataclass
class DatasetAudit:
    images: list[AuditedImage]
    links: dedupe.DuplicateLinks

    def members(self) -> dict[int, list[int]]:
        """Group id -> indices of its images (readable images only)."""
        groups: dict[int, list[int]] = defaultdict(list)
        for k, image in enumerate(self.images):
            if image.group >= 0:
                groups[image.group].append(k)
        return groups

    def duplicate_groups(self) -> list[list[int]]:
        """Groups of two or more images, largest first."""
        return sorted((m for m in self.members().values() if len(m) > 1), key=lambda m: (-len(m), m[0]))

    def cross_split_groups(self) -> list[list[int]]:
        return [m for m in self.duplicate_groups() if len({self.images[k].split for k in m}) > 1]

    def label_conflicts(self) -> list[list[int]]:
        return [m for m in self.duplicate_groups() if len({self.images[k].label for k in m}) > 1]


def audit_images(
    paths: list[Path],
    labels: list[str],
    splits: list[str],
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> DatasetAudit:
    """Fingerprint ``paths`` (parallel, cached), find duplicate groups, return the per-image findings."""
    fps = dedupe.fingerprint_files(paths, cache_dir, workers, progress)
    links = dedupe.find_duplicates(fps, workers=workers, progress=progress)
    images = [
        AuditedImage(p, label, split, int(links.group_of[k]), error=fp.error)
        for k, (p, label, split, fp) in enumerate(zip(paths, labels, splits, fps, strict=True))
    ]
    for (i, j), dist in zip(links.pairs, links.distances, strict=True):
        for k in (i, j):
            current = images[k].distance
            images[k].distance = int(dist) if current is None else min(current, int(dist))
    return DatasetAudit(images, links)


def read_dataset(metadata: str | Path, label2id: str | Path | None = None) -> tuple[list[Path], list[str], list[str]]:
    """(paths, labels, splits) of a metadata CSV; with ``label2id``, unknown labels are an error."""
    rows = read_metadata(metadata)
    if not rows:
        raise UserError(f"Metadata file {metadata} lists no images.")
    if label2id is not None:
        known = load_label2id(label2id)
        unknown = sorted({r["label"] for r in rows} - set(known))
        if unknown:
            raise UserError(f"{len(unknown)} label(s) in {metadata} are missing from {label2id}: {', '.join(unknown)}.")
    root = Path(metadata).resolve().parent
    paths, labels, splits = [], [], []
    for row in rows:
        split = row.get("split", "").lower()
        if split and split not in SPLIT_ALIASES:
            raise UserError(f"Unknown split value {row['split']!r}; use train, valid (val, validation) or test.")
        p = Path(row["path"])
        paths.append(p if p.is_absolute() else root / p)
        labels.append(row["label"])
        splits.append(SPLIT_ALIASES.get(split, ""))
    return paths, labels, splits


def summary(audit: DatasetAudit) -> dict:
    """The numbers of ``audit.json``."""
    images = audit.images
    groups = audit.duplicate_groups()
    cross = audit.cross_split_groups()
    exact_extra = sum(
        n - 1 for n in Counter(fp for fp in _exact_keys(audit) if fp is not None).values() if n > 1
    )  # images that are pixel-identical to an earlier one
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for (label, split), n in sorted(Counter((im.label, im.split or "all") for im in images).items()):
        counts[label][split] = n

    def describe(group: list[int]) -> dict:
        return {
            "size": len(group),
            "splits": dict(Counter(images[k].split or "all" for k in group)),
            "labels": dict(Counter(images[k].label for k in group)),
            "paths": [str(images[k].path) for k in group],
        }

    return {
        "images": len(images),
        "readable": sum(im.group >= 0 for im in images),
        "unreadable": [{"path": str(im.path), "error": im.error} for im in images if im.group < 0],
        "groups": len({im.group for im in images if im.group >= 0}),
        "duplicate_groups": len(groups),
        "images_in_duplicate_groups": sum(len(g) for g in groups),
        "exact_duplicate_images": exact_extra,
        "cross_split_groups": len(cross),
        "images_in_cross_split_groups": sum(len(g) for g in cross),
        "label_conflicts": [describe(g) for g in audit.label_conflicts()],
        "counts": dict(counts),
        "largest_groups": [describe(g) for g in groups[:10]],
        "hash_candidate_pairs": audit.links.hash_candidates,
        "candidate_pairs": audit.links.candidates,  # after the dense filter
        "registered_pairs": audit.links.registered,
        "seconds": {stage: round(seconds, 2) for stage, seconds in audit.links.seconds.items()},
        "confirmed_links": len(audit.links.pairs),
        "thresholds": {
            "hash_bits": dedupe.HASH_THRESHOLD,
            "min_correlation": dedupe.MIN_CORRELATION,
            "max_residual": dedupe.MAX_RESIDUAL,
            "max_fine_residual": dedupe.MAX_FINE_RESIDUAL,
            "dense_margin": dedupe.DENSE_MARGIN,
            "dense_neighbours": dedupe.DENSE_NEIGHBOURS,
        },
    }


def _exact_keys(audit: DatasetAudit) -> list[int | None]:
    """A key per image shared exactly by pixel-identical images (links of similarity 1 and distance 0)."""
    uf = dedupe.UnionFind(len(audit.images))
    for (i, j), d, s in zip(audit.links.pairs, audit.links.distances, audit.links.similarities, strict=True):
        if d == 0 and s == 1.0:
            uf.union(int(i), int(j))
    return [uf.find(k) if im.group >= 0 else None for k, im in enumerate(audit.images)]


def write_audit_csv(audit: DatasetAudit, path: Path) -> Path:
    sizes = Counter(im.group for im in audit.images)
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["group", "group_size", "path", "split", "label", "distance", "status"])
        order = sorted(range(len(audit.images)), key=lambda k: (-sizes[audit.images[k].group], audit.images[k].group))
        for k in order:
            im = audit.images[k]
            writer.writerow(
                [
                    im.group if im.group >= 0 else "",
                    sizes[im.group] if im.group >= 0 else "",
                    str(im.path),
                    im.split,
                    im.label,
                    "" if im.distance is None else im.distance,
                    "ok" if im.group >= 0 else f"unreadable: {im.error}",
                ]
            )
    return path


def write_contact_sheet(audit: DatasetAudit, path: Path, max_groups: int = 6, per_group: int = 8) -> Path | None:
    """One row per group (the largest cross-split groups, else the largest groups), captioned split/label."""
    from PIL import Image

    from ..plots import plt, save_figure  # imported late: matplotlib costs 0.2 s of start-up

    groups = [
        _by_split_in_turn(audit, g) for g in (audit.cross_split_groups() or audit.duplicate_groups())[:max_groups]
    ]
    if not groups:
        return None
    cols = min(per_group, max(len(g) for g in groups))
    fig, axes = plt.subplots(len(groups), cols, figsize=(1.9 * cols, 2.2 * len(groups)), squeeze=False)
    for row, group in enumerate(groups):
        for col in range(cols):
            ax = axes[row][col]
            ax.axis("off")
            if col >= len(group):
                continue
            im = audit.images[group[col]]
            thumb = load_image(im.path)
            thumb.thumbnail((160, 160), Image.Resampling.LANCZOS)
            ax.imshow(np.asarray(thumb))
            ax.set_title(f"{im.split or '-'} / {im.label}\n{im.path.name[:22]}", fontsize=7)
        axes[row][0].text(
            -0.08, 0.5, f"group {audit.images[group[0]].group}\n{len(group)} images", transform=axes[row][0].transAxes,
            ha="right", va="center", fontsize=8,
        )  # fmt: skip
    fig.suptitle("Largest duplicate groups that cross splits (split / label)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _by_split_in_turn(audit: DatasetAudit, group: list[int]) -> list[int]:
    """The group's images with the splits taking turns (train, valid, test, train, ...), so a row shows the leak."""
    by_split: dict[str, list[int]] = defaultdict(list)
    for k in group:
        by_split[audit.images[k].split].append(k)
    queues = [by_split[s] for s in sorted(by_split, key=lambda s: ("train", "valid", "test", "").index(s))]
    out = []
    while any(queues):
        out += [q.pop(0) for q in queues if q]
    return out


def format_summary(report: dict, output_dir: Path) -> str:
    lines = [
        f"{report['images']} images, {report['readable']} readable, {len(report['unreadable'])} unreadable",
        f"{report['groups']} distinct photos (groups); {report['duplicate_groups']} groups of duplicates hold "
        f"{report['images_in_duplicate_groups']} images ({report['exact_duplicate_images']} exact pixel copies)",
        f"{report['cross_split_groups']} groups ({report['images_in_cross_split_groups']} images) cross splits: "
        + ("LEAK" if report["cross_split_groups"] else "no leak"),
        f"{len(report['label_conflicts'])} groups have conflicting labels",
    ]
    for conflict in report["label_conflicts"][:5]:
        lines.append(f"  labels {conflict['labels']}: {', '.join(conflict['paths'][:3])}")
    for bad in report["unreadable"][:5]:
        lines.append(f"  unreadable {bad['path']}: {bad['error']}")
    lines.append(
        f"Wrote {output_dir}/audit.csv, audit.json" + (", contact_sheet.png" if report["contact_sheet"] else "")
    )
    return "\n".join(lines)


def run_audit(
    metadata: str | Path,
    label2id: str | Path | None = None,
    output_dir: str | Path = "audit",
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Audit the dataset of ``metadata``; write audit.csv, audit.json, contact_sheet.png; return the summary."""
    output_dir = Path(output_dir)
    paths, labels, splits = read_dataset(metadata, label2id)
    audit = audit_images(paths, labels, splits, cache_dir or output_dir / "cache", workers, progress)
    report = summary(audit)
    write_audit_csv(audit, output_dir / "audit.csv")
    sheet = write_contact_sheet(audit, output_dir / "contact_sheet.png")
    report["contact_sheet"] = str(sheet) if sheet else None
    write_json(output_dir / "audit.json", report)
    return report
