"""How an upload becomes the stored photo: upright JPEGs keep their compressed data, their metadata goes."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import torch
from PIL import Image
from serve_helpers import phone_exif

from paddyclf.data import Normalization, Sample, build_transform, make_loader
from paddyclf.serve.photos import read_photo, strip_jpeg_metadata

MAX_PIXELS = 50_000_000
METADATA = (b"Exif", b"TestCam", b"xmpmeta", b"shot on a farm", b"MPF")
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description exif:GPSLatitude="14,30S"/></x:xmpmeta>'


def leaf_picture(size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A picture with texture (so JPEG coding has work to do), deterministic."""
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    pixels = np.stack([(x * 3 + y) % 256, (120 + 60 * np.sin(x / 5)).astype(int), (y * 4) % 256], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def phone_jpeg(orientation: int = 1, **save_options) -> bytes:
    """A JPEG as phones write them: EXIF with GPS and a camera, XMP, a comment, an ICC profile, and
    a second picture (an MPF preview) after the end of the first."""
    buffer = io.BytesIO()
    first, preview = leaf_picture(), leaf_picture((32, 24))
    first.save(
        buffer, "MPO", save_all=True, append_images=[preview], exif=phone_exif(orientation), xmp=XMP,
        comment=b"shot on a farm", icc_profile=b"\0" * 128, **save_options,
    )  # fmt: skip
    return buffer.getvalue()


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img)


@pytest.mark.parametrize(
    "save_options",
    [{}, {"progressive": True}, {"restart_marker_blocks": 3}, {"progressive": True, "restart_marker_rows": 1}],
    ids=["baseline", "progressive", "restart-markers", "progressive-restarts"],
)
def test_an_upright_jpeg_is_stored_with_its_compressed_data_untouched_and_no_metadata(save_options):
    upload = phone_jpeg(quality=88, **save_options)
    assert b"TestCam" in upload and b"xmpmeta" in upload and b"MPF" in upload  # what the phone wrote

    photo = read_photo(upload, "phone.jpg", MAX_PIXELS)

    stored = photo.jpeg
    assert np.array_equal(pixels(stored), pixels(upload))  # not re-encoded: the very pixels that were sent
    assert not any(metadata in stored for metadata in METADATA)
    assert stored.endswith(b"\xff\xd9") and stored.count(b"\xff\xd8") == 1  # the appended preview is gone
    with Image.open(io.BytesIO(stored)) as img:
        assert img.info.get("icc_profile") == b"\0" * 128  # colour management stays
        assert not img.getexif()
    assert photo.gps[:2] == (pytest.approx(-14.5), pytest.approx(121.26))  # kept as numbers, not in the file


def test_a_rotated_or_non_jpeg_upload_is_re_encoded_upright():
    rotated = read_photo(phone_jpeg(orientation=6), "phone.jpg", MAX_PIXELS)
    assert not any(metadata in rotated.jpeg for metadata in METADATA)
    with Image.open(io.BytesIO(rotated.jpeg)) as img:
        assert img.format == "JPEG" and img.size == (64, 96) and not img.getexif()
        assert img.info.get("icc_profile") == b"\0" * 128
    buffer = io.BytesIO()
    leaf_picture().save(buffer, "PNG")
    png = read_photo(buffer.getvalue(), "leaf.png", MAX_PIXELS)
    assert png.jpeg.startswith(b"\xff\xd8") and pixels(png.jpeg).shape == (64, 96, 3)


def test_the_stored_name_is_the_hash_of_the_stored_bytes_and_the_thumbnail_is_small():
    photo = read_photo(phone_jpeg(), "phone.jpg", MAX_PIXELS)
    assert photo.sha256 == hashlib.sha256(photo.jpeg).hexdigest()
    big = io.BytesIO()
    leaf_picture((1500, 1000)).save(big, "JPEG")
    with Image.open(io.BytesIO(read_photo(big.getvalue(), "big.jpg", MAX_PIXELS).thumbnail)) as thumb:
        assert thumb.size == (320, 213)


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda jpeg: jpeg[:2] + b"\x00\x00" + jpeg[4:], id="no-marker-after-SOI"),
        pytest.param(lambda jpeg: jpeg[:4] + b"\xff\xff" + jpeg[6:], id="segment-longer-than-the-file"),
        pytest.param(lambda jpeg: jpeg[: len(jpeg) // 2], id="cut-in-the-scan"),
        pytest.param(lambda jpeg: b"\x89PNG" + jpeg, id="not-a-jpeg"),
    ],
)
def test_a_stream_the_walker_cannot_follow_is_not_stripped(broken):
    assert strip_jpeg_metadata(broken(phone_jpeg())) is None


def test_a_large_rotated_jpeg_reaches_the_model_as_the_same_tensor_from_predict_evaluate_and_serve(tmp_path):
    """One preprocessing for inference: a full decode (no JPEG draft mode), EXIF orientation, RGB,
    the eval resize and crop; whichever front end reads the photo. Training alone may draft-decode."""
    path = tmp_path / "field.jpg"
    leaf_picture((1920, 1397)).save(path, quality=90, exif=phone_exif(6))
    norm = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    loader = make_loader([Sample(path, -1)], 224, norm, train=False, batch_size=1, num_workers=0, seed=0)
    from_files = next(iter(loader)).images[0]
    served = read_photo(path.read_bytes(), "field.jpg", MAX_PIXELS).image
    from_upload = build_transform(224, norm, train=False)(served)
    assert served.size == (1397, 1920)  # upright
    assert torch.equal(from_files, from_upload)
    drafted = make_loader([Sample(path, -1)], 224, norm, train=True, batch_size=1, num_workers=0, seed=0)
    assert drafted.dataset.decode_min_size == 224 and loader.dataset.decode_min_size is None
