"""Datasets and DataLoaders: bad-file skipping, the decoded-image cache, resumable shuffling, sharding."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from ..fileio import atomic_path
from .images import load_image
from .metadata import Sample
from .transforms import Normalization, TrainAugment, build_transform, draft_size


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


DECODE_VERSION = "full-decode-1"  # in every cache key: entries made by an older decode are not reused


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
        raw = f"{path.resolve()}|{self.short_side}|{stat.st_mtime_ns}|{stat.st_size}|{DECODE_VERSION}"
        return self.root / f"{hashlib.sha1(raw.encode()).hexdigest()}.npy"

    def decode(self, path: Path) -> Image.Image:
        """Fresh full decode (as inference decodes), then the same antialiased resize the eval transform uses."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return v2.functional.resize(load_image(path), self.short_side, antialias=True)

    def holds(self, samples: list[Sample]) -> bool:
        """Whether every sample's image is in the cache already (nothing left to decode)."""
        try:
            return all(self.entry(Path(s.path)).is_file() for s in samples)
        except OSError:  # a photo gone since: the loader reports it
            return False

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
        samples, build_transform(image_size, norm, train, extra), draft_size(image_size, train), cache, seed
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
