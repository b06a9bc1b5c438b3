"""The browser's preprocessing (static/js/resize.js) is Pillow's and torchvision's, byte for byte.

`predict` and `serve` resize with Pillow's antialiased bilinear filter (torchvision v2 on a PIL image),
centre-crop, and normalise in float32. The page runs a port of that arithmetic, so that the browser
gives the same answer for the same photo (docs/BENCHMARKS.md section 10 measures the whole chain on
real photos; a canvas drawImage resize moved probabilities by up to 0.15). Here the port runs in
Node.js (the same V8 as Chromium) on pixels Pillow decoded, against the eval transform itself.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from paddyclf.data import Normalization, build_transform, eval_short_side
from paddyclf.data.transforms import draft_size, pillow_vertical_first

RESIZE_JS = Path(__file__).parents[1] / "src" / "paddyclf" / "serve" / "static" / "js" / "resize.js"
NODE = shutil.which("node")
IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0.875)
RUNNER = """
import { readFileSync, writeFileSync } from "node:fs";
const { resizeAndCrop, normalize, normalizationTables } = await import(process.argv[1]);
for (const c of JSON.parse(readFileSync(process.argv[2], "utf8"))) {
  const rgba = new Uint8Array(readFileSync(c.rgba));
  const rgb = resizeAndCrop(rgba, c.width, c.height, c.short, c.crop, c.vertical_first);
  writeFileSync(c.bytes_out, rgb);
  const x = normalize(rgb, c.crop, normalizationTables(c.mean, c.std));
  writeFileSync(c.float_out, new Uint8Array(x.buffer));
}
"""
# (width, height, model input size): landscape and portrait phone photos, the 1397x1920 JPEG of the
# issue, a photo already at the resize size (no resize at all), odd margins (Python's round-half-even
# picks the crop), an upscale, and long strips (Pillow 13 resamples them vertically first)
CASES = [
    (480, 640, 224), (640, 480, 224), (1397, 1920, 224), (256, 256, 224), (300, 257, 224),
    (257, 411, 160), (100, 90, 224), (225, 999, 160), (999, 225, 160), (60, 700, 32),
]  # fmt: skip


def photo_like(width: int, height: int, seed: int) -> Image.Image:
    """Smooth colour fields with fine noise: what a leaf photo asks of a resampling filter."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([np.sin(x / (7 + c) + y / (11 + 3 * c) + c) for c in range(3)], axis=-1) * 90 + 128
    noise = rng.normal(0, 25, size=(height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def node_results(tmp_path_factory):
    if NODE is None:
        pytest.skip("Node.js is missing (apt-get install nodejs; .ci/run installs it)")
    folder = tmp_path_factory.mktemp("resize")
    cases = []
    for i, (width, height, size) in enumerate(CASES):
        image = photo_like(width, height, i)
        (folder / f"{i}.rgba").write_bytes(image.convert("RGBA").tobytes())
        cases.append({
            "rgba": str(folder / f"{i}.rgba"), "width": width, "height": height,
            "short": eval_short_side(size, IMAGENET), "crop": size, "mean": IMAGENET.mean, "std": IMAGENET.std,
            "bytes_out": str(folder / f"{i}.bytes"), "float_out": str(folder / f"{i}.float"),
            "vertical_first": pillow_vertical_first(),
        })  # fmt: skip
    (folder / "cases.json").write_text(json.dumps(cases))
    subprocess.run(
        [NODE, "--input-type=module", "-e", RUNNER, RESIZE_JS.as_uri(), str(folder / "cases.json")],
        check=True, timeout=120,
    )  # fmt: skip
    return {
        i: (photo_like(w, h, i), np.fromfile(c["bytes_out"], np.uint8), np.fromfile(c["float_out"], np.float32))
        for i, ((w, h, _), c) in enumerate(zip(CASES, cases, strict=True))
    }


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{w}x{h}@{s}" for w, h, s in CASES])
def test_the_browser_crop_is_pillows_byte_for_byte(node_results, case):
    width, height, size = CASES[case]
    image, browser_bytes, _ = node_results[case]
    short = eval_short_side(size, IMAGENET)
    expected = build_transform(size, IMAGENET, train=False).transforms[:2]  # Resize, CenterCrop (on PIL)
    crop = np.asarray(expected[1](expected[0](image)))
    assert crop.shape == (size, size, 3) and short >= size
    assert np.array_equal(browser_bytes.reshape(size, size, 3), crop)


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{w}x{h}@{s}" for w, h, s in CASES])
def test_the_browser_input_tensor_is_the_eval_transforms(node_results, case):
    _, _, size = CASES[case]
    image, _, browser_floats = node_results[case]
    expected = build_transform(size, IMAGENET, train=False)(image)
    assert expected.dtype == torch.float32
    np.testing.assert_array_equal(browser_floats.reshape(3, size, size), expected.numpy())


def test_inference_decodes_in_full_so_every_front_end_sees_the_same_pixels():
    assert draft_size(224, train=False) is None  # the browser cannot draft-decode; predict and serve do not


def test_the_older_pillow_order_is_ported_too(tmp_path):
    """Before Pillow 13 the horizontal pass always came first: the same as resizing one axis, then the other."""
    if NODE is None:
        pytest.skip("Node.js is missing (apt-get install nodejs; .ci/run installs it)")
    width, height, size = 225, 999, 160  # a strip Pillow 13 resamples vertically first
    image = photo_like(width, height, 3)
    (tmp_path / "in.rgba").write_bytes(image.convert("RGBA").tobytes())
    short = eval_short_side(size, IMAGENET)
    case = {"rgba": str(tmp_path / "in.rgba"), "width": width, "height": height, "short": short, "crop": size,
            "mean": IMAGENET.mean, "std": IMAGENET.std, "bytes_out": str(tmp_path / "out.bytes"),
            "float_out": str(tmp_path / "out.float"), "vertical_first": False}  # fmt: skip
    (tmp_path / "cases.json").write_text(json.dumps([case]))
    command = [NODE, "--input-type=module", "-e", RUNNER, RESIZE_JS.as_uri(), str(tmp_path / "cases.json")]
    subprocess.run(command, check=True, timeout=60)
    out_width, out_height = short, int(short * height / width)
    bilinear = Image.Resampling.BILINEAR
    horizontal_first = image.resize((out_width, height), bilinear).resize((out_width, out_height), bilinear)
    top, left = round((out_height - size) / 2), round((out_width - size) / 2)
    expected = np.asarray(horizontal_first)[top : top + size, left : left + size]
    assert np.array_equal(np.fromfile(tmp_path / "out.bytes", np.uint8).reshape(size, size, 3), expected)
