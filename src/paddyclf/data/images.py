"""Image files: which suffixes are photos, decoding to RGB with the EXIF orientation, finding photos in folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


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


def collect_images(paths: list[str | Path]) -> list[Path]:
    """Files as given, and image files (by suffix) found recursively in folders, in a stable order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise UserError(f"Folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
            found += files
        elif path.is_file():
            found.append(path)
        else:
            raise UserError(f"Image path {path} does not exist.")
    return found
