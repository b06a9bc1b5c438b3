"""The review queue: which stored diagnoses an expert should look at first (plain functions, NumPy, no HTTP).

An expert cannot check thousands of answers, so the queue puts first the answers most likely wrong
(uncertainty sampling), each photo once. Every strategy turns a stored row into a **priority**
(higher: reviewed sooner); ties go to the older diagnosis (smaller id). With ``p(1) >= p(2) >= ...``
the row's calibrated probabilities, sorted:

- ``least_confidence``: ``1 - p(1)``, the probability that the answer is wrong if the model is
  calibrated (which ``train`` fits it to be).
- ``margin``: ``1 - (p(1) - p(2))``, i.e. the smallest gap between the two best classes first.
- ``entropy``: ``H(p) = -sum_k p(k) ln p(k)`` in nats (0 log 0 = 0).
- ``ood``: the stored out-of-distribution score (higher: less like the training photos). The photos
  the model answered (status ``ok`` or ``unsure``) come first, highest score first: the most unusual
  photos it still answered, where a wrong answer hides. The photos its gate refused
  (``out_of_distribution``) come after them, lowest score first (those closest to the threshold are
  the likeliest rice leaves the gate refused); rows without a score come last.
- ``random``: a uniform key in [0, 1) from the row's id and a seed (SplitMix64), so the order is
  reproducible and does not change when rows are added: the baseline of ``paddyclf benchmark
  review-queue``.

A row stores every class's probability (``probabilities``); an older row only its ``top_k``. For
those, ``p(1)`` and ``p(2)`` are exact, and the entropy spreads the missing mass ``1 - sum(top_k)``
evenly over the classes not listed (the largest entropy the row allows).

**Copies count once.** Rows in one copy group (the same photo sent twice, or a resized, re-encoded,
flipped or rotated copy: :func:`copy_groups`, on :mod:`paddyclf.data.dedupe`'s fingerprints)
collapse to one queue entry, the member with the highest priority, which lists the others
(:func:`collapse`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..data.dedupe import UnionFind, candidate_pairs

STRATEGIES = ("least_confidence", "margin", "entropy", "ood", "random")
# The queue's default, chosen by measurement: `paddyclf benchmark review-queue` on rice5 (leak-free
# split, 150 training photos, 10 epochs, --recipe field, training seeds 0 1 2; docs/BENCHMARKS.md
# section 12, docs/review_queue_benchmark.md). Mistake recall in the first 10% of the queue: margin
# 47.5% ± 3.5%, least_confidence 47.0% ± 2.1%, entropy 45.5% ± 5.1%, ood 36.7% ± 5.8%, random
# 8.4% ± 2.8%. The three uncertainty orders are within seed noise of each other; margin had the
# highest mean, the benchmark's rule (`best_strategy`).
DEFAULT_STRATEGY = "margin"
RANDOM_SEED = 0  # the seed of the served `random` order
# Hash bits (of 64) within which two photos are copies, without dedupe's stage 2: flips, 90-degree
# rotations, JPEG re-encoding and resizing measured at most 4 (dedupe.HASH_THRESHOLD's comment); its 12
# bits also pass 90% crops, but then distinct photos of one layout meet too and need stage 2.
COPY_BITS = 4
OUT_OF_DISTRIBUTION = "out_of_distribution"  # the verdict's name (paddyclf.trust), as stored


@dataclass(frozen=True)
class CopyKey:
    """What :func:`copy_groups` compares of one stored photo: its file hash, and from
    :class:`paddyclf.data.dedupe.Fingerprint` the decoded pixels' hash and the perceptual hashes."""

    photo_sha256: str
    pixel_sha1: str = ""  # empty: the photo could not be fingerprinted (it is then only its own copy)
    whole: np.ndarray | None = None  # (8,) uint64: whole-image phash under each flip/rotation
    crops: np.ndarray | None = None  # (9,) uint64: phash of each 90% grid crop


@dataclass(frozen=True)
class QueueEntry:
    """One place in the queue: ``index`` (a row of the input) stands for ``members`` (itself first)."""

    index: int
    priority: float
    members: tuple[int, ...]

    @property
    def copies(self) -> int:
        return len(self.members)


def sorted_probabilities(records: Sequence[dict], num_classes: int) -> np.ndarray:
    """(N, K) each row's calibrated probabilities, largest first, zero-padded to the longest row.

    ``probabilities`` when stored; else ``top_k`` plus the mass it leaves, ``1 - sum(top_k)``,
    spread evenly over the ``num_classes - len(top_k)`` classes it does not list.
    """
    rows = []
    for record in records:
        if record.get("probabilities"):
            p = np.asarray(record["probabilities"], dtype=np.float64)
        else:
            top = np.asarray([t["probability"] for t in record["top_k"]], dtype=np.float64)
            rest = num_classes - len(top)
            left = max(0.0, 1.0 - float(top.sum()))
            p = np.concatenate([top, np.full(rest, left / rest)]) if rest > 0 else top
        rows.append(np.sort(p)[::-1])
    width = max((len(p) for p in rows), default=1)
    out = np.zeros((len(rows), max(width, 2)))
    for i, p in enumerate(rows):
        out[i, : len(p)] = p
    return out


