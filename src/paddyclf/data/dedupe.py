"""Finding the same photo twice: exact duplicates and near-duplicates, with no chaining through weak links.

Two stages, as in classical near-duplicate detection, with a filter between them:

1. **Candidates** (cheap, high recall). Each image gets 64-bit perceptual hashes (``imagehash.phash``)
   of its whole 32x32 grey thumbnail under the 8 flips/rotations of the square (the dihedral group
   D4), and of a 3x3 grid of 90% crops. Two images are candidates when the whole-image hash of one
   is within ``hash_threshold`` bits of a D4 variant of the other (flips, 90-degree rotations,
   re-encoding, resizing), or one's crop hash is within ``hash_threshold`` of the other's D4 variant
   (one is a crop of the other). The search is a blocked, vectorised Hamming comparison in NumPy:
   O(N^2) popcounts, but no Python loop over pairs (10k images: 7.8 s on one core).

   1b. **Dense filter** (:mod:`.dense_filter`). On lab photos the hash passes most pairs; a pair
   stays a candidate only if the normalised cross-correlation of 16x16 thumbnails (whole views and
   a 5x5 grid of 90% crops, under D4) reaches the floor a copy of either image would reach, measured
   on the image itself, and only each image's 16 best pairs. One matrix product per block of
   images; on 500 generated lab photos (plus copies) it kept 1 hash candidate in 14, and the
   registrations grow about linearly with the photos (docs/BENCHMARKS.md section 4).
2. **Confirmation** (exact, high precision). A perceptual hash alone pairs distinct photos that share
   a layout, e.g. thin leaves on white paper (most of the image is the same paper). Each candidate
   pair is registered: the D4 transform from stage 1, then a search over scale and shift by
   FFT-based normalised cross-correlation of **band-pass** (difference-of-Gaussians) grey images,
   where the paper is flat and only the detail remains. The pair is a duplicate when that
   correlation is at least ``MIN_CORRELATION`` and, once registered, at most ``MAX_RESIDUAL`` of the
   pixels still differ strongly, in grey or in chroma (R - G, where brown lesions on a green leaf
   stand out). Each view is fitted to the other by a gain and offset (exposure); chroma's gain must
   stay within ``MAX_COLOUR_GAIN`` of grey's, since contrast scales colour differences as it scales
   grey ones, while a leaf of another hue needs a chroma gain of its own. Stage 2 is where the time
   goes on lab photos (most pairs are candidates), so each image's band-pass, its spectrum and its
   templates at every searched scale are computed once per orientation and kept in a small
   per-process cache (:func:`_oriented`), and all the scales of one search share one batched
   single-precision FFT.

Groups are the connected components of *confirmed* links only: a candidate that fails
confirmation never joins two groups. The thresholds (``HASH_THRESHOLD``, ``MIN_CORRELATION``,
``MAX_RESIDUAL``, ``MAX_FINE_RESIDUAL``) were chosen on planted copies (``paddyclf benchmark dedupe``)
and on rice5's own augmented copies; see docs/BENCHMARKS.md section 4.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import imagehash
import numpy as np
import scipy.fft
import threadpoolctl
from PIL import Image
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from ..fileio import atomic_path
from .dense_filter import MARGIN as DENSE_MARGIN
from .dense_filter import NEIGHBOURS as DENSE_NEIGHBOURS
from .dense_filter import dense_descriptors, grid_boxes, passing
from .images import load_image
from .symmetry import D4_INVERSE, transposed

HASH_THRESHOLD = 12  # bits of 64; measured on planted copies (crop 90%: up to 12, flips/JPEG/resize: <= 4)
# stage 2 thresholds, measured on planted copies (`paddyclf benchmark dedupe`, docs/BENCHMARKS.md)
MIN_CORRELATION = 0.75
# Both residuals must pass (:class:`PairScore`). Set on every pair stage 1b sent to registration among
# 500, 1,000 and 2,000 generated lab photos with planted copies (10,103, 24,566 and 53,428 pairs) and
# on rice5's own folders (13,803 pairs; its augmented copies are the real positives); the 5,000-photo
# run of `benchmark dedupe --scaling` is the check. At 0.375% and 0.05%: 98.4% of the lab copies joined
# their source at each size, one distinct lab pair was linked (at 2,000: the same thin leaf at 128 px,
# with lesions 2 px wide in other places), and rice5 fell into 1,601 groups (1,572 with no fine
# limit; the audit before any fine residual: 1,568). At 0.4% a distinct pair at 0.399% joined among
# 1,000; a fine limit of 0.1% linked 5 distinct pairs among 2,000. docs/BENCHMARKS.md section 4.
MAX_RESIDUAL = 0.00375
MAX_FINE_RESIDUAL = 0.0005  # the share of grey pixels no nearby pixel of the other photo explains
FINE_SIGMA, FINE_LEVEL, FINE_REACH = 1.0, 0.15, 2
CHROMA_FLOOR = 40.0  # chroma differences below 0.2 x 40 = 8 levels are noise
# A copy's chroma gain stays within 1.5 times its grey gain (:func:`colour_gains`): rice5's copies
# 0.95-1.37, generated lab copies 0.88-1.11, the last false lab pair 0.41. docs/BENCHMARKS.md section 4.
MAX_COLOUR_GAIN = 1.5
THUMB_SIZE = 128  # grey thumbnail kept for the confirmation stage
HASH_INPUT = 32  # phash's own input size (hash_size 8 x highfreq_factor 4)
HASH_GRID = 3  # the hashes' crops: a 3x3 grid of 90% crops (dense_filter.grid_boxes)
FINGERPRINT_VERSION = 3  # 3: the dense descriptors of stage 1b


def _phash64(image: Image.Image) -> int:
    return int(str(imagehash.phash(image)), 16)


@dataclass
class Fingerprint:
    """What stage 1 and 2 need of one image. ``error`` is set (and the rest empty) when it is unreadable."""

    pixel_sha1: str = ""  # of the decoded RGB pixels and their size: equal means exact duplicate
    whole: np.ndarray | None = None  # (8,) uint64: phash of the whole image under each D4 transform
    crops: np.ndarray | None = None  # (9,) uint64: phash of each 90% grid crop (identity orientation)
    thumb: np.ndarray | None = None  # (THUMB_SIZE, THUMB_SIZE) uint8 grey, aspect squashed
    chroma: np.ndarray | None = None  # (THUMB_SIZE, THUMB_SIZE) uint8 R - G + 128: brown lesions on green leaves
    size: tuple[int, int] = (0, 0)
    error: str = ""
    dense: np.ndarray | None = None  # (8 + 25, 256) float16 unit thumbnails for stage 1b (:mod:`.dense_filter`)
    dense_floor: float = 0.0  # the correlation a copy of this image reaches at least (:mod:`.dense_filter`)


def fingerprint_image(image: Image.Image) -> Fingerprint:
    """Fingerprint of an RGB image (see :class:`Fingerprint`)."""
    rgb = np.asarray(image.convert("RGB"))
    sha = hashlib.sha1(f"{rgb.shape}".encode() + rgb.tobytes()).hexdigest()
    grey = image.convert("L")
    small = grey.resize((HASH_INPUT, HASH_INPUT), Image.Resampling.LANCZOS)
    whole = np.array([_phash64(transposed(small, t)) for t in range(8)], dtype=np.uint64)
    crops = np.array(
        [
            _phash64(grey.crop(box).resize((HASH_INPUT, HASH_INPUT), Image.Resampling.LANCZOS))
            for box in grid_boxes(*grey.size, steps=HASH_GRID)
        ],
        dtype=np.uint64,
    )
    thumb = np.asarray(grey.resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS), dtype=np.uint8)
    small_rgb = np.asarray(image.convert("RGB").resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS), np.int16)
    chroma = np.clip(small_rgb[..., 0] - small_rgb[..., 1] + 128, 0, 255).astype(np.uint8)
    dense, dense_floor = dense_descriptors(grey)
    return Fingerprint(sha, whole, crops, thumb, chroma, image.size, dense=dense, dense_floor=dense_floor)


def fingerprint_file(path: str | Path) -> Fingerprint:
    """Fingerprint of an image file; an unreadable file gives ``Fingerprint(error=...)``, never raises."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fingerprint_image(load_image(path))
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "unreadable"
        return Fingerprint(error=f"{type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- cached, parallel fingerprinting


def _cache_entry(cache_dir: Path, path: Path) -> Path:
    stat = path.stat()
    raw = f"{FINGERPRINT_VERSION}|{path.resolve()}|{stat.st_mtime_ns}|{stat.st_size}"
    return cache_dir / f"{hashlib.sha1(raw.encode()).hexdigest()}.npz"


def _cached_fingerprint(path: Path, cache_dir: Path | None) -> Fingerprint:
    """Read the fingerprint from the cache, or compute and store it (atomically: workers run concurrently)."""
    if cache_dir is None or not path.is_file():
        return fingerprint_file(path)
    entry = _cache_entry(cache_dir, path)
    if entry.is_file():
        with np.load(entry) as data:
            if data["error"].item():
                return Fingerprint(error=str(data["error"].item()))
            return Fingerprint(
                str(data["sha"].item()),
                data["whole"],
                data["crops"],
                data["thumb"],
                data["chroma"],
                tuple(data["size"].tolist()),
                dense=data["dense"],
                dense_floor=float(data["dense_floor"]),
            )
    fp = fingerprint_file(path)
    empty = np.zeros(0, dtype=np.uint64)
    with atomic_path(entry) as tmp, tmp.open("wb") as fh:
        np.savez(
            fh,
            sha=np.array(fp.pixel_sha1),
            whole=empty if fp.whole is None else fp.whole,
            crops=empty if fp.crops is None else fp.crops,
            thumb=np.zeros((0, 0), np.uint8) if fp.thumb is None else fp.thumb,
            chroma=np.zeros((0, 0), np.uint8) if fp.chroma is None else fp.chroma,
            size=np.array(fp.size),
            error=np.array(fp.error),
            dense=np.zeros((0, 0), np.float16) if fp.dense is None else fp.dense,
            dense_floor=np.array(fp.dense_floor),
        )
    return fp


def _fingerprint_job(args: tuple[str, str | None]) -> Fingerprint:
    path, cache = args
    return _cached_fingerprint(Path(path), Path(cache) if cache else None)


def fingerprint_files(
    paths: Sequence[str | Path],
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> list[Fingerprint]:
    """Fingerprints of ``paths`` in order, computed on ``workers`` processes (default: all cores), cached."""
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    jobs = [(str(p), None if cache_dir is None else str(cache_dir)) for p in paths]
    workers = workers or os.cpu_count() or 1
    bar = dict(total=len(jobs), desc="fingerprints", disable=not progress, dynamic_ncols=True)
    if workers <= 1 or len(jobs) < 32:
        return [_fingerprint_job(job) for job in tqdm(jobs, **bar)]
    with ProcessPoolExecutor(workers) as pool:
        return list(tqdm(pool.map(_fingerprint_job, jobs, chunksize=16), **bar))


# --------------------------------------------------------------------------- stage 1: candidates


def hamming_min(queries: np.ndarray, table: np.ndarray) -> np.ndarray:
    """(Q, N) minimum Hamming distance between each query row's hashes and each table row's hashes.

    ``queries`` is (Q, a) and ``table`` (N, b) of uint64; the minimum is over all a x b combinations.
    """
    out = np.full((len(queries), len(table)), 255, dtype=np.uint8)
    for qa in range(queries.shape[1]):
        for tb in range(table.shape[1]):
            np.minimum(out, np.bitwise_count(queries[:, qa, None] ^ table[None, :, tb]), out=out)
    return out


def candidate_pairs(
    whole: np.ndarray, crops: np.ndarray, threshold: int = HASH_THRESHOLD, block: int = 256
) -> np.ndarray:
    """(P, 3) int array of candidate pairs ``i < j`` with their hash distance, from stage 1.

    ``whole`` is (N, 8) D4 hashes, ``crops`` (N, 9) crop hashes. A pair's distance is the smallest of:
    whole(i) vs D4(j), crop(i) vs D4(j), crop(j) vs D4(i).
    """
    n = len(whole)
    found = []
    for start in range(0, n, block):
        rows = slice(start, min(start + block, n))
        dist = np.minimum(hamming_min(whole[rows, :1], whole), hamming_min(crops[rows], whole))
        i, j = np.nonzero(dist <= threshold)
        i += start
        found.append(np.stack([i, j, dist[i - start, j]], axis=1))
    pairs = np.concatenate(found) if found else np.zeros((0, 3), dtype=np.int64)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]].astype(np.int64)
    # crop(i) vs D4(j) and crop(j) vs D4(i) each found one direction: fold to i < j, keep the smaller distance
    lo, hi = np.minimum(pairs[:, 0], pairs[:, 1]), np.maximum(pairs[:, 0], pairs[:, 1])
    pairs = np.stack([lo, hi, pairs[:, 2]], axis=1)
    order = np.lexsort((pairs[:, 2], pairs[:, 1], pairs[:, 0]))
    pairs = pairs[order]
    keep = np.ones(len(pairs), dtype=bool)
    keep[1:] = (pairs[1:, 0] != pairs[:-1, 0]) | (pairs[1:, 1] != pairs[:-1, 1])
    return pairs[keep]


