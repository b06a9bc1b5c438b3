"""The first stage of a photo's way: the dataset contract, decoding, transforms and loaders.

The contract (:mod:`.metadata`), image files (:mod:`.images`), transforms (:mod:`.transforms`,
:mod:`.augment`) and loaders (:mod:`.loaders`) are re-exported here, so ``from paddyclf.data import
load_splits, make_loader`` works as it always did. The dataset tools live in their own modules and
are imported from there: :mod:`.prepare` (leak-free splits of a folder tree), :mod:`.dedupe` and
:mod:`.audit` (duplicates and leaks), :mod:`.synthetic` (demo leaves, lab photos) and
:mod:`.nonleaf` (photos that are not leaves).
"""

from .images import IMAGE_SUFFIXES, collect_images, load_image, to_rgb
from .loaders import (
    Batch,
    DecodedCache,
    EpochShuffleSampler,
    ImageDataset,
    ShardSampler,
    collate_skipping_bad,
    make_loader,
    stack_images,
)
from .metadata import (
    DEFAULT_VALID_FRACTION,
    SPLIT_ALIASES,
    Sample,
    check_files_exist,
    load_label2id,
    load_splits,
    read_metadata,
    resolve_samples,
    split_samples,
    stratified_order,
    stratified_subset,
)
from .transforms import Normalization, TrainAugment, build_transform, draft_size, eval_short_side

__all__ = [
    "DEFAULT_VALID_FRACTION",
    "IMAGE_SUFFIXES",
    "SPLIT_ALIASES",
    "Batch",
    "DecodedCache",
    "EpochShuffleSampler",
    "ImageDataset",
    "Normalization",
    "Sample",
    "ShardSampler",
    "TrainAugment",
    "build_transform",
    "check_files_exist",
    "collate_skipping_bad",
    "collect_images",
    "draft_size",
    "eval_short_side",
    "load_image",
    "load_label2id",
    "load_splits",
    "make_loader",
    "read_metadata",
    "resolve_samples",
    "split_samples",
    "stack_images",
    "stratified_order",
    "stratified_subset",
    "to_rgb",
]