def splitmix64(values: np.ndarray, seed: int) -> np.ndarray:
    """Uniform floats in [0, 1) from integers: SplitMix64 of ``seed * 2^32 + value``, top 53 bits."""
    with np.errstate(over="ignore"):
        z = (np.asarray(values, dtype=np.uint64) + np.uint64(seed) * np.uint64(2**32)) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def priorities(
    strategy: str,
    probabilities: np.ndarray,
    ood_scores: np.ndarray,
    statuses: Sequence[str],
    ids: np.ndarray,
    seed: int = RANDOM_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """(priority, order): each row's priority under ``strategy`` (the formulas of this module's
    docstring) and the row indices in queue order. ``probabilities``: (N, K) sorted, largest first
    (:func:`sorted_probabilities`); ``ood_scores``: (N,), NaN where none; ``ids``: (N,) the rows' ids."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    p = np.asarray(probabilities, dtype=np.float64)
    ids = np.asarray(ids, dtype=np.int64)
    band = np.zeros(len(ids), dtype=np.int64)  # sorted first: the queue's bands, then -priority, then id
    if strategy == "least_confidence":
        priority = 1.0 - p[:, 0]
    elif strategy == "margin":
        priority = 1.0 - (p[:, 0] - p[:, 1])
    elif strategy == "entropy":
        safe = np.where(p > 0, p, 1.0)
        priority = -(p * np.log(safe)).sum(axis=1)
    elif strategy == "ood":
        scores = np.asarray(ood_scores, dtype=np.float64)
        refused = np.array([s == OUT_OF_DISTRIBUTION for s in statuses], dtype=bool)
        band = np.where(np.isnan(scores), 2, refused.astype(np.int64))
        priority = scores
        key = np.where(band == 1, scores, -scores)
        key = np.where(np.isnan(key), 0.0, key)
        return priority, np.lexsort((ids, key, band))
    else:
        priority = splitmix64(ids, seed)
    return priority, np.lexsort((ids, -priority, band))


def copy_groups(keys: Sequence[CopyKey], bits: int = COPY_BITS) -> np.ndarray:
    """(N,) a copy-group id per photo: photos are one group when they have the same file hash or
    the same decoded pixels, or their whole or crop perceptual hashes are within ``bits`` of a
    flip/rotation of the other's (:func:`paddyclf.data.dedupe.candidate_pairs`); groups are the
    connected components of those links."""
    n = len(keys)
    uf = UnionFind(n)
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        for exact in (f"file:{key.photo_sha256}", f"pixels:{key.pixel_sha1}" if key.pixel_sha1 else ""):
            if exact:
                uf.union(first.setdefault(exact, i), i)
    hashed = [i for i, key in enumerate(keys) if key.whole is not None and key.crops is not None]
    if len(hashed) > 1:
        whole = np.stack([keys[i].whole for i in hashed]).astype(np.uint64)
        crops = np.stack([keys[i].crops for i in hashed]).astype(np.uint64)
        for a, b, _ in candidate_pairs(whole, crops, bits):
            uf.union(hashed[a], hashed[b])
    roots = [uf.find(i) for i in range(n)]
    ids: dict[int, int] = {}
    return np.array([ids.setdefault(r, len(ids)) for r in roots], dtype=np.int64)


def collapse(order: Sequence[int], groups: np.ndarray, priority: np.ndarray) -> list[QueueEntry]:
    """The queue with each copy group once: its first member in ``order`` (the highest priority)
    stands for the group, listing the others in queue order."""
    members: dict[int, list[int]] = {}
    for i in order:
        members.setdefault(int(groups[i]), []).append(int(i))
    return [QueueEntry(m[0], float(priority[m[0]]), tuple(m)) for m in members.values()]


def build_queue(
    records: Sequence[dict],
    strategy: str,
    groups: np.ndarray,
    num_classes: int,
    seed: int = RANDOM_SEED,
) -> list[QueueEntry]:
    """The review queue of stored ``records`` (as :func:`paddyclf.serve.store.row_to_record` gives
    them): ordered by ``strategy``, one entry per copy group (``groups``, e.g. :func:`copy_groups`).
    A group with a reviewed member leaves the queue: an expert has seen that photo."""
    if not records:
        return []
    probabilities = sorted_probabilities(records, num_classes)
    ood = np.array([np.nan if r.get("ood_score") is None else r["ood_score"] for r in records], dtype=np.float64)
    ids = np.array([r["id"] for r in records], dtype=np.int64)
    priority, order = priorities(strategy, probabilities, ood, [r["status"] for r in records], ids, seed)
    reviewed = {int(groups[i]) for i, r in enumerate(records) if r.get("reviewed_label")}
    kept = [int(i) for i in order if int(groups[i]) not in reviewed]
    return collapse(kept, groups, priority)