# --------------------------------------------------------------------------- stage 2: confirmation


def _bandpass(image: np.ndarray) -> np.ndarray:
    """Difference of Gaussians (sigma 1 and 4 px at 128 px): flat paper and smooth shading vanish."""
    image = image.astype(np.float32)
    return gaussian_filter(image, 1.0) - gaussian_filter(image, 4.0)


def _integral(image: np.ndarray) -> np.ndarray:
    return np.pad(image.cumsum(0).cumsum(1), ((1, 0), (1, 0)))


def _window_sums(integral: np.ndarray, side: int) -> np.ndarray:
    """Sum of every ``side`` x ``side`` window, from an integral image: shape (H-side+1, W-side+1)."""
    c = integral
    return c[side:, side:] - c[:-side, side:] - c[side:, :-side] + c[:-side, :-side]


@dataclass
class SearchImage:
    """A thumbnail prepared to be searched in: its band-pass, the band-pass's spectrum, and the local
    energy of the band-pass under every window of a given side (from integral images, kept per side)."""

    band: np.ndarray  # (S, S) float32
    spectrum: np.ndarray  # (S, S // 2 + 1) complex64: rfft2 of band
    sums: np.ndarray  # (S + 1, S + 1) float64 integral images of band and band squared
    sums2: np.ndarray
    _spread: dict = field(default_factory=dict)

    @classmethod
    def of(cls, band: np.ndarray) -> SearchImage:
        wide = band.astype(np.float64)
        return cls(band, scipy.fft.rfft2(band), _integral(wide), _integral(wide * wide))

    def spread(self, side: int) -> np.ndarray:
        """(S - side + 1, S - side + 1): the norm of the centred band-pass under each window, 0 where flat."""
        if side not in self._spread:
            n = side * side
            s1, s2 = _window_sums(self.sums, side), _window_sums(self.sums2, side)
            var = np.maximum(s2 - s1 * s1 / n, 0.0)
            self._spread[side] = np.where(var > 1e-3 * n, np.sqrt(var), 0.0)
        return self._spread[side]


