"""Where a training run stands: what an exact ``--resume`` needs beyond model, optimizer and scheduler."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .engine import EpochResult


@dataclass
class RunState:
    epoch: int = 1  # the epoch in progress (or the next one)
    partial: EpochResult | None = None  # sums of the batches already done in ``epoch``
    skip: int = 0  # training indices of ``epoch`` already consumed (per rank)
    best_f1: float = -1.0
    best_epoch: int = 0
    stale: int = 0
    history: dict = field(default_factory=lambda: defaultdict(list))
