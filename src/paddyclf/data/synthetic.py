"""A small, deterministic, synthetic paddy-leaf dataset for the demo and the tests.

Each image is a rice blade (long, tapering, veined, slightly bent) at a random angle over a
noisy paddy-field background. The class decides the lesions:

* ``healthy``: none.
* ``brown_spot``: many small round brown spots with dark rims.
* ``blast``: a few spindle/diamond lesions along the blade, grey-white centre, brown border.
* ``leaf_blight``: straw-yellow drying from the tip inwards, with a wavy margin.

Every image comes from ``numpy.random.default_rng((seed, index))``, so the bytes are the same
on every run. Written in the real ``metadata.csv`` + ``label2id.json`` + images layout.
"""

from __future__ import annotations

import csv
import math
import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..fileio import atomic_path, atomic_write, write_json

CLASSES = ("healthy", "brown_spot", "blast", "leaf_blight")


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    base = np.array([rng.uniform(70, 120), rng.uniform(80, 130), rng.uniform(40, 80)])
    # mud and water: mostly brightness variation, a little colour
    coarse = rng.normal(0, 18, (size // 16, size // 16, 1)) + rng.normal(0, 5, (size // 16, size // 16, 3))
    coarse = np.asarray(Image.fromarray(np.uint8(np.clip(coarse + 128, 0, 255))).resize((size, size)), float) - 128
    fine = rng.normal(0, 8, (size, size, 1))
    return Image.fromarray(np.uint8(np.clip(base + coarse + fine, 0, 255)))


def _blade_geometry(rng: np.random.Generator, size: int):
    """Axis length, half-width profile and bend of a blade drawn along +x from the left edge."""
    length = size * rng.uniform(0.85, 1.1)
    half_width = size * rng.uniform(0.07, 0.12)
    bend = rng.uniform(-0.08, 0.08) * size
    y0 = size / 2 + rng.uniform(-0.1, 0.1) * size

    def centre(t: float) -> float:
        return y0 + bend * t * t

    def half(t: float) -> float:
        return half_width * (1.0 if t < 0.55 else max(0.0, (1 - t) / 0.45))

    return length, centre, half


def _point(length, centre, t: float, v: float) -> tuple[float, float]:
    """Image coordinates of axis position t in [0, 1] and signed offset v (pixels) across the blade."""
    return (-4 + t * length, centre(t) + v)


def _draw_leaf(rng: np.random.Generator, label: str, size: int) -> tuple[Image.Image, Image.Image]:
    length, centre, half = _blade_geometry(rng, size)
    ts = np.linspace(0, 1, 60)
    outline = [_point(length, centre, t, -half(t)) for t in ts] + [_point(length, centre, t, half(t)) for t in ts[::-1]]
    green = np.array([rng.uniform(40, 80), rng.uniform(120, 170), rng.uniform(30, 70)])
    leaf = Image.new("RGB", (size, size), tuple(int(c) for c in green))
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).polygon(outline, fill=255)
    draw = ImageDraw.Draw(leaf)
    for v in np.linspace(-0.7, 0.7, 5):  # parallel veins
        vein = [_point(length, centre, t, v * half(t)) for t in ts]
        draw.line(vein, fill=tuple(int(c) for c in np.clip(green * 1.15, 0, 255)), width=1)

    def random_spot(t_range=(0.05, 0.9)):
        t = rng.uniform(*t_range)
        return t, _point(length, centre, t, rng.uniform(-0.7, 0.7) * half(t))

    if label == "brown_spot":
        for _ in range(rng.integers(8, 18)):
            _, (x, y) = random_spot()
            r = rng.uniform(2.5, 6)
            draw.ellipse([x - r - 1.5, y - r - 1.5, x + r + 1.5, y + r + 1.5], fill=(70, 40, 20))
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(150, 90, 40))
    elif label == "blast":
        for _ in range(rng.integers(2, 5)):
            t, (x, y) = random_spot((0.1, 0.75))
            along, across = rng.uniform(14, 26), rng.uniform(4, 7)
            ang = math.atan((centre(t + 0.01) - centre(t)) / (0.01 * length))  # along the bent axis
            dx, dy = math.cos(ang), math.sin(ang)
            diamond = [
                (x - along * dx, y - along * dy),
                (x - across * dy, y + across * dx),
                (x + along * dx, y + along * dy),
                (x + across * dy, y - across * dx),
            ]
            draw.polygon(diamond, fill=(120, 70, 40))
            inner = [(x + 0.6 * (px - x), y + 0.6 * (py - y)) for px, py in diamond]
            draw.polygon(inner, fill=(205, 205, 190))
    elif label == "leaf_blight":
        start = rng.uniform(0.35, 0.65)
        phase, amp = rng.uniform(0, 2 * math.pi), rng.uniform(0.02, 0.06)
        vs = np.linspace(-1, 1, 25)
        margin = [_point(length, centre, start + amp * math.sin(6 * v + phase), v * half(start)) for v in vs]
        tip = [_point(length, centre, t, half(t)) for t in np.linspace(start, 1, 20)]
        tip += [_point(length, centre, t, -half(t)) for t in np.linspace(1, start, 20)]
        straw = (int(rng.uniform(200, 235)), int(rng.uniform(185, 215)), int(rng.uniform(90, 130)))
        draw.polygon(margin + tip, fill=straw)
    for _ in range(rng.integers(0, 4)):  # dirt specks on every class, so "any dark dot" is no shortcut
        _, (x, y) = random_spot()
        draw.point((x, y), fill=(60, 50, 30))
    return leaf, mask


