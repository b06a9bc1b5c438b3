"""The dense-correlation filter between the hash candidates and registration (the audit's stage 1b).

A 64-bit perceptual hash cannot tell two thin leaves on white paper apart: most of either image is
the same paper, and among 500 generated lab photos three pairs in four were within the hash
threshold (961 distinct pairs at distance 0). Registering every such pair (stage 2, a few
milliseconds each) grows with the square of the photos. This filter drops most of those pairs with
one small matrix product per block of images.

Each image is described by unit vectors of its grey thumbnail, ``SIDE`` x ``SIDE`` pixels (box
filtered, centred, L2-normalised, so their dot product is the normalised cross-correlation):

* rows ``0..7``: the whole image under the 8 symmetries of the square (:data:`.symmetry.D4`);
* rows ``8..``: a ``GRID`` x ``GRID`` grid of 90% crops (identity orientation).

The score of an ordered pair (a, b) is the best correlation of a's whole image or one of its crops
with b's whole image under any symmetry, ``max_{q in whole(a)[0] + crops(a), t} q . whole(b)[t]``;
a pair's score is the larger of its two orders (either may be the crop of the other).

How high must a copy score? That depends on the image: a smooth leaf on paper still correlates at
0.99 with itself shifted by half a grid step, a textured field photo at 0.9. Each image therefore
carries a **floor**, measured on itself: the worst correlation of a 90% crop taken half-way between
grid positions (the worst place a copy's crop can fall) with the nearest grid crop. A pair passes
when its score is at least ``min(floor(a), floor(b)) - MARGIN``. On 400 generated lab photos and
400 field photos with planted copies (mirror, rotation, JPEG 50, half size, 90% crop) every copy
passed at a margin of 0.02, and 5.9% of the distinct lab pairs did (no distinct field pair).

5.9% of all pairs still grows with the square of the photos. So a pair must also be among the
``NEIGHBOURS`` best-scoring pairs of one of its two images: a photo has few copies, and the
registrations then grow linearly. Among 2,000 lab photos (plus copies) the copy of a source ranked
at most 3rd among the source's pairs, or the source among the copy's, except for 90% crops (up to
67th: distinct leaves in the same pose score as high as a crop). A crop still joins its source's
group through the source's other copies; on 500 lab photos the groups were the same with 8 and 32
neighbours. ``paddyclf benchmark dedupe --scaling`` measures the whole curve (docs/BENCHMARKS.md
section 4).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .symmetry import transposed

SIDE = 16  # thumbnail side of each descriptor: 256 numbers
GRID = 5  # GRID x GRID crops at 90%: neighbours 2.5% of the image apart
CROP_SCALE = 0.9
MARGIN = 0.025  # below the pair's floor; 0.02 kept every planted copy (module docstring)
NEIGHBOURS = 16  # pairs kept per image, its best-scoring: what makes the registrations grow linearly
ORIENTATIONS = 8
BLOCK_ROWS = 32  # images per matrix product: (32 x 26) x (8 x N) float32 scores, 66 MB at N = 2,500


def grid_boxes(width: int, height: int, steps: int = GRID, halfway: bool = False) -> list[tuple[int, int, int, int]]:
    """``steps`` x ``steps`` boxes of 90% of the image (left, top, right, bottom), row by row; with
    ``halfway`` the (steps - 1)^2 boxes half-way between those."""
    cw, ch = round(width * CROP_SCALE), round(height * CROP_SCALE)
    xs, ys = np.linspace(0, width - cw, steps), np.linspace(0, height - ch, steps)
    if halfway:
        xs, ys = (xs[1:] + xs[:-1]) / 2, (ys[1:] + ys[:-1]) / 2
    xs, ys = xs.round().astype(int), ys.round().astype(int)
    return [(int(x), int(y), int(x) + cw, int(y) + ch) for y in ys for x in xs]


def unit_thumbnail(grey: Image.Image) -> np.ndarray:
    """(SIDE * SIDE,) float32: the box-filtered thumbnail, centred and scaled to unit length."""
    pixels = np.asarray(grey.resize((SIDE, SIDE), Image.Resampling.BOX), dtype=np.float32).ravel()
    pixels = pixels - pixels.mean()
    return pixels / (float(np.linalg.norm(pixels)) + 1e-6)


def dense_descriptors(grey: Image.Image) -> tuple[np.ndarray, float]:
    """((8 + GRID^2, SIDE^2) float16 descriptors, floor) of a grey image (see the module docstring).

    The whole image is resized once, to a square 4 x SIDE wide, and each of its 8 views reduced from
    there: 4 x 4 boxes are the same whichever way the square is turned, where the boxes of an odd
    size (200 / 16 = 12.5 pixels) are not."""
    square = grey.resize((4 * SIDE, 4 * SIDE), Image.Resampling.BOX)
    whole = [unit_thumbnail(transposed(square, t)) for t in range(ORIENTATIONS)]
    crops = np.stack([unit_thumbnail(grey.crop(box)) for box in grid_boxes(*grey.size)])
    halfway = np.stack([unit_thumbnail(grey.crop(box)) for box in grid_boxes(*grey.size, halfway=True)])
    floor = float((halfway @ crops.T).max(axis=1).min())
    return np.concatenate([np.stack(whole), crops]).astype(np.float16), floor


def _directed_scores(queries: np.ndarray, table: np.ndarray) -> np.ndarray:
    """(rows, queries_per_row * 8, cols) float32: the correlation of each row image's whole view
    (query 0) or crop (query 1 + k), ``queries`` (rows, queries_per_row, side^2), with each column
    image's whole view under each symmetry, ``table`` (8, cols, side^2), at ``query * 8 + symmetry``.
    One matrix product, laid out so that the best over the middle axis is an elementwise maximum of
    contiguous rows (a reduction over a short last axis is several times slower in NumPy)."""
    products = queries.reshape(-1, queries.shape[-1]) @ table.reshape(-1, table.shape[-1]).T
    return products.reshape(len(queries), -1, table.shape[1])


def _column_index(columns: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct values of ``columns``, sorted; each entry's position among them), without a sort."""
    present = np.zeros(n, dtype=bool)
    present[columns] = True
    position = np.cumsum(present) - 1
    return np.flatnonzero(present), position[columns]