@dataclass(frozen=True)
class TemplateBank:
    """The templates of one band-passed image at several scales (see :func:`_template`), centred, with
    their norms and the conjugates of their spectra, zero-padded to the searched image's size."""

    scales: tuple[float, ...]
    sides: tuple[int, ...]
    norms: tuple[float, ...]
    conj_spectra: np.ndarray  # (K, S, S // 2 + 1) complex64

    @classmethod
    def of(cls, other_band: np.ndarray, scales: Sequence[float]) -> TemplateBank:
        size = other_band.shape[0]
        other = Image.fromarray(other_band, mode="F")
        stack = np.zeros((len(scales), size, size), dtype=np.float32)
        sides, norms = [], []
        for k, scale in enumerate(scales):
            template = _template(other, scale, size)
            side, t = template.shape[0], template - template.mean()
            norm = float(np.linalg.norm(t))
            if not (8 <= side <= size and norm > 1e-6):
                norm = 0.0  # unusable: too small, too large, or flat
            else:
                stack[k, :side, :side] = t
            sides.append(side)
            norms.append(norm)
        return cls(tuple(scales), tuple(sides), tuple(norms), np.conj(scipy.fft.rfft2(stack)))


def best_placements(whole: SearchImage, bank: TemplateBank) -> list[tuple[float, tuple[int, int], int]]:
    """For each scale of ``bank``: (best normalised cross-correlation, its (y, x), template side) of that
    template over every placement inside ``whole``.

    Templates are cut from the band-pass of the whole other image, so they carry the band-pass of their
    real surroundings rather than of reflected borders. All scales share one batched single-precision
    FFT: circular correlation at the image's own size is exact for every placement that fits (no
    wrap-around), and the local energy of ``whole`` under each placement comes from its integral images.
    """
    size = whole.band.shape[0]
    corr = scipy.fft.irfft2(whole.spectrum[None] * bank.conj_spectra, s=(size, size))
    found = []
    for k, (side, norm) in enumerate(zip(bank.sides, bank.norms, strict=True)):
        if norm == 0.0:
            found.append((-1.0, (0, 0), side))
            continue
        spread = whole.spread(side)
        num = corr[k, : size - side + 1, : size - side + 1]
        ncc = np.divide(num, spread * norm + 1e-6, out=np.zeros_like(num), where=spread > 0)
        at = np.unravel_index(int(ncc.argmax()), ncc.shape)
        found.append((float(ncc[at]), (int(at[0]), int(at[1])), side))
    return found


