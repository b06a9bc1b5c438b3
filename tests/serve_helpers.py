"""Photos and uploads the web-app tests send (generated; the real photos never enter the repo)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import ExifTags, Image


def jpeg_bytes(path: Path) -> bytes:
    return Path(path).read_bytes()


def upload(name: str, data: bytes, mime: str = "image/jpeg") -> tuple[str, tuple[str, bytes, str]]:
    return ("files", (name, data, mime))


def phone_exif(orientation: int) -> bytes:
    """EXIF as a phone writes it: an orientation, a camera make (TestCam) and a GPS position (14.5 S, 121.26 E)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "TestCam"
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "S",
        ExifTags.GPS.GPSLatitude: (14.0, 30.0, 0.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (121.0, 15.0, 36.0),
    }
    return exif.tobytes()


def photo_with_exif(size: tuple[int, int] = (60, 40), orientation: int = 6) -> bytes:
    """A plain JPEG with :func:`phone_exif` (by default saying 'rotate 90 degrees')."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (40, 130, 40)).save(buffer, "JPEG", exif=phone_exif(orientation))
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels (a decompression bomb's header), with no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def bad_uploads(photo: bytes) -> dict[str, tuple[str, bytes, int]]:
    """name -> (filename, bytes, expected status)."""
    return {
        "empty": ("empty.jpg", b"", 422),
        "text": ("notes.jpg", b"certainly not a photo\n" * 50, 415),
        "svg": (
            "leaf.svg",
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>1</script></svg>',
            415,
        ),
        "truncated": ("cut.jpg", photo[: len(photo) // 2], 422),
        "bomb": ("bomb.png", png_header_only(200_000, 200_000), 413),
    }
