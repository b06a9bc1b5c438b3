"""A corpus of awkward and broken inputs, generated at test time, fed to train and predict.

Documented behaviour (README, "Awkward input"):
used as is: PNG with alpha, 16-bit PNG, grayscale, CMYK JPEG, EXIF-rotated JPEG, 1x1 image,
paths with spaces and non-ASCII characters; fixed up: CSV BOM and CRLF, labels with stray
spaces, duplicate rows (used once); skipped and counted: truncated JPEG, zero-byte file, text
file named .jpg, decompression bomb (a header claiming 30000x30000).
"""

from __future__ import annotations

import csv
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paddyclf.cli import main
from paddyclf.data import load_image

SKIPPED = ["truncated.jpg", "empty.jpg", "text.jpg", "bomb.png"]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with no pixel data at all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def write_corpus(folder: Path, good_source: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    leaf = Image.open(good_source).convert("RGB")
    files = {}

    def add(name: str, write) -> None:
        files[name] = folder / name
        write(files[name])

    add("truncated.jpg", lambda p: p.write_bytes(good_source.read_bytes()[:400]))
    add("empty.jpg", lambda p: p.write_bytes(b""))
    add("text.jpg", lambda p: p.write_text("this is not an image\n"))
    add("bomb.png", lambda p: p.write_bytes(png_header_only(30000, 30000)))
    add("alpha.png", lambda p: leaf.convert("RGBA").save(p))
    add("deep16.png", lambda p: Image.fromarray(np.asarray(leaf.convert("L"), np.uint16) * 257).save(p))
    add("gray.jpg", lambda p: leaf.convert("L").save(p))
    add("cmyk.jpg", lambda p: leaf.convert("CMYK").save(p))
    exif = Image.Exif()
    exif[0x0112] = 8
    add("rotated.jpg", lambda p: leaf.save(p, exif=exif))
    add("tiny.png", lambda p: Image.new("RGB", (1, 1), (40, 160, 60)).save(p))
    add("with space é.jpg", lambda p: leaf.save(p))
    return files


@pytest.fixture(scope="module")
def corpus(tiny_data, tmp_path_factory) -> dict[str, Path]:
    source = sorted((tiny_data / "images" / "healthy").glob("*.jpg"))[0]
    return write_corpus(tmp_path_factory.mktemp("corpus") / "odd photos ü", source)


@pytest.mark.parametrize(
    "name", ["alpha.png", "deep16.png", "gray.jpg", "cmyk.jpg", "rotated.jpg", "tiny.png", "with space é.jpg"]
)
def test_awkward_but_valid_images_are_used(corpus, name):
    image = load_image(corpus[name])
    assert image.mode == "RGB"
    if name == "rotated.jpg":
        assert image.size == (64, 64)  # square source: orientation applied without error
    if name == "deep16.png":
        assert np.asarray(image).mean() > 20  # scaled down from 16 bit, not clipped to white or black


@pytest.mark.parametrize("name", SKIPPED)
def test_broken_images_raise_on_decode(corpus, name):
    with pytest.raises(Exception):  # noqa: B017 - each decoder failure has its own type
        load_image(corpus[name])


def test_training_on_the_corpus_uses_good_files_and_skips_broken_ones(tiny_data, corpus, tmp_path, capsys):
    rows = [["path", "label", "split"]]
    with (tiny_data / "metadata.csv").open() as fh:
        for row in csv.DictReader(fh):
            rows.append([str(tiny_data / row["path"]), f"  {row['label']} ", row["split"]])
    rows += [rows[1], rows[2]]  # duplicate rows: used once
    rows += [[str(path), "healthy", "train"] for path in corpus.values()]
    meta = tmp_path / "meta.csv"
    with meta.open("w", newline="", encoding="utf-8-sig") as fh:  # BOM
        csv.writer(fh, lineterminator="\r\n").writerows(rows)  # CRLF
    args = [
        "--metadata",
        str(meta),
        "--label2id",
        str(tiny_data / "label2id.json"),
        "--image-size",
        "64",
        "--batch-size",
        "8",
        "--epochs",
        "1",
        "--num-workers",
        "0",
        "--device",
        "cpu",
        "--output-dir",
        str(tmp_path / "out"),
    ]
    assert main(["train", *args]) == 0
    out = capsys.readouterr().out
    assert f"skipped {len(SKIPPED)} unreadable image(s) this epoch" in out
    assert f"{24 + len(corpus)} train / 8 valid" in out  # duplicates counted once


def test_predict_on_the_corpus_gives_a_status_per_file(tiny_data, corpus, tmp_path):
    from conftest import tiny_args

    assert main(["train", *tiny_args(tiny_data, tmp_path, "--epochs", "1", "--train-limit", "8")]) == 0
    preds = tmp_path / "preds.csv"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(tmp_path / "MobileNetV3_Small_BoT_Linear_best.pt"),
                str(corpus["alpha.png"].parent),
                "--output",
                str(preds),
            ]
        )
        == 0
    )
    with preds.open() as fh:
        status = {Path(r["path"]).name: r["status"] for r in csv.DictReader(fh)}
    assert set(status) == set(corpus)
    for name in corpus:
        assert status[name].startswith("error:") == (name in SKIPPED), (name, status[name])
