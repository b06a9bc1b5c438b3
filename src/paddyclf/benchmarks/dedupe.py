"""``paddyclf benchmark dedupe``: recall on planted copies and false pairs among distinct photos.

Each source photo gets five planted copies (mirror, rotation by 90 degrees, JPEG quality 50, resize
to half, a random 90% crop). The audit's grouping (:func:`paddyclf.data.dedupe.find_duplicates`) runs on
sources + copies; a copy is found when it lands in its source's group, and a false pair is a group
holding two different sources. Distinct generated lab photos (thin leaves on white paper, the hard
case for perceptual hashes) are added as sources. The per-stage measures of copies (hash distance,
registered correlation, residual) and of distinct candidate pairs are reported beside the
thresholds, which is how those were chosen.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..data import collect_images, dedupe, load_image
from ..data.synthetic import render_lab_photo
from .common import PRINT

COPY_KINDS = ("mirror", "rot90", "jpeg50", "resize50", "crop90")


def plant_copies(image: Image.Image, rng: np.random.Generator) -> dict[str, Image.Image]:
    """The five planted copies of ``image`` (RGB)."""
    w, h = image.size
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=50)
    buffer.seek(0)
    cw, ch = round(w * 0.9), round(h * 0.9)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return {
        "mirror": ImageOps.mirror(image),
        "rot90": image.transpose(Image.Transpose.ROTATE_90),
        "jpeg50": Image.open(buffer).convert("RGB"),
        "resize50": image.resize((w // 2, h // 2), Image.Resampling.BILINEAR),
        "crop90": image.crop((x, y, x + cw, y + ch)),
    }


def planted_set(sources: list[Image.Image], copies_of: int, seed: int):
    """(images, source index of each image, copy kind of each image or "") for the first ``copies_of`` sources."""
    rng = np.random.default_rng(seed)
    images, origin, kinds = list(sources), list(range(len(sources))), [""] * len(sources)
    for k, source in enumerate(sources[:copies_of]):
        for kind, copy in plant_copies(source, rng).items():
            images.append(copy)
            origin.append(k)
            kinds.append(kind)
    return images, origin, kinds


def score_grouping(group_of: np.ndarray, origin: list[int], kinds: list[str]) -> dict:
    """Recall per copy kind and false pairs (groups with two or more distinct sources)."""
    found = Counter(kind for g, o, kind in zip(group_of, origin, kinds, strict=True) if kind and g == group_of[o])
    planted = Counter(kind for kind in kinds if kind)
    sources_per_group = Counter(int(group_of[k]) for k, kind in enumerate(kinds) if not kind)
    false_pairs = sum(n * (n - 1) // 2 for n in sources_per_group.values())
    return {
        "recall": {kind: found[kind] / planted[kind] for kind in planted},
        "recall_all": sum(found.values()) / max(sum(planted.values()), 1),
        "false_pairs": false_pairs,
        "distinct_sources": sum(1 for kind in kinds if not kind),
    }


def joined_sources(group_of: np.ndarray, origin: list[int], kinds: list[str]) -> list[list[int]]:
    """The sources (``origin`` values) of each group that holds two or more distinct sources, sorted."""
    members: dict[int, list[int]] = {}
    for group, source, copy in zip(group_of, origin, kinds, strict=True):
        if not copy:
            members.setdefault(int(group), []).append(source)
    return sorted(sorted(sources) for sources in members.values() if len(sources) > 1)


def stage_measures(fps: list[dedupe.Fingerprint], origin: list[int], kinds: list[str], sample: int, seed: int):
    """Hash distance, correlation and residual of every copy to its source, and of a sample of distinct candidates."""
    copies = [k for k, kind in enumerate(kinds) if kind]
    copy_scores = [dedupe.pair_score(fps[k], fps[origin[k]]) for k in copies]
    sources = [k for k, kind in enumerate(kinds) if not kind]
    whole = np.stack([fps[k].whole for k in sources])
    crops = np.stack([fps[k].crops for k in sources])
    cands = dedupe.candidate_pairs(whole, crops)
    rng = np.random.default_rng(seed)
    picked = cands[rng.permutation(len(cands))[:sample]] if len(cands) else cands
    distinct = [dedupe.pair_score(fps[sources[i]], fps[sources[j]]) for i, j, _ in picked]
    return {
        "copies": {
            kind: {
                "min_correlation": min(
                    s.correlation for s, k in zip(copy_scores, copies, strict=True) if kinds[k] == kind
                ),
                "max_residual": max(s.residual for s, k in zip(copy_scores, copies, strict=True) if kinds[k] == kind),
                "max_fine_residual": max(s.fine for s, k in zip(copy_scores, copies, strict=True) if kinds[k] == kind),
            }
            for kind in COPY_KINDS
        },
        "distinct_candidate_pairs": int(len(cands)),
        "distinct_sampled": len(distinct),
        "distinct_max_correlation": max((s.correlation for s in distinct), default=None),
        "distinct_min_residual": min((s.residual for s in distinct), default=None),
        # the fine residual matters where the coarse one passed
        "distinct_min_fine_residual": min(
            (s.fine for s in distinct if s.residual <= dedupe.MAX_RESIDUAL), default=None
        ),
    }


def run_dedupe_benchmark(
    image_dirs: list[str | Path], lab_photos: int = 200, copies_of: int = 100, seed: int = 0, log=PRINT
) -> dict:
    """Plant copies of real photos (and of generated lab photos), group them, report recall and false pairs."""
    paths = collect_images(image_dirs) if image_dirs else []
    sources = [load_image(p) for p in paths]
    real = len(sources)
    sources += [render_lab_photo(seed, k) for k in range(lab_photos)]
    names = [str(p) for p in paths] + [f"lab photo {k}" for k in range(lab_photos)]
    images, origin, kinds = planted_set(sources, copies_of, seed)
    log(
        f"{real} real + {lab_photos} lab sources, copies of the first {min(copies_of, len(sources))}: "
        f"{len(images)} images"
    )
    fps = [dedupe.fingerprint_image(im) for im in images]
    links = dedupe.find_duplicates(fps, progress=False)
    result = {
        "real_sources": real,
        "lab_sources": lab_photos,
        "images": len(images),
        "thresholds": {
            "hash_bits": dedupe.HASH_THRESHOLD,
            "min_correlation": dedupe.MIN_CORRELATION,
            "max_residual": dedupe.MAX_RESIDUAL,
            "max_fine_residual": dedupe.MAX_FINE_RESIDUAL,
            "max_colour_gain": dedupe.MAX_COLOUR_GAIN,
        },
        **score_grouping(links.group_of, origin, kinds),
        "joined_sources": [[names[k] for k in group] for group in joined_sources(links.group_of, origin, kinds)],
        "measures": stage_measures(fps, origin, kinds, sample=300, seed=seed),
    }
    log(
        "recall " + ", ".join(f"{k} {v:.1%}" for k, v in result["recall"].items())
        + f" (all {result['recall_all']:.1%}); "
        + f"false pairs among {len(sources)} distinct photos: {result['false_pairs']}"
    )  # fmt: skip
    for group in result["joined_sources"]:
        log("  joined: " + " + ".join(group))
    m = result["measures"]
    log(
        "copies: min correlation "
        + ", ".join(f"{k} {v['min_correlation']:.3f}" for k, v in m["copies"].items())
        + "; max residual "
        + ", ".join(f"{k} {v['max_residual']:.4f}" for k, v in m["copies"].items())
    )
    log(
        f"distinct candidate pairs: {m['distinct_candidate_pairs']}; in a sample of {m['distinct_sampled']}: "
        f"max correlation {m['distinct_max_correlation']}, min residual {m['distinct_min_residual']}"
    )
    return result
