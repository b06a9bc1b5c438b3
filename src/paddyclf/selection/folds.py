"""Grouped, stratified folds: no duplicate group is ever on both sides of a fold.

The contract, in scikit-learn's terms: :func:`grouped_folds` assigns every photo a test fold per
repeat with :class:`~sklearn.model_selection.StratifiedGroupKFold` (shuffled, ``random_state =
seed + repeat``), so each group of duplicates lies in exactly one fold and every fold holds about
the same share of each class. :func:`fold_roles` turns one repeat's assignment into the three
roles of a run: fold ``k`` is tested on, fold ``k + 1`` (mod K) validates (early stopping,
calibration), the other K - 2 folds train.

The groups come from the metadata's ``group`` column (written by ``paddyclf prepare``) or, when it
has none, from the audit's duplicate finder (:func:`dataset_groups`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.metadata import Sample, check_files_exist, read_metadata, resolve_samples
from ..errors import UserError

MIN_FOLDS = 3  # one tests, one validates, at least one trains
ROLES = ("train", "valid", "test")


@dataclass(frozen=True)
class Photo:
    """One row of the cross-validated pool: its file, label and duplicate group."""

    path: Path
    label: str
    group: str


def read_pool(
    metadata: str | Path, label2id: dict[str, int], log: Callable[[str], None] = print
) -> tuple[list[Photo], int]:
    """The photos cross-validation may use, and how many ``test`` rows were held out.

    Rows of split ``test`` never enter a fold: a given test split stays untouched for the final
    word. Rows of train, valid or no split are pooled. Unknown labels, unknown split values and
    missing files are refused here, before any fold is trained.
    """
    rows = read_metadata(metadata)
    tagged = resolve_samples(rows, Path(metadata).resolve().parent, label2id)
    pool = [
        Photo(s.path, row["label"], row.get("group", ""))
        for (s, split), row in zip(tagged, rows, strict=True)
        if split != "test"
    ]
    held_out = len(rows) - len(pool)
    if not pool:
        raise UserError(f"{metadata} has no train or valid rows to cross-validate.")
    check_files_exist([Sample(p.path, 0) for p in pool])
    if held_out:
        log(f"Kept the {held_out} test photos of {metadata} out of every fold.")
    return pool, held_out


def dataset_groups(pool: list[Photo], cache_dir: str | Path | None, log: Callable[[str], None] = print) -> list[str]:
    """One group id per photo: the ``group`` column when every row has one, else the audit's groups.

    An unreadable photo (the audit cannot fingerprint it) is a group of its own.
    """
    if all(photo.group for photo in pool):
        return [photo.group for photo in pool]
    from ..data.audit import audit_images

    log(f"The metadata has no group column: grouping duplicates of {len(pool)} photos with the audit ...")
    audit = audit_images([p.path for p in pool], [p.label for p in pool], [""] * len(pool), cache_dir, progress=False)
    groups = [str(im.group) if im.group >= 0 else f"unreadable-{k}" for k, im in enumerate(audit.images)]
    grouped = audit.duplicate_groups()
    log(f"Grouped {sum(len(g) for g in grouped)} photos into {len(grouped)} duplicate groups; each stays in one fold.")
    return groups


def grouped_folds(labels: Sequence[str], groups: Sequence[str], n_folds: int, repeats: int, seed: int) -> np.ndarray:
    """(repeats, N) int array: the test fold of every photo in every repeat.

    :class:`~sklearn.model_selection.StratifiedGroupKFold` with ``shuffle=True`` and ``random_state
    = seed + repeat``: a group never spans two folds, and each fold's class mix follows the whole's
    as closely as the groups allow.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if n_folds < MIN_FOLDS:
        raise UserError(f"--folds must be >= {MIN_FOLDS}: one fold tests, one validates, the rest train.")
    if repeats < 1:
        raise UserError(f"--repeats must be >= 1 (got {repeats}).")
    distinct = len(set(groups))
    if distinct < n_folds:
        raise UserError(f"--folds {n_folds} needs at least {n_folds} distinct photo groups; the data have {distinct}.")
    labels_arr, groups_arr = np.asarray(labels), np.asarray(groups)
    assignment = np.empty((repeats, len(labels)), dtype=np.int64)
    for repeat in range(repeats):
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed + repeat)
        with warnings.catch_warnings():  # a class rarer than the folds: stratified as far as it goes
            warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
            for fold, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels_arr, groups_arr)):
                assignment[repeat, test] = fold
    return assignment


def fold_roles(test_fold: np.ndarray, fold: int, n_folds: int) -> np.ndarray:
    """Per photo, its role in run ``fold``: ``test`` (fold k), ``valid`` (fold k+1 mod K) or ``train``."""
    roles = np.full(len(test_fold), "train", dtype=object)
    roles[test_fold == (fold + 1) % n_folds] = "valid"
    roles[test_fold == fold] = "test"
    return roles


def groups_crossing(roles: Sequence[str], groups: Sequence[str]) -> list[str]:
    """The groups found in more than one role (empty for a correct split)."""
    seen: dict[str, set[str]] = {}
    for role, group in zip(roles, groups, strict=True):
        seen.setdefault(group, set()).add(role)
    return sorted(g for g, r in seen.items() if len(r) > 1)
