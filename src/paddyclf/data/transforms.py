"""Normalisation and the train / eval transforms (torchvision v2): PIL RGB image -> (3, S, S) float tensor."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from .augment import LinearColorJitter


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
    """What a recipe adds to the train transform (see :mod:`paddyclf.training.recipe`); the default adds nothing."""

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
    :mod:`paddyclf.data.augment`). Eval: resize to S / crop_pct, centre crop.
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
        ops = [v2.Resize(eval_short_side(image_size, norm), antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose(ops + to_float)


def eval_short_side(image_size: int, norm: Normalization) -> int:
    """The short side the eval transform resizes to before its ``image_size`` centre crop."""
    return int(image_size / norm.crop_pct)


def draft_size(image_size: int, train: bool) -> int | None:
    """Smallest short side a training JPEG may be draft-decoded to; ``None`` (a full decode) for inference.

    Draft decoding (libjpeg's DCT-domain 1/2, 1/4, 1/8 downscale) gives slightly different pixels
    than a full decode and an antialiased resize: with it in ``predict`` only, a 1397x1920 JPEG read
    blast 0.966 `ok` there and 0.962 `unsure` in ``serve``. Inference decodes in full, so that
    predict, evaluate, calibrate, serve and the browser give one answer per photo. Training keeps
    the speed-up; its validation, an inference, checks it.
    """
    return image_size if train else None


@functools.cache
def pillow_vertical_first() -> bool:
    """Whether this Pillow resamples vertically first when the height shrinks by more than twice as
    many pixels as the width (Pillow 13, python-pillow/Pillow#9549); older ones always go horizontally
    first. The order changes the 8-bit rounding between the passes, so the browser's port of the
    resize (``serve/static/js/resize.js``) is told which one the server's Pillow follows. Probed, not
    read from the version: a 60x200 image to 50x100, against the two orders done one axis at a time.
    """
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (200, 60, 3), dtype=np.uint8), "RGB")
    both = np.asarray(image.resize((50, 100), Image.Resampling.BILINEAR))
    vertical_first = image.resize((60, 100), Image.Resampling.BILINEAR).resize((50, 100), Image.Resampling.BILINEAR)
    return bool(np.array_equal(both, np.asarray(vertical_first)))


# --------------------------------------------------------------------------- datasets and loaders
