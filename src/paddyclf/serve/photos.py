"""An uploaded file -> a photo the model and the store can use, or a :class:`~.errors.RequestError` naming the file.

What arrives from a phone is untrusted bytes. The checks, in order: empty, SVG (a script-capable
document, never decoded), not an image Pillow (with ``pillow-heif`` for iPhone HEIC) recognises,
more pixels than the decompression-bomb limit (checked from the header, before decoding), and a
truncated or corrupt file (the decode itself). A good photo gets its EXIF orientation applied, and
is stored re-encoded as JPEG without any EXIF (no camera serials, no location in the file); GPS,
when the photo has it, is kept apart as numbers for disease maps.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from functools import cache

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from ..data import to_rgb
from .errors import RequestError

STORED_JPEG_QUALITY = 92
THUMBNAIL_SIDE = 320


@dataclass
class Photo:
    image: Image.Image  # RGB, orientation applied
    jpeg: bytes  # what is stored: the image as JPEG, no EXIF
    sha256: str  # of ``jpeg``: the stored file's name
    thumbnail: bytes  # JPEG, longest side THUMBNAIL_SIDE
    gps: tuple[float | None, float | None, float | None]  # latitude, longitude (degrees, N/E > 0), altitude (m)


@cache
def register_heif() -> bool:
    """Teach Pillow HEIC/HEIF (iPhone photos) once per process; False when pillow-heif is missing."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def looks_like_svg(data: bytes) -> bool:
    head = data[:2048].lstrip().lower()
    return head.startswith((b"<svg", b"<?xml", b"<!doctype svg")) or b"<svg" in head


def _degrees(value, ref) -> float | None:
    try:
        d, m, s = (float(v) for v in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    sign = -1.0 if str(ref).strip().upper() in ("S", "W") else 1.0
    return sign * (d + m / 60 + s / 3600)


def read_gps(img: Image.Image) -> tuple[float | None, float | None, float | None]:
    """Latitude and longitude in signed degrees and altitude in metres from the EXIF GPS block, or Nones."""
    try:
        gps = img.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    except Exception:  # noqa: BLE001 - a malformed EXIF block only loses the location
        return None, None, None
    tags = ExifTags.GPS
    lat = _degrees(gps.get(tags.GPSLatitude), gps.get(tags.GPSLatitudeRef, "N")) if tags.GPSLatitude in gps else None
    lon = _degrees(gps.get(tags.GPSLongitude), gps.get(tags.GPSLongitudeRef, "E")) if tags.GPSLongitude in gps else None
    alt = None
    if tags.GPSAltitude in gps:
        try:
            alt = float(gps[tags.GPSAltitude]) * (-1.0 if gps.get(tags.GPSAltitudeRef) in (1, b"\x01") else 1.0)
        except (TypeError, ValueError, ZeroDivisionError):
            alt = None
    return lat, lon, alt


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality)  # no exif= argument: nothing of the original EXIF is written
    return buffer.getvalue()


def read_photo(data: bytes, filename: str, max_pixels: int) -> Photo:
    """Decode an upload (see the module docstring); raises :class:`~.errors.RequestError` (4xx) naming the file."""
    if not data:
        raise RequestError(422, "the file is empty (0 bytes).", filename)
    if looks_like_svg(data):
        raise RequestError(415, "SVG drawings are not accepted; send a photo (JPEG, PNG, HEIC, WebP).", filename)
    register_heif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise RequestError(415, "this is not an image file (send a JPEG, PNG, HEIC or WebP photo).", filename) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise RequestError(413, f"the image has too many pixels (limit {max_pixels / 1e6:g} MP).", filename) from None
    except Exception as exc:  # noqa: BLE001 - any header parser failure is the file's fault
        raise RequestError(422, f"the image could not be read ({type(exc).__name__}).", filename) from None
    with img:
        width, height = img.size
        if width * height > max_pixels:
            message = f"the image has {width}x{height} pixels; the limit is {max_pixels / 1e6:g} megapixels."
            raise RequestError(413, message, filename)
        gps = read_gps(img)
        try:
            img.load()
            rgb = to_rgb(ImageOps.exif_transpose(img))
        except Exception as exc:  # noqa: BLE001 - truncated data, bad Huffman tables, ...
            raise RequestError(422, f"the image is truncated or corrupt ({exc}).", filename) from None
    jpeg = _jpeg(rgb, STORED_JPEG_QUALITY)
    thumb = rgb.copy()
    thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    return Photo(rgb, jpeg, hashlib.sha256(jpeg).hexdigest(), _jpeg(thumb, 85), gps)
