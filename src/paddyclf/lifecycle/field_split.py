"""Which reviewed field photos a retrained model may learn from, and which only judge it.

The audit groups the base dataset's photos and the reviewed photos together (copies and near-copies
in one group). Then, per group of reviewed photos:

- a copy of a base **valid or test** photo is *excluded*: training on it would leak the photos the
  models are selected and judged on, and judging on it would count a base photo twice;
- a copy of a base **train** photo may be trained on, never tested on (the champion learned it);
- a group that was in the **field test** split before stays there, and any member that was trained
  on before is kept out of training from now on: the field test split only grows;
- a group that was trained on before stays in train;
- a new group joins the field test split when ``u(group) < fraction``, with ``u`` the first 32 bits
  of the sha256 of its smallest photo hash over 2^32: the same photos give the same split on every
  machine and every run, and about ``fraction`` of the new groups test.

The assignment (photo sha256 -> train | field_test | excluded) is kept with each registered version
(``report/field_assignment.csv``); the next retrain starts from its champion's.
"""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

TRAIN, FIELD_TEST, EXCLUDED = "train", "field_test", "excluded"
ROLES = (TRAIN, FIELD_TEST, EXCLUDED)


@dataclass(frozen=True)
class ReviewedPhoto:
    sha256: str
    group: str  # the audit's group (shared with base photos it copies)


def unit_interval(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 2**32


def assign_roles(
    photos: list[ReviewedPhoto],
    base_splits_of_group: dict[str, set[str]],
    previous: dict[str, str],
    fraction: float,
) -> dict[str, str]:
    """Photo sha256 -> role, by the rules of the module docstring.

    ``base_splits_of_group``: the base splits (train / valid / test) each group holds;
    ``previous``: the earlier assignment (sha256 -> role), empty for a first retrain."""
    members: dict[str, list[str]] = defaultdict(list)
    for photo in photos:
        members[photo.group].append(photo.sha256)
    roles = {}
    for group, shas in members.items():
        base = base_splits_of_group.get(group, set())
        before = {previous.get(sha) for sha in shas}
        if base & {"valid", "test"}:
            role = EXCLUDED
        elif "train" in base:
            role = TRAIN
        elif FIELD_TEST in before:
            role = FIELD_TEST
        elif TRAIN in before:
            role = TRAIN
        else:
            role = FIELD_TEST if unit_interval(min(shas)) < fraction else TRAIN
        for sha in shas:
            # a photo trained on before, now a copy of a field-test photo, is not trained on again
            roles[sha] = EXCLUDED if role == FIELD_TEST and previous.get(sha) == TRAIN else role
    return roles


def read_assignment(path: Path | None) -> dict[str, str]:
    if path is None or not Path(path).is_file():
        return {}
    with Path(path).open(newline="", encoding="utf-8") as fh:
        return {row["photo_sha256"]: row["role"] for row in csv.DictReader(fh) if row.get("role") in ROLES}


def assignment_rows(roles: dict[str, str]) -> list[dict]:
    return [{"photo_sha256": sha, "role": role} for sha, role in sorted(roles.items())]