def pair_scores(
    descriptors: np.ndarray, pairs: np.ndarray, at_least: np.ndarray | None = None, block: int = BLOCK_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """Score of each pair ``(i, j)`` of ``pairs`` (P, 2), the larger of its two directions, and where
    it was found: (P,) float32 and (P, 3) int ``(direction, query, symmetry)``. Direction 0 matched a
    view of ``i`` (query 0: whole, 1 + k: crop k) with ``j`` under ``D4[symmetry]``; direction 1 the
    other way round. With ``at_least`` (P,), where is only looked up for the pairs that reach it (the
    others keep zeros): few do.

    Pairs are taken a block of first images at a time; each block is one matrix product against the
    images it is paired with, so a dense candidate set (lab photos) runs as a blocked all-pairs
    product and a sparse one (field photos) costs little. The float32 table of every image's 8 views
    is made once; a block paired with most images uses all of it rather than a gathered copy.
    """
    scores = np.full(len(pairs), -1.0, dtype=np.float32)
    found_at = np.zeros((len(pairs), 3), dtype=np.int64)
    if not len(pairs):
        return scores, found_at
    n = len(descriptors)
    table = np.ascontiguousarray(descriptors[:, :ORIENTATIONS].astype(np.float32).transpose(1, 0, 2))
    query_views = [0, *range(ORIENTATIONS, descriptors.shape[1])]
    for direction, (first, second) in enumerate(((0, 1), (1, 0))):
        order = np.argsort(pairs[:, first], kind="stable")
        heads = pairs[order, first]
        firsts = np.unique(heads)
        bounds = list(np.searchsorted(heads, firsts)) + [len(order)]
        for b in range(0, len(firsts), block):
            chunk = order[bounds[b] : bounds[min(b + block, len(firsts))]]
            rows = firsts[b : b + block]
            row_at = np.searchsorted(rows, pairs[chunk, first])
            cols, col_at = _column_index(pairs[chunk, second], n)
            if len(cols) > n // 2:  # most images: a few unused columns cost less than copying the rest
                cols_table, col_at = table, pairs[chunk, second]
            else:
                cols_table = table[:, cols]
            queries = descriptors[rows][:, query_views].astype(np.float32)
            products = _directed_scores(queries, cols_table)
            best = products.max(axis=1)[row_at, col_at]
            better = best > scores[chunk]
            if at_least is not None:
                better &= best >= at_least[chunk]
            scores[chunk] = np.maximum(scores[chunk], best)
            where = products[row_at[better], :, col_at[better]].argmax(axis=1)  # the first best, as max finds it
            found_at[chunk[better]] = np.stack(
                [np.full(better.sum(), direction), where // ORIENTATIONS, where % ORIENTATIONS], axis=1
            )
    return scores, found_at


def nearest(pairs: np.ndarray, scores: np.ndarray, neighbours: int) -> np.ndarray:
    """(P,) bool: the pairs among the ``neighbours`` best-scoring pairs of either of their images."""
    keep = np.zeros(len(pairs), dtype=bool)
    for side in (0, 1):
        order = np.lexsort((-scores, pairs[:, side]))  # by image, best score first
        heads = pairs[order, side]
        first = np.searchsorted(heads, heads)  # where each image's run starts
        keep[order[np.arange(len(order)) - first < neighbours]] = True
    return keep


def passing(
    descriptors: np.ndarray,
    floors: np.ndarray,
    pairs: np.ndarray,
    margin: float = MARGIN,
    neighbours: int | None = NEIGHBOURS,
) -> tuple[np.ndarray, np.ndarray]:
    """Which pairs ``(i, j)`` score at least ``min(floor_i, floor_j) - margin`` and, unless
    ``neighbours`` is None, are among the ``neighbours`` best of those of ``i`` or of ``j``: (P,) bool,
    and where each pair's score was found (see :func:`pair_scores`)."""
    if not len(pairs):
        return np.zeros(0, dtype=bool), np.zeros((0, 3), dtype=np.int64)
    at_least = np.minimum(floors[pairs[:, 0]], floors[pairs[:, 1]]) - margin
    scores, found_at = pair_scores(descriptors, pairs, at_least)
    keep = scores >= at_least
    if neighbours is not None:
        kept = np.nonzero(keep)[0]
        keep[kept] = nearest(pairs[kept], scores[kept], neighbours)
    return keep, found_at
