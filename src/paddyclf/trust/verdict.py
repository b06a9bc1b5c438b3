"""When the model does not know: the verdict of every prediction, and the model that exports compute it with.

A fitted checkpoint holds ``"trust"`` (a JSON-able dict, also embedded in every export) and
``"ood_statistics"`` (tensors: the Mahalanobis buffers of :mod:`paddyclf.trust.ood`, about 150 kB)::

    {"temperature": T, "unsure_below": p, "target_accuracy": 0.98,
     "ood_score": "mahalanobis", "ood_threshold": s, "fit": {...what it was fitted on...}}

A prediction's verdict, from the calibrated probabilities ``softmax(z / T)`` and the OOD score:

- ``out_of_distribution`` when the score is above ``ood_threshold`` (accepts 95% of valid);
- else ``unsure`` when the top probability is below ``unsure_below``;
- else ``ok``.

A checkpoint without ``"trust"`` (written before this existed, or with ``--no-calibrate``) has
``T = 1`` and no thresholds: every readable image is ``ok``, exactly as before.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from ..checkpoint import model_from_checkpoint
from ..errors import UserError
from .ood import SCORES, build_score

OK, UNSURE, OUT_OF_DISTRIBUTION = "ok", "unsure", "out_of_distribution"
VERDICTS = (OK, UNSURE, OUT_OF_DISTRIBUTION)
MESSAGES = {
    OK: "",
    UNSURE: "not sure: take a closer photo of one leaf, in daylight",
    OUT_OF_DISTRIBUTION: "does not look like the training photos",
}
DEFAULT_TARGET_ACCURACY = 0.98
MIN_ERRORS_FOR_TEMPERATURE = 5  # with fewer valid mistakes NLL falls without bound as T -> 0
DEFAULT_OOD_SCORE = "mahalanobis"  # chosen by measurement: docs/BENCHMARKS.md, "Out-of-distribution"


@dataclass
class Trust:
    """Temperature and thresholds; the defaults are an uncalibrated model (everything ``ok``)."""

    temperature: float = 1.0
    unsure_below: float = 0.0
    target_accuracy: float | None = None
    ood_score: str | None = None
    ood_threshold: float | None = None
    fit: dict = field(default_factory=dict)

    @property
    def calibrated(self) -> bool:
        return bool(self.fit)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Trust:
        return cls(**data) if data else cls()


def verdicts(probs: np.ndarray, ood_scores: np.ndarray | None, trust: Trust) -> list[str]:
    """One of :data:`VERDICTS` per row of calibrated ``probs`` (N, K) and ``ood_scores`` (N,)."""
    confidence = np.asarray(probs).max(1)
    status = np.where(confidence < trust.unsure_below, UNSURE, OK).astype(object)
    if trust.ood_score is not None and ood_scores is not None:
        status[np.asarray(ood_scores) > trust.ood_threshold] = OUT_OF_DISTRIBUTION
    return status.tolist()


class TrustedModel(nn.Module):
    """A classifier plus its OOD score: (B, 3, H, W) -> (logits (B, K), score (B,)).

    This is what exports run, so every runtime computes the same score in the same graph.
    Without a score (an uncalibrated checkpoint) the score output is zeros.
    """

    def __init__(self, model: nn.Module, score: nn.Module | None = None) -> None:
        super().__init__()
        self.model, self.score = model, score

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, pooled feature, score)."""
        logits, features = self.model.forward_with_features(x)
        score = self.score(logits, features) if self.score is not None else logits.new_zeros(len(logits))
        return logits, features, score

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, _, score = self.forward_all(x)
        return logits, score


def checkpoint_trust(ckpt: dict) -> Trust:
    return Trust.from_dict(ckpt.get("trust"))


def score_module(ckpt: dict, name: str | None = None) -> nn.Module | None:
    """The OOD score ``name`` (default: the checkpoint's chosen one) with the checkpoint's temperature/statistics."""
    trust = checkpoint_trust(ckpt)
    name = name or trust.ood_score
    if name is None:
        return None
    return build_score(name, trust.temperature, ckpt.get("ood_statistics"))


def trusted_model(ckpt: dict, model: nn.Module | None = None) -> TrustedModel:
    return TrustedModel(model if model is not None else model_from_checkpoint(ckpt), score_module(ckpt)).eval()


def check_trust_options(target_accuracy: float, unsure_below: float | None, ood_score: str) -> None:
    problems = trust_option_problems(target_accuracy, unsure_below, ood_score)
    if problems:
        raise UserError("Invalid options: " + "; ".join(problems) + ".")


def trust_option_problems(target_accuracy: float, unsure_below: float | None, ood_score: str) -> list[str]:
    problems = []
    if not 0 < target_accuracy <= 1:
        problems.append(f"--target-accuracy must be in (0, 1] (got {target_accuracy})")
    if unsure_below is not None and not 0 <= unsure_below <= 1:
        problems.append(f"--unsure-below must be in [0, 1] (got {unsure_below})")
    if ood_score not in SCORES:
        problems.append(f"--ood-score must be one of {', '.join(SCORES)} (got {ood_score!r})")
    return problems
