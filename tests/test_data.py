"""Data contract, image decoding and the prepare command."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paddyclf.cli import main
from paddyclf.data import Sample, load_image, load_splits, stratified_subset


def save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("mode", ["RGB", "L", "LA", "RGBA", "P", "CMYK", "I;16", "1"])
def test_every_image_mode_becomes_rgb(tmp_path, mode):
    img = Image.new("RGB", (40, 30), (200, 120, 40)).convert(mode) if mode != "I;16" else None
    if mode == "I;16":
        img = Image.fromarray(np.full((30, 40), 60000, dtype=np.uint16))
    suffix = ".jpg" if mode == "CMYK" else ".png"
    out = load_image(save(img, tmp_path / f"x{suffix}"))
    assert out.mode == "RGB" and out.size == (40, 30)
    if mode == "I;16":
        assert np.asarray(out).min() > 200  # scaled from 16 bit, not clipped or wrapped


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    path = save(Image.new("RGB", (40, 20)), tmp_path / "r.jpg", exif=exif)
    assert load_image(path).size == (20, 40)


def test_stratified_subset_is_deterministic_and_proportional():
    samples = [Sample(Path(f"{i}.jpg"), label) for i, label in enumerate([0] * 60 + [1] * 30 + [2] * 10)]
    subset = stratified_subset(samples, 20, seed=3)
    assert subset == stratified_subset(samples, 20, seed=3)
    assert Counter(s.label for s in subset) == {0: 12, 1: 6, 2: 2}
    assert subset != stratified_subset(samples, 20, seed=4)
    assert {s.label for s in stratified_subset(samples, 3, seed=0)} == {0, 1, 2}


def write_csv(path: Path, header: list[str], rows: list[list[str]], **open_kw) -> Path:
    with path.open("w", newline="", **open_kw) as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_csv_without_split_column_is_split_stratified(tiny_data, tmp_path):
    rows = [[str(tiny_data / f"images/{c}/{c}_{i:04d}.jpg"), c] for c in ("healthy", "blast") for i in range(10)]
    meta = write_csv(tmp_path / "m.csv", ["path", "label"], rows, encoding="utf-8-sig")  # BOM + CRLF
    splits = load_splits(meta, {"healthy": 0, "blast": 1}, seed=1)
    assert len(splits["valid"]) == 4 and Counter(s.label for s in splits["valid"]) == {0: 2, 1: 2}
    assert len(splits["train"]) == 16


def test_split_aliases_and_stray_spaces(tiny_data, tmp_path):
    rows = [
        [f" images/healthy/healthy_{i:04d}.jpg ", " healthy ", split]
        for i, split in enumerate(["train", "val", "validation", "TEST", "train"])
    ]
    meta = write_csv(
        tiny_data.parent / "alias.csv",
        ["path", "label", "split"],
        [[str(tiny_data.name) + "/" + r[0].strip(), r[1], r[2]] for r in rows],
    )
    splits = load_splits(meta, {"healthy": 0}, seed=0)
    assert (len(splits["train"]), len(splits["valid"]), len(splits["test"])) == (2, 2, 1)


def test_prepare_builds_metadata_from_class_folders(tiny_data, tmp_path):
    out = tmp_path / "prepared"
    assert (
        main(
            [
                "prepare",
                "--images",
                str(tiny_data / "images"),
                "--out",
                str(out),
                "--valid-fraction",
                "0.2",
                "--test-fraction",
                "0.1",
            ]
        )
        == 0
    )
    label2id = json.loads((out / "label2id.json").read_text())
    assert sorted(label2id) == ["blast", "brown_spot", "healthy", "leaf_blight"]
    splits = load_splits(out / "metadata.csv", label2id, seed=0, required=("train", "valid", "test"))
    assert (len(splits["train"]), len(splits["valid"]), len(splits["test"])) == (28, 8, 4)
    assert Counter(s.label for s in splits["valid"]) == {0: 2, 1: 2, 2: 2, 3: 2}


def test_prepare_rejects_a_folder_without_classes(tmp_path, capsys):
    assert main(["prepare", "--images", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "No class folders" in capsys.readouterr().err