@dataclass(frozen=True)
class Placement:
    """Where a view of the other image sits inside the whole image, and how well it fits there."""

    correlation: float  # normalised cross-correlation of the band-pass grey images at the best placement
    y: int
    x: int
    side: int  # template side in whole-image pixels
    scale: float  # the other image's field of view relative to the whole image's

    def refined(self, whole: np.ndarray, other: np.ndarray, reach: int = 2) -> Placement:
        """The placement within ``reach`` px whose raw grey pixels correlate best.

        The band-pass search can miss by a pixel, and one pixel off is enough to make a textured copy
        look different in the residual. Every placement of the square around this one is scored at
        once: the windows are views of ``whole``, their correlation with the centred template one
        tensor product.
        """
        template = _template(Image.fromarray(other), self.scale, whole.shape[0]).astype(np.float64)
        t = template - template.mean()
        limit = whole.shape[0] - self.side
        top, left = max(self.y - reach, 0), max(self.x - reach, 0)
        bottom, right = min(self.y + reach, limit), min(self.x + reach, limit)
        if top > bottom or left > right:
            return self
        region = whole[top : bottom + self.side, left : right + self.side].astype(np.float64)
        windows = np.lib.stride_tricks.sliding_window_view(region, (self.side, self.side))  # (ny, nx, side, side)
        n = self.side * self.side
        sums = windows.sum(axis=(2, 3))
        energy = np.maximum(np.einsum("ijkl,ijkl->ij", windows, windows) - sums * sums / n, 0.0)
        scores = np.tensordot(windows, t, axes=([2, 3], [0, 1])) / (np.sqrt(energy) * np.linalg.norm(t) + 1e-6)
        dy, dx = np.unravel_index(int(scores.argmax()), scores.shape)
        return Placement(self.correlation, top + int(dy), left + int(dx), self.side, self.scale)

    def views(self, whole: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(window of ``whole``, template from ``other``) for any channel of the two thumbnails."""
        window = whole[self.y : self.y + self.side, self.x : self.x + self.side].astype(np.float32)
        return window, _template(Image.fromarray(other), self.scale, whole.shape[0])


def _template(other: Image.Image, scale: float, size: int) -> np.ndarray:
    """The central 80% of ``other``, resized as it would appear in the whole image at ``scale``."""
    side = int(round(0.8 * scale * size))
    margin = int(round(0.1 * size))
    box = (margin, margin, size - margin, size - margin)
    return np.asarray(other.crop(box).resize((side, side), Image.Resampling.BILINEAR), dtype=np.float32)


def register(whole_thumb: np.ndarray, other_thumb: np.ndarray, scales: Sequence[float]) -> Placement | None:
    """Best placement of ``other`` (a view of ``whole`` at one of ``scales``) inside ``whole``.

    ``scales`` are sizes of ``other``'s field of view relative to ``whole``'s (0.9: other is a 90%
    crop). The central 80% of ``other`` is the template, so shifts of up to 10% are searched too. The
    score is the normalised cross-correlation of band-pass images (:func:`best_placements`); the best
    scale is refined in steps of 0.5%.
    """
    other_band = _bandpass(other_thumb)
    return _register(SearchImage.of(_bandpass(whole_thumb)), other_band, TemplateBank.of(other_band, scales))


def _register(whole: SearchImage, other_band: np.ndarray, bank: TemplateBank) -> Placement | None:
    best, best_scale = max(zip(best_placements(whole, bank), bank.scales, strict=True))
    if best[0] < MIN_CORRELATION - 0.1:
        return None  # far from a copy: no need to refine
    fine = TemplateBank.of(other_band, (best_scale - 0.01, best_scale - 0.005, best_scale + 0.005, best_scale + 0.01))
    for found, scale in zip(best_placements(whole, fine), fine.scales, strict=True):
        best, best_scale = max((best, best_scale), (found, scale))
    correlation, (y, x), side = best
    return Placement(correlation, y, x, side, best_scale)


def _matched(
    window: np.ndarray,
    template: np.ndarray,
    sigma: float,
    level: float,
    floor: float,
    gains: tuple[float, float] | None = None,
):
    """Both views blurred by ``sigma`` px, the template mapped onto the window by a least-squares gain
    and offset (exposure; the gain kept within ``gains`` when given), the difference that counts
    as strong: ``level`` of the window's range (1st to 99th percentile), the range counted as at least
    ``floor`` levels, and the gain."""
    a = gaussian_filter(window, sigma)
    b = gaussian_filter(template, sigma)
    gain, offset = _line_fit(b.ravel(), a.ravel(), gains)
    low, high = np.percentile(a, [1, 99])
    return a, gain * b + offset, level * max(float(high - low), floor), gain


def colour_gains(grey_gain: float, most: float = MAX_COLOUR_GAIN) -> tuple[float, float]:
    """The chroma gains a copy may show when its grey gain is ``grey_gain``: within ``most`` times it.

    Contrast and exposure scale grey and colour differences alike and white balance shifts colour by
    an offset, so a copy's chroma gain follows its grey gain; a saturation change moves it apart
    (rice5's copies: 0.95 to 1.37 times the grey gain). Two distinct leaves of other hues are matched
    by a chroma gain far from it (the one false pair among 2,000 generated lab photos: 0.41)."""
    grey_gain = abs(grey_gain)
    return grey_gain / most, grey_gain * most


def residual_and_gain(
    window: np.ndarray,
    template: np.ndarray,
    sigma: float = 2.0,
    level: float = 0.2,
    floor: float = 20.0,
    gains: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """Share of pixels that still differ by more than ``level`` of the range after registration, and
    the exposure gain that mapped the template onto the window.

    Both views are blurred (``sigma`` px: resampling, JPEG noise and JPEG's halved chroma resolution),
    the template is mapped onto the window by a least-squares gain and offset (exposure), and the
    pixels that still differ strongly are counted: distinct leaves differ in lesions and outline,
    copies almost nowhere. The range counts as at least ``floor`` levels, so flat images (and the
    weak chroma of most photos) do not magnify noise. ``gains`` bounds the exposure gain
    (:func:`colour_gains`).
    """
    a, b, strong, gain = _matched(window, template, sigma, level, floor, gains)
    return float((np.abs(a - b) > strong).mean()), gain


def tolerant_residual_share(
    window: np.ndarray,
    template: np.ndarray,
    sigma: float = 1.0,
    level: float = 0.15,
    reach: int = 2,
    floor: float = 20.0,
) -> float:
    """Share of pixels where one view differs strongly from *every* value the other takes within
    ``reach`` px, either way: a detail present in only one photo (a lesion a few pixels wide), not
    one displaced a little.

    Why tolerant: a copy rotated by a few degrees, or zoomed and shifted by a fraction of a pixel
    (rice5's own augmentations), is registered by scale and shift only, so its fine texture (grass,
    leaf veins) lands up to a pixel or two off; a plain pixel-wise fine residual counts that texture
    (median 0.9%, up to 10% on rice5's copies) and splits the copies apart. Pixel ``p`` of ``a``
    differs when ``a[p] > max(b[q]) + strong`` or ``a[p] < min(b[q]) - strong`` over ``|q - p| <= reach``
    (a grey-level dilation and erosion of ``b``), and the same with ``a`` and ``b`` swapped. Such a pixel
    also differs pixel-wise, so only the pixels that do are looked at (few, in a copy).
    """
    a, b, strong, _ = _matched(window, template, sigma, level, floor)
    ys, xs = np.nonzero(np.abs(a - b) > strong)
    if len(ys) == 0:
        return 0.0
    side = 2 * reach + 1

    def beyond(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        around = np.lib.stride_tricks.sliding_window_view(np.pad(y, reach, mode="edge"), (side, side))[ys, xs]
        return (x[ys, xs] > around.max(axis=(1, 2)) + strong) | (x[ys, xs] < around.min(axis=(1, 2)) - strong)

    return float((beyond(a, b) | beyond(b, a)).sum() / a.size)


def _line_fit(x: np.ndarray, y: np.ndarray, gains: tuple[float, float] | None = None) -> tuple[float, float]:
    """Least-squares (gain, offset) of ``y ~ gain * x + offset``: the closed form, and the minimum-norm
    solution (as ``numpy.linalg.lstsq`` gives) when ``x`` is constant. With ``gains = (low, high)`` the
    gain is the least-squares one within them: the sum of squares is a parabola in the gain once the
    offset is fitted (``mean(y) - gain * mean(x)``), so the bounded optimum is the clipped one."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    x_mean, y_mean = x.mean(), y.mean()
    spread = float(((x - x_mean) ** 2).sum())
    if spread <= 1e-9 * max(float((x * x).sum()), 1.0):
        (gain, offset), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], axis=1), y, rcond=None)
        return float(gain), float(offset)
    gain = float(((x - x_mean) * (y - y_mean)).sum()) / spread
    if gains is not None:
        gain = float(np.clip(gain, *gains))
    return gain, float(y_mean - gain * x_mean)


WHOLE_SCALES = (0.97, 1.0, 1.03)
CROP_SCALES = tuple(float(s) for s in np.round(np.arange(0.80, 1.001, 0.025), 3))  # other is a crop of whole


@dataclass(frozen=True)
class PairScore:
    """Stage 2's measures of one pair: registered band-pass correlation and residual shares.

    ``residual`` is the larger share of strongly differing pixels in grey and chroma at a 2 px blur
    (chroma's exposure gain held within ``MAX_COLOUR_GAIN`` of grey's, :func:`colour_gains`);
    ``fine`` the share of grey pixels at a 1 px blur and a lower level that differ from every pixel
    of the other photo within 2 px (:func:`tolerant_residual_share`): a lesion a few pixels wide
    present in only one photo counts (a 10 px lesion on a 256 px photo, for example), texture a pixel
    off does not. Thin leaves on paper can slide along their own axis to line up two lesions, and
    then only the fine residual tells them apart; see ``MAX_FINE_RESIDUAL``.
    """

    correlation: float
    residual: float
    fine: float = 0.0

    def confirmed(self, min_correlation: float, max_residual: float, max_fine: float = MAX_FINE_RESIDUAL) -> bool:
        return self.correlation >= min_correlation and self.residual <= max_residual and self.fine <= max_fine

    @property
    def worst_share(self) -> float:
        """The residual nearer its limit, as a fraction of that limit (how an alignment is chosen)."""
        return max(self.residual / MAX_RESIDUAL, self.fine / MAX_FINE_RESIDUAL)


EXACT = PairScore(1.0, 0.0, 0.0)
NO_MATCH = PairScore(-1.0, 1.0, 1.0)


def _alignments_to_try(a: Fingerprint, b: Fingerprint, threshold: int) -> list[tuple[int, str, int]]:
    """(hash distance, relation, D4 index of b) within ``threshold``, closest first, at most 3.

    Relations: "same" (b is the same view as a), "b_in_a" (t(b) is a crop of a), "a_in_b" (a is a crop of t(b)).
    """
    options = []
    for t in range(8):
        options.append((int(np.bitwise_count(a.whole[0] ^ b.whole[t])), "same", t))
        options.append((int(np.bitwise_count(a.crops ^ b.whole[t]).min()), "b_in_a", t))
        # a seen in the frame where t(b) is upright: inverse(t) applied to a
        options.append((int(np.bitwise_count(b.crops ^ a.whole[D4_INVERSE[t]]).min()), "a_in_b", t))
    return sorted(o for o in options if o[0] <= threshold)[:3]


@dataclass
class _Oriented:
    """One fingerprint's thumbnails under one D4 transform, with what stage 2 derives from them (lazily)."""

    grey: np.ndarray
    chroma: np.ndarray
    _band: np.ndarray | None = None
    _search: SearchImage | None = None
    _banks: dict = field(default_factory=dict)

    @property
    def band(self) -> np.ndarray:
        if self._band is None:
            self._band = _bandpass(self.grey)
        return self._band

    @property
    def search(self) -> SearchImage:
        if self._search is None:
            self._search = SearchImage.of(self.band)
        return self._search

    def bank(self, scales: tuple[float, ...]) -> TemplateBank:
        if scales not in self._banks:
            self._banks[scales] = TemplateBank.of(self.band, scales)
        return self._banks[scales]


_ORIENTED: OrderedDict[tuple[str, int], _Oriented] = OrderedDict()
# An entry holds up to about 1.3 MB (thumbnails, band-pass, spectrum, integral images, 12 template spectra).
# Candidate pairs meet each image many times, a few at a time: on 110 lab photos, 192 entries took stage 2
# from 6.5 to 4.5 ms a pair. Each stage-2 process gets an even share of CACHE_BUDGET_BYTES, at most 192 entries.
CACHE_BUDGET_BYTES = 512 * 2**20
_ENTRY_BYTES = 1_300_000
_ORIENTED_CACHE_SIZE = 192


def _oriented(fp: Fingerprint, t: int) -> _Oriented:
    """``fp``'s thumbnails under the D4 transform ``t``, from a small per-process cache keyed by content."""
    key = (fp.pixel_sha1, t)
    found = _ORIENTED.get(key)
    if found is None:
        grey, chroma = (np.asarray(transposed(Image.fromarray(pixels), t)) for pixels in (fp.thumb, fp.chroma))
        found = _Oriented(grey, chroma)
        _ORIENTED[key] = found
        if len(_ORIENTED) > _ORIENTED_CACHE_SIZE:
            _ORIENTED.popitem(last=False)
    else:
        _ORIENTED.move_to_end(key)
    return found


Alignment = tuple[str, int]  # (relation, D4 index of b): see :func:`_alignments_to_try`


def dense_alignment(direction: int, query: int, symmetry: int) -> Alignment:
    """The alignment stage 1b found (:func:`.dense_filter.pair_scores`), as stage 2's relation.

    Direction 0 matched a view of a with b under ``symmetry``: the whole (same view) or a crop (b is
    a crop of a). Direction 1 matched a view of b with a under ``symmetry``, so b is seen upright
    under its inverse.
    """
    if direction == 0:
        return ("same" if query == 0 else "b_in_a", symmetry)
    return ("same" if query == 0 else "a_in_b", D4_INVERSE[symmetry])


def pair_score(
    a: Fingerprint,
    b: Fingerprint,
    threshold: int = HASH_THRESHOLD,
    min_correlation: float = MIN_CORRELATION,
    alignments: Sequence[Alignment] | None = None,
) -> PairScore:
    """Stage 2 for one pair: register ``b`` on ``a`` along ``alignments`` (default: the closest hash
    alignments, :func:`_alignments_to_try`).

    A pair is a copy when *some* alignment fits, so among the alignments that reach ``min_correlation``
    the one with the smallest residual is kept (a wrong alignment can correlate better by chance);
    when none reaches it, the best-correlated one is returned.
    """
    if a.pixel_sha1 == b.pixel_sha1:
        return EXACT
    best = NO_MATCH
    if alignments is None:
        alignments = [(relation, t) for _, relation, t in _alignments_to_try(a, b, threshold)]
    for relation, t in alignments:
        if relation == "a_in_b":  # register a inside t(b)
            whole, other, scales = _oriented(b, t), _oriented(a, 0), CROP_SCALES
        else:
            whole, other = _oriented(a, 0), _oriented(b, t)
            scales = WHOLE_SCALES if relation == "same" else CROP_SCALES
        found = _register(whole.search, other.band, other.bank(scales))
        if found is None:
            continue
        found = found.refined(whole.grey, other.grey)
        grey_views = found.views(whole.grey, other.grey)
        grey_residual, grey_gain = residual_and_gain(*grey_views)
        chroma_views = found.views(whole.chroma, other.chroma)
        score = PairScore(
            found.correlation,
            max(grey_residual, residual_and_gain(*chroma_views, floor=CHROMA_FLOOR, gains=colour_gains(grey_gain))[0]),
            tolerant_residual_share(*grey_views, sigma=FINE_SIGMA, level=FINE_LEVEL, reach=FINE_REACH),
        )
        if _better(score, best, min_correlation):
            best = score
    return best


def _better(new: PairScore, old: PairScore, min_correlation: float) -> bool:
    new_ok, old_ok = new.correlation >= min_correlation, old.correlation >= min_correlation
    if new_ok != old_ok:
        return new_ok
    if new_ok:
        return new.worst_share < old.worst_share
    return new.correlation > old.correlation


_SHARED: list[Fingerprint] = []  # the fingerprints, in each stage-2 worker process


def _init_scorer(fingerprints: list[Fingerprint], processes: int = 1) -> None:
    global _SHARED, _ORIENTED_CACHE_SIZE
    _SHARED = fingerprints
    _ORIENTED_CACHE_SIZE = max(16, min(192, CACHE_BUDGET_BYTES // (processes * _ENTRY_BYTES)))
    if processes > 1:
        # one BLAS thread per stage-2 process: with the default (one per core) in each, the processes'
        # threads fought over the cores, and 2 processes on 2 cores took 43 s where 1 took 36 (23 s now)
        threadpoolctl.threadpool_limits(1)


Task = tuple[int, int, Alignment | None]  # a pair of fingerprint indices and where to register (None: the hashes say)


def _score_chunk(args: tuple[list[Task], int, float]) -> list[PairScore]:
    tasks, threshold, min_correlation = args
    return [
        pair_score(_SHARED[i], _SHARED[j], threshold, min_correlation, None if at is None else [at])
        for i, j, at in tasks
    ]


class PairScorer:
    """:func:`pair_score` for batches of pairs, on ``workers`` processes (default: all cores).

    A context manager: the worker pool (each with the fingerprints) lives as long as the ``with``.
    """

    def __init__(
        self,
        fingerprints: Sequence[Fingerprint],
        threshold: int = HASH_THRESHOLD,
        min_correlation: float = MIN_CORRELATION,
        workers: int | None = None,
    ) -> None:
        self.fingerprints = list(fingerprints)
        self.threshold = threshold
        self.min_correlation = min_correlation
        self.workers = workers or os.cpu_count() or 1
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> PairScorer:
        _init_scorer(self.fingerprints)
        if self.workers > 1:
            self.pool = ProcessPoolExecutor(
                self.workers, initializer=_init_scorer, initargs=(self.fingerprints, self.workers)
            )
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown()

    def score(self, pairs: Sequence[tuple[int, int]] | Sequence[Task]) -> list[PairScore]:
        """Stage 2 of each pair ``(i, j)`` or task ``(i, j, alignment)``, in order."""
        pairs = [(p[0], p[1], p[2] if len(p) > 2 else None) for p in pairs]
        if self.pool is None or len(pairs) < 32:
            return _score_chunk((pairs, self.threshold, self.min_correlation))
        # sorted by image, in a few large chunks: each process then meets the same images again while
        # they are still in its cache (:func:`_oriented`)
        order = sorted(range(len(pairs)), key=lambda k: pairs[k][:2])
        size = max(8, -(-len(pairs) // (2 * self.workers)))
        chunks = [
            ([pairs[k] for k in order[start : start + size]], self.threshold, self.min_correlation)
            for start in range(0, len(order), size)
        ]
        scores: list[PairScore] = [NO_MATCH] * len(pairs)
        done = (score for result in self.pool.map(_score_chunk, chunks) for score in result)
        for k, score in zip(order, done, strict=True):
            scores[k] = score
        return scores


# --------------------------------------------------------------------------- groups


class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class DuplicateLinks:
    """Confirmed links between images (indices into the fingerprint list) and the groups they form."""

    pairs: np.ndarray  # (L, 2) confirmed i < j
    distances: np.ndarray  # (L,) hash distance of each link
    similarities: np.ndarray  # (L,) registered band-pass correlation (1.0 for exact duplicates)
    group_of: np.ndarray  # (N,) group id per image (-1: unreadable), ids 0..G-1 in order of first member
    candidates: int  # pairs sent to registration (stage 1 and 1b passed)
    hash_candidates: int = 0  # pairs within the hash threshold (stage 1 alone)
    registered: int = 0  # candidates registered (the rest were already joined through other links)
    seconds: dict = field(default_factory=dict)  # wall time of "hashes", "dense" and "registration"


def find_duplicates(
    fingerprints: Sequence[Fingerprint],
    hash_threshold: int = HASH_THRESHOLD,
    min_correlation: float = MIN_CORRELATION,
    max_residual: float = MAX_RESIDUAL,
    workers: int | None = None,
    progress: bool = True,
    dense_margin: float | None = DENSE_MARGIN,
    dense_neighbours: int | None = DENSE_NEIGHBOURS,
) -> DuplicateLinks:
    """Stage 1, stage 1b, stage 2 and the groups (connected components of confirmed links) of
    ``fingerprints``. ``dense_margin=None`` turns stage 1b off (every hash candidate is registered),
    ``dense_neighbours=None`` its nearest-neighbour cut (see :func:`.dense_filter.passing`)."""
    readable = [i for i, fp in enumerate(fingerprints) if not fp.error]
    n = len(fingerprints)
    links: dict[tuple[int, int], tuple[int, float]] = {}
    by_sha: dict[str, int] = {}
    for i in readable:  # exact duplicates: same decoded pixels
        first = by_sha.setdefault(fingerprints[i].pixel_sha1, i)
        if first != i:
            links[(first, i)] = (0, 1.0)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    cands = np.zeros((0, 3), dtype=np.int64)
    if readable:
        whole = np.stack([fingerprints[i].whole for i in readable])
        crops = np.stack([fingerprints[i].crops for i in readable])
        cands = candidate_pairs(whole, crops, hash_threshold)
    hash_candidates = len(cands)
    seconds["hashes"], started = time.perf_counter() - started, time.perf_counter()
    aligned: list[Alignment | None] = [None] * len(cands)
    if dense_margin is not None and len(cands):
        dense = np.stack([fingerprints[i].dense for i in readable])
        floors = np.array([fingerprints[i].dense_floor for i in readable])
        keep, found_at = passing(dense, floors, cands[:, :2], dense_margin, dense_neighbours)
        cands, aligned = cands[keep], [dense_alignment(*map(int, at)) for at in found_at[keep]]
    seconds["dense"], started = time.perf_counter() - started, time.perf_counter()
    uf = UnionFind(n)
    for i, j in links:
        uf.union(i, j)
    order = np.argsort(cands[:, 2], kind="stable")
    todo = [(readable[cands[k, 0]], readable[cands[k, 1]], int(cands[k, 2]), aligned[k]) for k in order]
    scorer = PairScorer(fingerprints, hash_threshold, min_correlation, workers)
    registered = _confirm(todo, scorer, uf, links, max_residual, progress)
    seconds["registration"] = time.perf_counter() - started
    group_of = np.full(n, -1, dtype=np.int64)
    ids: dict[int, int] = {}
    for i in readable:
        group_of[i] = ids.setdefault(uf.find(i), len(ids))
    keys = sorted(links)
    return DuplicateLinks(
        pairs=np.array(keys, dtype=np.int64).reshape(-1, 2),
        distances=np.array([links[k][0] for k in keys], dtype=np.int64),
        similarities=np.array([links[k][1] for k in keys], dtype=np.float64),
        group_of=group_of,
        candidates=len(cands),
        hash_candidates=hash_candidates,
        registered=registered,
        seconds=seconds,
    )


def _confirm(
    todo: list[tuple[int, int, int, Alignment | None]],
    scorer: PairScorer,
    uf: UnionFind,
    links: dict[tuple[int, int], tuple[int, float]],
    max_residual: float,
    progress: bool,
) -> int:
    """Stage 2 of the candidates ``(i, j, hash distance, alignment)``; confirmed pairs join ``links``
    and ``uf``. Returns how many pairs were registered.

    Closest candidates first, in rounds: a pair whose images are already joined by confirmed links
    is skipped (one more link inside a group changes no group), which spares most of the pairs of
    large groups (30 crops of one photo: 435 candidate pairs, 29 needed).
    """
    registered = 0
    bar = tqdm(total=len(todo), desc="confirming", disable=not progress, dynamic_ncols=True)
    round_size = max(256, 64 * scorer.workers)
    with scorer:
        for start in range(0, len(todo), round_size):
            batch = todo[start : start + round_size]
            needed = [task for task in batch if uf.find(task[0]) != uf.find(task[1])]
            scores = scorer.score([(i, j, at) for i, j, _, at in needed])
            for (i, j, dist, _), score in zip(needed, scores, strict=True):
                if score.confirmed(scorer.min_correlation, max_residual):
                    links[(i, j)] = (dist, score.correlation)
                    uf.union(i, j)
            registered += len(needed)
            bar.update(len(batch))
    bar.close()
    return registered