def render_image(label: str, seed: int, index: int, size: int = 256) -> Image.Image:
    """One synthetic leaf photo of class ``label`` (deterministic in seed and index)."""
    rng = np.random.default_rng((seed, index))
    image = _background(rng, size)
    leaf, mask = _draw_leaf(rng, label, size)
    angle = rng.uniform(0, 180)
    leaf = leaf.rotate(angle, resample=Image.BILINEAR, center=(size / 2, size / 2))
    mask = mask.rotate(angle, resample=Image.BILINEAR, center=(size / 2, size / 2))
    image.paste(leaf, (0, 0), mask.filter(ImageFilter.GaussianBlur(0.8)))
    noise = rng.normal(0, 4, (size, size, 3))
    brightness = rng.uniform(0.85, 1.15)
    pixels = np.clip(np.asarray(image, float) * brightness + noise, 0, 255)
    return Image.fromarray(np.uint8(pixels)).filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.7)))


def render_lab_photo(seed: int, index: int, size: int = 256) -> Image.Image:
    """One thin leaf with brown spots on white paper, the way lab photos of rice leaves look.

    Distinct ``index`` values give distinct leaves (spots, width, bend, a slight tilt) in nearly
    the same pose: most of every image is the same white paper, which is what makes such photos
    look alike to a perceptual hash (the hard negatives of :mod:`paddyclf.data.audit`).
    """
    rng = np.random.default_rng((seed, 7_000_003, index))
    paper = np.array([rng.uniform(225, 250)] * 3) + rng.normal(0, 3, 3)
    image = Image.fromarray(np.uint8(np.clip(paper + rng.normal(0, 2, (size, size, 3)), 0, 255)))
    length, centre, half = _blade_geometry(rng, size)
    width = rng.uniform(0.25, 0.45)  # thin: a quarter to a half of a field blade
    ts = np.linspace(0, 1, 60)
    outline = [_point(length, centre, t, -width * half(t)) for t in ts]
    outline += [_point(length, centre, t, width * half(t)) for t in ts[::-1]]
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).polygon(outline, fill=255)
    green = tuple(int(c) for c in (rng.uniform(60, 110), rng.uniform(130, 180), rng.uniform(40, 80)))
    leaf = Image.new("RGB", (size, size), green)
    draw = ImageDraw.Draw(leaf)
    for _ in range(rng.integers(3, 12)):
        t = rng.uniform(0.05, 0.9)
        x, y = _point(length, centre, t, rng.uniform(-0.6, 0.6) * width * half(t))
        r = rng.uniform(1.5, 4)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(int(rng.uniform(90, 150)), 60, 30))
    angle = 30 + rng.uniform(-8, 8)
    leaf = leaf.rotate(angle, resample=Image.BILINEAR, center=(size / 2, size / 2))
    mask = mask.rotate(angle, resample=Image.BILINEAR, center=(size / 2, size / 2))
    image.paste(leaf, (0, 0), mask.filter(ImageFilter.GaussianBlur(0.6)))
    return image


def make_dataset(
    out_dir: str | Path,
    per_class: int = 80,
    size: int = 256,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> Path:
    """Write ``images/<class>/<i>.jpg``, ``metadata.csv`` (path,label,split) and ``label2id.json``.

    Returns the metadata path. ``fractions`` are train/valid/test; the split is by index within
    each class, so it is stratified and deterministic.
    """
    out_dir = Path(out_dir)
    rows = []
    n_train = round(per_class * fractions[0])
    n_valid = round(per_class * fractions[1])
    for class_index, label in enumerate(CLASSES):
        (out_dir / "images" / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rel = f"images/{label}/{label}_{i:04d}.jpg"
            image = render_image(label, seed, class_index * 100_000 + i, size)
            atomic_write(out_dir / rel, lambda tmp, im=image: im.save(tmp, format="JPEG", quality=90))
            split = "train" if i < n_train else "valid" if i < n_train + n_valid else "test"
            rows.append((rel, label, split))
    write_json(out_dir / "label2id.json", {label: i for i, label in enumerate(CLASSES)})
    metadata = out_dir / "metadata.csv"
    with atomic_path(metadata) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    return metadata


def dataset_exists(out_dir: str | Path) -> bool:
    out_dir = Path(out_dir)
    if not (out_dir / "metadata.csv").is_file() or not (out_dir / "label2id.json").is_file():
        return False
    with (out_dir / "metadata.csv").open() as fh:
        return all((out_dir / row["path"]).is_file() for row in csv.DictReader(fh))


__all__ = ["CLASSES", "dataset_exists", "make_dataset", "make_photo_folder", "render_image", "render_lab_photo"]


def make_photo_folder(out_dir: str | Path, count: int, seed: int = 0, quality: int = 90) -> Path:
    """``count`` synthetic 480x640 (portrait) JPEGs in ``out_dir/<class>/``: the size and quality of
    Paddy Doctor field photos, for decoding benchmarks. Rendered on all cores (about 0.1 s each)."""
    out_dir = Path(out_dir)
    for label in CLASSES[: min(count, len(CLASSES))]:
        (out_dir / label).mkdir(parents=True, exist_ok=True)
    write = partial(_write_photo, out_dir, seed, quality)
    if count < 16:
        list(map(write, range(count)))
    else:
        with ProcessPoolExecutor(min(os.cpu_count() or 1, 32)) as pool:
            list(pool.map(write, range(count), chunksize=8))
    return out_dir


def _write_photo(out_dir: Path, seed: int, quality: int, index: int) -> None:
    label = CLASSES[index % len(CLASSES)]
    photo = render_image(label, seed, 1_000_000 + index, size=640).crop((80, 0, 560, 640))
    atomic_write(out_dir / label / f"photo_{index:05d}.jpg", lambda tmp: photo.save(tmp, "JPEG", quality=quality))
