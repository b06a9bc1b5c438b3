"""``paddyclf benchmark dedupe --scaling N ...``: how the audit's time grows with the number of photos.

For each kind of photo and each size N: N distinct generated sources (``lab``: a thin leaf on white
paper, the hard case; ``field``: a blade over a paddy background), and the five planted copies of
:func:`.dedupe.plant_copies` of ``copy_fraction`` of them, written to a temporary folder as PNG (so
the copies stay what they were made to be). The timed part is what ``paddyclf audit`` does with a
cold cache: fingerprinting the files on every core, then :func:`~paddyclf.data.dedupe.find_duplicates`.

Reported per row: images, hash candidates, candidates left after the dense filter, registrations
(stage 2), stage-2 seconds per registration, the seconds of each stage and in total, recall of the
planted copies and false pairs (two distinct sources in one group).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..data import dedupe
from ..data.synthetic import CLASSES, render_image, render_lab_photo
from .common import PRINT, write_results
from .dedupe import COPY_KINDS, joined_sources, plant_copies, score_grouping

PHOTO_KINDS = ("lab", "field")


def render_source(kind: str, seed: int, index: int):
    """Distinct source ``index`` of ``kind`` (deterministic)."""
    if kind == "lab":
        return render_lab_photo(seed, index)
    return render_image(CLASSES[index % len(CLASSES)], seed + 1, index)


def _write_source(args: tuple[str, int, int, bool, str]) -> list[tuple[str, int, str]]:
    """Write source ``index`` (and its copies when ``with_copies``); return (path, source, copy kind) rows."""
    kind, seed, index, with_copies, folder = args
    image = render_source(kind, seed, index)
    rows = [(f"{folder}/{index:05d}.png", index, "")]
    image.save(rows[0][0])
    if with_copies:
        for name, copy in plant_copies(image, np.random.default_rng((seed, index))).items():
            path = f"{folder}/{index:05d}_{name}.png"
            copy.save(path)
            rows.append((path, index, name))
    return rows


def planted_folder(kind: str, sources: int, copy_fraction: float, seed: int, folder: Path, workers: int):
    """Write ``sources`` distinct photos of ``kind`` and the copies of the first ``copy_fraction`` of them
    into ``folder``; return (paths, source of each, copy kind of each or "")."""
    with_copies = round(sources * copy_fraction)
    jobs = [(kind, seed, k, k < with_copies, str(folder)) for k in range(sources)]
    with ProcessPoolExecutor(workers) as pool:
        rows = [row for written in pool.map(_write_source, jobs, chunksize=32) for row in written]
    return [Path(r[0]) for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def scaling_row(kind: str, sources: int, copy_fraction: float, seed: int, workers: int, log=PRINT) -> dict:
    """One timed audit of ``sources`` generated photos of ``kind`` with their planted copies."""
    with tempfile.TemporaryDirectory(prefix="paddyclf-scaling-") as tmp:
        paths, origin, kinds = planted_folder(kind, sources, copy_fraction, seed, Path(tmp), workers)
        started = time.perf_counter()
        fps = dedupe.fingerprint_files(paths, cache_dir=None, workers=workers, progress=False)
        fingerprint_s = time.perf_counter() - started
        links = dedupe.find_duplicates(fps, workers=workers, progress=False)
        total_s = time.perf_counter() - started
    # score_grouping wants each image's source as the source's own position in the list
    first = {o: k for k, (o, copy) in enumerate(zip(origin, kinds, strict=True)) if not copy}
    scores = score_grouping(links.group_of, [first[o] for o in origin], kinds)
    row = {
        "kind": kind,
        "sources": sources,
        "images": len(paths),
        "planted_copies": sum(1 for k in kinds if k),
        "hash_candidates": links.hash_candidates,
        "candidates": links.candidates,
        "registered": links.registered,
        "stage2_ms_per_registration": 1000 * links.seconds["registration"] / max(links.registered, 1),
        "seconds": {"fingerprints": fingerprint_s, **links.seconds, "total": total_s},
        "recall": scores["recall"],
        "recall_all": scores["recall_all"],
        "false_pairs": scores["false_pairs"],
        "false_pair_sources": joined_sources(links.group_of, origin, kinds),
    }
    log(
        f"{kind} {sources} sources, {row['images']} images: {row['hash_candidates']} hash candidates, "
        f"{row['candidates']} after the dense filter, {row['registered']} registered "
        f"({row['stage2_ms_per_registration']:.1f} ms each); {total_s:.0f} s in all; "
        f"recall {row['recall_all']:.1%}, false pairs {row['false_pairs']}"
    )
    return row


def run_dedupe_scaling(
    sizes: list[int],
    kinds: Sequence[str] = PHOTO_KINDS,
    copy_fraction: float = 0.05,
    seed: int = 0,
    workers: int | None = None,
    output: str | None = None,
    log=PRINT,
) -> dict:
    """The scaling curve: one :func:`scaling_row` per kind and size. Writes OUTPUT.json/.md/.png."""
    workers = workers or os.cpu_count() or 1
    rows = [scaling_row(kind, n, copy_fraction, seed, workers, log) for kind in kinds for n in sizes]
    result = {
        "copy_kinds": list(COPY_KINDS),
        "copy_fraction": copy_fraction,
        "workers": workers,
        "thresholds": {
            "hash_bits": dedupe.HASH_THRESHOLD,
            "dense_margin": dedupe.DENSE_MARGIN,
            "dense_neighbours": dedupe.DENSE_NEIGHBOURS,
            "min_correlation": dedupe.MIN_CORRELATION,
            "max_residual": dedupe.MAX_RESIDUAL,
            "max_fine_residual": dedupe.MAX_FINE_RESIDUAL,
            "max_colour_gain": dedupe.MAX_COLOUR_GAIN,
        },
        "rows": rows,
    }
    if output:
        write_results(output, result, markdown(result))
        plot(result, Path(output + ".png"))
        log(f"wrote {output}.json, {output}.md and {output}.png")
    return result


def markdown(result: dict) -> str:
    lines = [
        f"{result['workers']} processes; {result['copy_fraction']:.0%} of the sources with 5 planted copies each.",
        "",
        "| kind | sources | images | hash candidates | after dense filter | registered | ms / registration "
        "| fingerprints s | stage 1 + 1b s | stage 2 s | total s | recall | false pairs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        s = r["seconds"]
        lines.append(
            f"| {r['kind']} | {r['sources']} | {r['images']} | {r['hash_candidates']:,} | {r['candidates']:,} "
            f"| {r['registered']:,} | {r['stage2_ms_per_registration']:.1f} | {s['fingerprints']:.0f} "
            f"| {s['hashes'] + s['dense']:.0f} | {s['registration']:.0f} | {s['total']:.0f} "
            f"| {r['recall_all']:.1%} | {r['false_pairs']} |"
        )
    joined = [(r, sources) for r in result["rows"] for sources in r.get("false_pair_sources", [])]
    if joined:
        lines += ["", "Sources joined in one group (`render_source(kind, seed, index)`):"]
        lines += [f"- {r['kind']} {r['sources']}: {', '.join(map(str, sources))}" for r, sources in joined]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    from ..plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind in dict.fromkeys(r["kind"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["kind"] == kind]
        ax.plot([r["images"] for r in rows], [r["seconds"]["total"] for r in rows], "o-", label=kind)
    ax.set_xlabel("images (sources + planted copies)")
    ax.set_ylabel("audit seconds, uncached")
    ax.set_title(f"paddyclf audit on {result['workers']} processes")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
