"""Photos that are not rice leaves, for measuring the out-of-distribution verdict (``paddyclf nonleaf``).

Seven kinds, written as ``OUT/<kind>/<kind>_<i>.png``:

- ``photo``: scikit-learn's two shipped sample photos (a temple, a flower), whole and as random crops;
- ``blurred``: random crops of those photos under a strong Gaussian blur;
- ``noise``: Gaussian, uniform and salt-and-pepper noise, colour or grey;
- ``flat``: one flat colour (greens and browns included: leaf colours without a leaf);
- ``gradient``: linear and radial colour gradients;
- ``text``: random words in random colours on a flat background;
- ``checkerboard``: checkerboards and stripes of random period and colours.

Everything is seeded: the same ``--seed`` writes the same files.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ..fileio import atomic_path

DEFAULT_SIZE = 256


def _sample_photos() -> list[Image.Image]:
    from sklearn.datasets import load_sample_images

    return [Image.fromarray(a) for a in load_sample_images().images]


def _random_crop(photo: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    side = int(rng.integers(min(photo.size) // 4, min(photo.size)))
    x, y = int(rng.integers(0, photo.width - side + 1)), int(rng.integers(0, photo.height - side + 1))
    return photo.crop((x, y, x + side, y + side)).resize((size, size), Image.BILINEAR)


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def photo(rng: np.random.Generator, size: int, index: int, photos: list[Image.Image]) -> Image.Image:
    if index < len(photos):
        return photos[index].resize((size, size), Image.BILINEAR)  # the whole photo, squashed like a phone crop
    return _random_crop(photos[index % len(photos)], rng, size)


def blurred(rng: np.random.Generator, size: int, index: int, photos: list[Image.Image]) -> Image.Image:
    crop = _random_crop(photos[index % len(photos)], rng, size)
    return crop.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(4, 12))))


def noise(rng: np.random.Generator, size: int, index: int, photos: list[Image.Image]) -> Image.Image:
    channels = 3 if index % 2 == 0 else 1
    kind = index % 3
    if kind == 0:
        pixels = rng.normal(128, rng.uniform(20, 80), (size, size, channels))
    elif kind == 1:
        pixels = rng.uniform(0, 255, (size, size, channels))
    else:
        pixels = np.where(rng.random((size, size, channels)) < 0.5, 0.0, 255.0)
    pixels = np.repeat(pixels, 3 // channels, axis=2)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def flat(rng: np.random.Generator, size: int, index: int, photos: list[Image.Image]) -> Image.Image:
    leafy = [(60, 140, 50), (110, 160, 60), (150, 120, 60), (190, 170, 90)]  # greens and straw browns
    colour = leafy[index % len(leafy)] if index % 2 == 0 else _colour(rng)
    return Image.new("RGB", (size, size), colour)


def gradient(rng: np.random.Generator, size: int, index: int, photos: list[Image.Image]) -> Image.Image:
    start, end = np.array(_colour(rng), float), np.array(_colour(rng), float)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    if index % 2 == 0:
        angle = rng.uniform(0, np.pi)
        t = (np.cos(angle) * xx + np.sin(angle) * yy) / (abs(np.cos(angle)) + abs(np.sin(angle)))
        t = t - t.min()
    else:
        cx, cy = rng.uniform(0.2, 0.8, 2)
        t = np.hypot(xx - cx, yy - cy) / np.sqrt(2)
    t = np.clip(t / max(t.max(), 1e-9), 0, 1)[..., None]
    return Image.fromarray((start * (1 - t) + end * t).astype(np.uint8))


def text(rng: np.random.Generator, size: int, index: int, photos: list[Image.Image]) -> Image.Image:
    image = Image.new("RGB", (size, size), _colour(rng))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=int(rng.integers(size // 12, size // 5)))
    y = int(rng.integers(0, size // 6))
    while y < size:
        word = "".join(rng.choice(list(string.ascii_letters + string.digits), int(rng.integers(3, 10))))
        draw.text((int(rng.integers(0, size // 4)), y), word, fill=_colour(rng), font=font)
        y += int(font.size * rng.uniform(1.1, 1.8))
    return image


def checkerboard(rng: np.random.Generator, size: int, index: int, photos: list[Image.Image]) -> Image.Image:
    period = int(rng.integers(4, size // 4))
    yy, xx = np.mgrid[0:size, 0:size] // period
    mask = ((xx + yy) % 2 == 0) if index % 2 == 0 else (xx % 2 == 0)  # squares, or stripes
    a, b = np.array(_colour(rng), np.uint8), np.array(_colour(rng), np.uint8)
    return Image.fromarray(np.where(mask[..., None], a, b))


KINDS: dict[str, Callable[..., Image.Image]] = {
    "photo": photo,
    "blurred": blurred,
    "noise": noise,
    "flat": flat,
    "gradient": gradient,
    "text": text,
    "checkerboard": checkerboard,
}


def make_nonleaf_images(out: str | Path, per_kind: int = 20, seed: int = 0, size: int = DEFAULT_SIZE) -> list[Path]:
    """Write ``per_kind`` images of every kind under ``out``; return their paths."""
    out = Path(out)
    photos = _sample_photos()
    written = []
    for k, (kind, draw) in enumerate(KINDS.items()):
        rng = np.random.default_rng([seed, k])
        for index in range(per_kind):
            path = out / kind / f"{kind}_{index:03d}.png"
            with atomic_path(path) as tmp:
                draw(rng, size, index, photos).convert("RGB").save(tmp, format="PNG")
            written.append(path)
    return written
