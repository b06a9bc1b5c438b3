"""Data contract (metadata.csv + label2id.json + images), image decoding, transforms and loaders.

``metadata.csv`` has columns ``path,label[,split]``. Paths are relative to the CSV's folder or
absolute. Split values are train / valid / test (val and validation mean valid). Without a split
column, a stratified 20% of the rows (by ``--seed``) becomes the validation set.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from .augment import LinearColorJitter
from .errors import UserError
from .fileio import atomic_path

SPLIT_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "test": "test"}
DEFAULT_VALID_FRACTION = 0.2
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


# --------------------------------------------------------------------------- metadata


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


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB. 16/32-bit images are scaled (not clipped); alpha is dropped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        scale = 255.0 / 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "P":
        img = img.convert("RGBA")  # palette transparency is only honoured via RGBA
    return img if img.mode == "RGB" else img.convert("RGB")


def load_image(path: str | Path, min_size: int | None = None) -> Image.Image:
    """Decode an image file to RGB with its EXIF orientation applied.

    With ``min_size``, a JPEG is decoded in draft mode: libjpeg scales by 1/2, 1/4 or 1/8 in the
    DCT domain to the smallest size whose sides are still >= min_size, which skips most of the
    decoding work for photos much larger than the training size.
    """
    with Image.open(path) as img:
        if min_size and img.format == "JPEG":
            img.draft("RGB", (min_size, min_size))
        img = ImageOps.exif_transpose(img)
        return to_rgb(img)


# --------------------------------------------------------------------------- transforms


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_pct: float = 0.875

    @classmethod
    def from_pretrained_cfg(cls, cfg: dict | object) -> Normalization:
        get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
        return cls(tuple(get("mean")), tuple(get("std")), float(get("crop_pct", 0.875) or 0.875))

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "crop_pct": self.crop_pct}


@dataclass(frozen=True)
class TrainAugment:
    """What a recipe adds to the train transform (see :mod:`paddyclf.recipe`); the default adds nothing."""

    augment: str = "none"  # none | trivial (TrivialAugmentWide) | randaugment (RandAugment)
    random_erasing: float = 0.0  # probability per image

    @classmethod
    def from_config(cls, config) -> TrainAugment:
        return cls(config.augment, config.random_erasing)


def build_transform(
    image_size: int, norm: Normalization, train: bool, extra: TrainAugment = TrainAugment()
) -> v2.Compose:
    """PIL RGB image -> normalised float tensor (3, S, S).

    Train: random resized crop (scale 0.5-1, so lesions stay in view), horizontal and vertical
    flips (a leaf has no canonical orientation), light colour jitter (field lighting varies, but
    colour carries the disease signal, so hue moves only 2%; applied as one affine colour map, see
    :mod:`paddyclf.augment`). Eval: resize to S / crop_pct, centre crop.
    The geometric and colour ops run on the 8-bit PIL image (in a one-off timing, Pillow's C kernels
    were 1.5x faster than the same v2 ops on uint8 tensors); the float conversion comes last, on
    S x S pixels only.
    ``extra`` (train only) inserts TrivialAugmentWide or RandAugment after the flips, and random
    erasing on the normalised tensor.
    """
    to_float = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(norm.mean, norm.std)]
    if train:
        policy = {"none": [], "trivial": [v2.TrivialAugmentWide()], "randaugment": [v2.RandAugment()]}
        ops = [
            v2.RandomResizedCrop(image_size, scale=(0.5, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            *policy[extra.augment],
            LinearColorJitter(brightness=0.2, contrast=0.2, saturation=0.15, hue=0.02),
        ]
        if extra.random_erasing > 0:
            to_float.append(v2.RandomErasing(p=extra.random_erasing))
    else:
        ops = [v2.Resize(int(image_size / norm.crop_pct), antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose(ops + to_float)


def decode_size(image_size: int, norm: Normalization, train: bool) -> int:
    """Smallest short side a JPEG may be draft-decoded to without losing pixels the transform keeps."""
    return image_size if train else int(image_size / norm.crop_pct)


# --------------------------------------------------------------------------- datasets and loaders


class ImageDataset(Dataset):
    """``(image, label, index)`` per sample; an unreadable file yields ``(None, index, "path: error")``.

    Failures are passed on rather than raised so that one broken photo never kills a long run;
    :func:`collate_skipping_bad` drops them from the batch and reports them. With a
    :class:`DecodedCache`, images come from the cache (decoded once, in an earlier epoch).
    """

    def __init__(
        self,
        samples: list[Sample],
        transform,
        decode_min_size: int | None = None,
        cache: DecodedCache | None = None,
        seed: int = 0,
    ) -> None:
        self.samples = samples
        self.transform = transform
        self.decode_min_size = decode_min_size
        self.cache = cache
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]):
        """``key`` is an index, or ``(epoch, index)`` from :class:`EpochShuffleSampler`.

        With an epoch, the random augmentation is seeded by (seed, epoch, index) in a forked RNG:
        it is then the same whatever the number of workers or ranks, and after a resume.
        """
        epoch, index = key if isinstance(key, tuple) else (None, key)
        sample = self.samples[index]
        try:
            image = self.read(sample.path)
            if epoch is None:
                return self.transform(image), sample.label, index
            with torch.random.fork_rng(devices=[]):
                # the CPU generator only: torch.manual_seed also queues CUDA seeding with a stack
                # trace, which made the cached training pipeline 3.4 instead of 3.0 ms per image
                torch.default_generator.manual_seed((self.seed * 1_000_003 + epoch) * 1_000_033 + index)
                return self.transform(image), sample.label, index
        except Exception as exc:  # noqa: BLE001 - any decoder failure means "skip this file"
            return None, index, f"{sample.path}: {type(exc).__name__}: {exc}"

    def read(self, path: Path) -> Image.Image:
        if self.cache is not None:
            return self.cache.load(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's palette/EXIF chatter, once per image
            return load_image(path, self.decode_min_size)


class DecodedCache:
    """Decoded images on disk: one uint8 HWC ``.npy`` per image, read back memory-mapped.

    Each image is stored once, resized so its short side is ``short_side`` (the eval resize, a
    little above the training size), under a key of its absolute path, ``short_side``, mtime and
    byte size: a changed file gets a new key and is decoded again. Random crops and flips are
    applied after reading, so they still vary per epoch. Entries are written atomically, so
    DataLoader workers can fill the cache concurrently during the first epoch.
    """

    def __init__(self, root: str | Path, short_side: int) -> None:
        self.root = Path(root)
        self.short_side = short_side
        self.root.mkdir(parents=True, exist_ok=True)

    def entry(self, path: Path) -> Path:
        stat = path.stat()
        raw = f"{path.resolve()}|{self.short_side}|{stat.st_mtime_ns}|{stat.st_size}"
        return self.root / f"{hashlib.sha1(raw.encode()).hexdigest()}.npy"

    def decode(self, path: Path) -> Image.Image:
        """Fresh decode: draft-mode JPEG, then the same antialiased resize the eval transform uses."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return v2.functional.resize(load_image(path, self.short_side), self.short_side, antialias=True)

    def load(self, path: Path) -> Image.Image:
        """The resized RGB image; decoded and stored on the first call, memory-mapped afterwards."""
        entry = self.entry(path)
        if entry.is_file():
            return Image.fromarray(np.load(entry, mmap_mode="r"))
        image = self.decode(path)
        with atomic_path(entry) as tmp, tmp.open("wb") as fh:
            np.save(fh, np.asarray(image))
        return image


