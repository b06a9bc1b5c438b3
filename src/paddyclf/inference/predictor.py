"""The :class:`Predictor` every tool runs, whatever the model file, and its :class:`Diagnosis`.

A predictor holds the class names, the input size, the normalisation, the
:class:`~paddyclf.trust.Trust` (temperature and thresholds) and a backend's ``run``; ``diagnose(batch)``
gives calibrated probabilities (B, K), the out-of-distribution score (B,) and one verdict per image.
Everything downstream (predict, evaluate, serve, benchmarks) is backend-agnostic. Predictors are made
by :func:`paddyclf.inference.load_predictor` (:mod:`.loading`), for a checkpoint or any export.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..data import Normalization
from ..trust import Trust, verdicts
from ..trust.calibration import calibrated_probabilities
from ..trust.ood import FEATURE_SCORES, SCORES, build_score


@dataclass
class Diagnosis:
    """Per image of a batch: calibrated probabilities (B, K), OOD score (B,) or None, verdict."""

    probabilities: np.ndarray
    ood_scores: np.ndarray | None
    statuses: list[str]

    def scores(self) -> list[float | None]:
        """The OOD score of each image as a float, or None for each when the model has no score."""
        if self.ood_scores is None:
            return [None] * len(self.statuses)
        return [float(s) for s in self.ood_scores]


@dataclass
class Predictor:
    classes: list[str]
    image_size: int
    norm: Normalization
    backend: str
    trust: Trust
    _run: Callable[[torch.Tensor], dict[str, np.ndarray]]  # (N, 3, S, S) -> {"logits", ["ood_score"], ["features"]}
    seed: int = 42  # the training seed: splits a metadata.csv without a split column the same way
    statistics: dict | None = None  # the checkpoint's OOD feature statistics (PyTorch only)

    def outputs(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        """``logits`` (B, K); ``ood_score`` (B,) when the model has one; ``features`` (B, C) on PyTorch."""
        return self._run(images)

    def logits(self, images: torch.Tensor) -> np.ndarray:
        return self.outputs(images)["logits"]

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        return calibrated_probabilities(logits, self.trust.temperature).astype(np.float32)

    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        return self.calibrated(self.logits(images))

    def all_scores(self, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every OOD score these outputs allow: MSP and energy from the logits, Mahalanobis from the
        features (PyTorch), and the shipped score exactly as the runtime computed it."""
        logits = torch.from_numpy(out["logits"]).float()
        features = torch.from_numpy(out["features"]).float() if "features" in out else None
        scores = {}
        for name in SCORES:
            if name in FEATURE_SCORES and (features is None or not self.statistics):
                continue
            with torch.no_grad():
                scores[name] = build_score(name, self.trust.temperature, self.statistics)(logits, features).numpy()
        if "ood_score" in out:
            scores[self.trust.ood_score] = out["ood_score"]
        return scores

    def diagnose(self, images: torch.Tensor) -> Diagnosis:
        out = self.outputs(images)
        probs = self.calibrated(out["logits"])
        scores = out.get("ood_score")
        return Diagnosis(probs, scores, verdicts(probs, scores, self.trust))
