"""An uploaded file -> a photo the model and the store can use, or a :class:`~.errors.RequestError` naming the file.

What arrives from a phone is untrusted bytes. The checks, in order: empty, SVG (a script-capable
document, never decoded), not an image Pillow (with ``pillow-heif`` for iPhone HEIC) recognises,
more pixels than the decompression-bomb limit (checked from the header, before decoding), and a
truncated or corrupt file (the decode itself). A good photo gets its EXIF orientation applied, and
is stored as a JPEG without any EXIF (no camera serials, no location in the file); GPS, when the
photo has it, is kept apart as numbers for disease maps.

An upright JPEG (most phone photos) is stored losslessly: the metadata segments are cut out and
the compressed image data is kept byte for byte (:func:`strip_jpeg_metadata`), so the training
photos of tomorrow are the pixels the camera took, and the server spends no time re-encoding.
Anything else (a PNG, a HEIC, a JPEG whose EXIF says "rotate") is re-encoded at quality 92.
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


def _jpeg(img: Image.Image, quality: int, icc_profile: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    # No exif= or xmp= argument, and an empty comment (Pillow would copy the upload's): no metadata. The ICC
    # profile (how the colours display, e.g. an iPhone's Display P3) is not metadata about anyone.
    img.save(buffer, format="JPEG", quality=quality, comment=b"", icc_profile=icc_profile)
    return buffer.getvalue()


# JPEG segments (ITU-T T.81 B.1.1.3) kept when stripping metadata: APP0 JFIF, APP2 ICC_PROFILE and
# APP14 Adobe change how the pixels decode; every other APPn (EXIF, XMP, IPTC, MPF, maker notes) and
# COM do not. Non-APP segments (tables, frame and scan headers) are the image itself.
SOS, EOI, COM = 0xDA, 0xD9, 0xFE
KEPT_APP_SEGMENTS = {0xE0: b"JFIF\0", 0xE2: b"ICC_PROFILE\0", 0xEE: b"Adobe"}


def _keeps(marker: int, payload: bytes) -> bool:
    if marker == COM:
        return False
    if 0xE0 <= marker <= 0xEF:
        signature = KEPT_APP_SEGMENTS.get(marker)
        return signature is not None and payload.startswith(signature)
    return True


def _scan_end(data: bytes, start: int) -> int | None:
    """Index of the first marker after the entropy-coded data from ``start`` (0xFF00 is a stuffed byte, RSTn part
    of the scan), or None when the data ends first."""
    i = start
    while (i := data.find(b"\xff", i)) != -1 and i + 1 < len(data):
        following = data[i + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:  # stuffing, restart, fill
            i += 1 if following == 0xFF else 2
            continue
        return i
    return None


def strip_jpeg_metadata(data: bytes) -> bytes | None:
    """``data`` (a JPEG) without its metadata segments and without what follows its end-of-image
    marker (phones append previews, depth maps and videos there), the compressed image untouched;
    None when the stream is not one this walker can follow (the caller then re-encodes)."""
    if not data.startswith(b"\xff\xd8"):
        return None
    kept, i = [b"\xff\xd8"], 2
    while i + 2 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker == EOI:
            return b"".join([*kept, b"\xff\xd9"])
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # RSTn, SOI or TEM outside a scan: not a stream we know
            return None
        end = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if end > len(data) or end < i + 4:
            return None
        if _keeps(marker, data[i + 4 : end]):
            kept.append(data[i:end])
        i = end
        if marker == SOS:  # the entropy-coded data of this scan runs to the next marker
            scan_end = _scan_end(data, i)
            if scan_end is None:
                return None
            kept.append(data[i:scan_end])
            i = scan_end
    return None


def stored_jpeg(img: Image.Image, data: bytes, rgb: Image.Image) -> bytes:
    """What is stored for an upload (decoded as ``img``, upright as ``rgb``): the upload itself with its metadata
    cut out when it is an upright JPEG (Pillow says MPO for a phone's JPEG with a preview after it), else ``rgb``
    re-encoded."""
    upright = img.getexif().get(ExifTags.Base.Orientation, 1) == 1
    if img.format in ("JPEG", "MPO") and img.mode in ("RGB", "L") and upright:
        stripped = strip_jpeg_metadata(data)
        if stripped is not None:
            with Image.open(io.BytesIO(stripped)) as check:  # the header parses back to the same picture
                if check.size == img.size and check.mode == img.mode:
                    return stripped
    return _jpeg(rgb, STORED_JPEG_QUALITY, img.info.get("icc_profile"))


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
        jpeg = stored_jpeg(img, data, rgb)
    return Photo(rgb, jpeg, hashlib.sha256(jpeg).hexdigest(), thumbnail_jpeg(rgb), gps)


def thumbnail_jpeg(rgb: Image.Image) -> bytes:
    """JPEG of ``rgb`` with its longest side at most THUMBNAIL_SIDE."""
    # An integer box reduction first (anti-aliased, and 10x faster than resampling a phone photo
    # straight down to 320 px), then a bicubic resample over what is left (under 2x).
    thumb = rgb.reduce(max(1, max(rgb.size) // THUMBNAIL_SIDE))
    thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    return _jpeg(thumb, 85)