@dataclass
class Batch:
    images: torch.Tensor | None
    labels: torch.Tensor | None
    indices: torch.Tensor | None
    failures: list[str]  # "path: error" of each unreadable item
    failed_indices: list[int]


def collate_skipping_bad(items: list[tuple]) -> Batch:
    """Stack the readable items; list the failures of the others."""
    good = [item for item in items if item[0] is not None]
    bad = [(index, msg) for img, index, msg in items if img is None]
    failures, failed = [msg for _, msg in bad], [index for index, _ in bad]
    if not good:
        return Batch(None, None, None, failures, failed)
    images, labels, indices = zip(*good, strict=True)
    return Batch(stack_images(images), torch.tensor(labels), torch.tensor(indices), failures, failed)


def stack_images(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """(C, H, W) images -> an (N, C, H, W) batch in the memory layout the images already have.

    v2's ToImage returns (C, H, W) views of Pillow's (H, W, C) pixels, so their batch is stacked
    channels_last: the channels_last model then needs no transposing copy of every batch in the
    training process (9 ms per batch of 32 at 224 px on 2 cores), and the worker does one copy
    either way. Images in the (C, H, W) layout (classic ToTensor) give a contiguous batch.
    """
    if not images[0].permute(1, 2, 0).is_contiguous():
        return torch.stack(list(images))
    return torch.stack([image.permute(1, 2, 0) for image in images]).permute(0, 3, 1, 2)


class EpochShuffleSampler(Sampler[int]):
    """Training order: a permutation seeded by (seed, epoch), sharded across ranks, resumable mid-epoch.

    Yields ``(epoch, index)`` so that the dataset can seed each item's augmentation.
    Every rank draws the same permutation, pads it (by wrapping) to a multiple of ``world_size``
    and takes every ``world_size``-th index, as DistributedSampler does. ``set_epoch(e, skip=k)``
    starts epoch ``e`` after its first ``k`` indices, which is how a run resumes inside an epoch.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def shard(self) -> list[int]:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        total = math.ceil(self.size / self.world_size) * self.world_size
        order = torch.cat([order, order[: total - self.size]])
        return order[self.rank : total : self.world_size].tolist()

    def __iter__(self):
        return iter([(self.epoch, index) for index in self.shard()[self.skip :]])

    def __len__(self) -> int:
        return math.ceil(self.size / self.world_size) - self.skip


class ShardSampler(Sampler[int]):
    """Evaluation order: indices ``rank, rank + world, ...`` with no padding, so across ranks
    every sample is seen exactly once."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, size, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _single_thread_worker(_: int) -> None:
    # Workers decode and augment with one thread each, under Linux's SCHED_IDLE policy (else at a
    # lower nice level): they use the cores the training step leaves idle instead of preempting one
    # of its OpenMP threads, which stalls the other threads at the next barrier. On 2 cores this
    # took the end-to-end rate from 49 to 64 img/s (nice 5 vs SCHED_IDLE, `benchmark train`).
    torch.set_num_threads(1)
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):  # not Linux, or not permitted
        with contextlib.suppress(OSError):
            os.nice(5)


def make_loader(
    samples: list[Sample],
    image_size: int,
    norm: Normalization,
    train: bool,
    batch_size: int,
    num_workers: int,
    seed: int,
    pin_memory: bool = False,
    rank: int = 0,
    world_size: int = 1,
    cache: DecodedCache | None = None,
    extra: TrainAugment = TrainAugment(),
) -> DataLoader:
    """A DataLoader over ``samples`` with the train or eval transform and bad-file skipping.

    Train: :class:`EpochShuffleSampler` (call ``loader.sampler.set_epoch``); eval: :class:`ShardSampler`.
    """
    dataset = ImageDataset(
        samples, build_transform(image_size, norm, train, extra), decode_size(image_size, norm, train), cache, seed
    )
    if train:
        sampler: Sampler = EpochShuffleSampler(len(samples), seed, rank, world_size)
    else:
        sampler = ShardSampler(len(samples), rank, world_size)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        collate_fn=collate_skipping_bad,
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=_single_thread_worker if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
    )
