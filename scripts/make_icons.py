"""Draw the web app's icons (src/paddyclf/serve/static/icons/icon-{192,512}.png): a rice leaf with a lesion.

Run once when the design changes: `.venv/bin/python scripts/make_icons.py`. Drawn at 4x and downsampled,
so the edges are smooth; the leaf stays inside the central 80% (the safe zone of a maskable icon).
"""

from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parents[1] / "src" / "paddyclf" / "serve" / "static" / "icons"
GREEN, LEAF, VEIN, LESION, RIM = (47, 107, 47), (236, 244, 214), (120, 160, 80), (150, 95, 40), (205, 170, 95)


def draw(size: int) -> Image.Image:
    big = size * 4
    image = Image.new("RGB", (big, big), GREEN)
    leaf = Image.new("L", (big, big), 0)
    # a long blade from lower left to upper right: an ellipse, rotated
    ImageDraw.Draw(leaf).ellipse((big * 0.12, big * 0.40, big * 0.88, big * 0.60), fill=255)
    leaf = leaf.rotate(40, resample=Image.Resampling.BICUBIC, center=(big / 2, big / 2))
    image.paste(LEAF, mask=leaf)
    pen = ImageDraw.Draw(image)
    pen.line((big * 0.24, big * 0.76, big * 0.76, big * 0.24), fill=VEIN, width=max(2, big // 80))
    # a blast lesion: a spindle with a pale rim and a brown centre
    cx, cy, r = big * 0.56, big * 0.40, big * 0.06
    pen.ellipse((cx - r * 1.3, cy - r * 0.8, cx + r * 1.3, cy + r * 0.8), fill=RIM)
    pen.ellipse((cx - r * 0.9, cy - r * 0.5, cx + r * 0.9, cy + r * 0.5), fill=LESION)
    return image.resize((size, size), Image.Resampling.LANCZOS)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for size in (192, 512):
        draw(size).save(OUT / f"icon-{size}.png", optimize=True)
        print(OUT / f"icon-{size}.png")
