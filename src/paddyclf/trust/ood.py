"""Out-of-distribution scores: "does this photo look like the training photos?"

Every score is computed from what one forward pass already gives: the logits (B, K) and the
pooled feature (B, C) the classifier reads. Higher means *less* like the training photos.

- ``msp``: ``-max_k softmax(z / T)_k`` (Hendrycks & Gimpel, 2017).
- ``energy``: ``-T * logsumexp(z / T)`` (Liu et al., 2020).
- ``mahalanobis``: ``min_k (u - mu_k)^T S^-1 (u - mu_k)`` of the L2-normalised feature
  ``u = f / ||f||``, class means ``mu_k`` and one shared covariance ``S`` (Lee et al., 2018) of the
  train split's class-centred normalised features ``C``, shrunk towards a multiple of the identity
  and kept to its top ``r`` directions: ``S = a m I + (1 - a) U_r L_r U_r^T`` with ``m = tr(C)/p``,
  ``a`` = :data:`MAHALANOBIS_SHRINKAGE`, ``U_r L_r U_r^T`` the ``r`` = :data:`MAHALANOBIS_COMPONENTS`
  leading eigenpairs of ``C``. Then, with ``f = a m`` and ``d = u - mu_k``,
  ``d^T S^-1 d = ||d||^2 / f - sum_i w_i (u_i . d)^2`` and ``w_i = 1/f - 1/(f + (1 - a) l_i)``:
  a (C, r) matrix instead of a (C, C) one (147 kB instead of 1.3 MB in every export).
  Each choice was measured (docs/BENCHMARKS.md, "When the model does not know"): on raw features
  non-leaf AUROC was 0.81, normalised 0.96-0.98; with Ledoit-Wolf's own shrinkage (about 0.02:
  the best *covariance* estimate) the FPR at 95% TPR was 15-37%, with 0.5-0.9 it was 0-8% on both
  models measured (the low-variance directions the exact covariance trusts are where flat and
  noise images look most like leaves); 64 directions changed the full-rank distances by 4% (median)
  and the AUROC by at most 0.0002.

The scores are ``nn.Module`` s so that they run inside an exported graph (ONNX, TorchScript):
the exported model returns the score and every runtime gives the same verdict.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

ACCEPT_RATE = 0.95  # the threshold accepts this share of the valid images
THRESHOLD_MARGIN = 1e-4  # relative: far above float runtimes' differences (1e-6), far below the scores' spread
MAHALANOBIS_SHRINKAGE = 0.8  # middle of the 0.5-0.9 plateau measured on two rice5 models
MAHALANOBIS_COMPONENTS = 64  # leading covariance directions kept (128: 0.7% off full rank, 64: 4%)


class MaxSoftmaxScore(nn.Module):
    def __init__(self, temperature: float = 1.0, **_) -> None:
        super().__init__()
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return -(logits / self.temperature).softmax(1).amax(1)


class EnergyScore(MaxSoftmaxScore):
    def forward(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return -self.temperature * torch.logsumexp(logits / self.temperature, dim=1)


class MahalanobisScore(nn.Module):
    """Buffers ``means`` (K, C), ``components`` (C, r) = ``U_r``, ``weights`` (r,) = ``w``, ``inverse_floor`` = 1/f."""

    def __init__(
        self, means: torch.Tensor, components: torch.Tensor, weights: torch.Tensor, inverse_floor: torch.Tensor, **_
    ) -> None:
        super().__init__()
        self.register_buffer("means", means.float())
        self.register_buffer("components", components.float())
        self.register_buffer("weights", weights.float())
        self.register_buffer("inverse_floor", inverse_floor.float().reshape(()))

    def forward(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        u = nn.functional.normalize(features.float(), dim=1)  # (B, C)
        d = u.unsqueeze(1) - self.means.unsqueeze(0)  # (B, K, C)
        along = (d @ self.components).pow(2) @ self.weights  # (B, K): sum_i w_i (u_i . d)^2
        squared = d.pow(2).sum(-1) * self.inverse_floor - along
        return squared.clamp_min(0).amin(1)


SCORES: dict[str, type[nn.Module]] = {
    "msp": MaxSoftmaxScore,
    "energy": EnergyScore,
    "mahalanobis": MahalanobisScore,
}
FEATURE_SCORES = {"mahalanobis"}  # need the statistics of the train features


def shared_covariance(centred: np.ndarray) -> np.ndarray:
    """(C, C) maximum-likelihood covariance of centred rows (N, C): ``X^T X / N``.

    scikit-learn's ``empirical_covariance(X, assume_centered=True)``, written out so that training does
    not import scikit-learn for it (tests/test_trust.py checks the two agree).
    """
    return centred.T @ centred / len(centred)


def fit_feature_statistics(
    features: np.ndarray, targets: np.ndarray, num_classes: int, components: int = MAHALANOBIS_COMPONENTS
) -> dict[str, torch.Tensor]:
    """Class means and the shrunk, rank-``components`` shared covariance of the L2-normalised ``features`` (N, C)."""
    features = np.asarray(features, dtype=np.float64)
    features = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    targets = np.asarray(targets)
    missing = sorted(set(range(num_classes)) - set(targets.tolist()))
    if missing:
        raise ValueError(f"no training features for class id(s) {missing}")
    means = np.stack([features[targets == k].mean(0) for k in range(num_classes)])
    covariance = shared_covariance(features - means[targets])
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    keep = np.argsort(eigenvalues)[::-1][: min(components, len(eigenvalues))]
    floor = MAHALANOBIS_SHRINKAGE * np.trace(covariance) / len(covariance)
    floor = max(floor, 1e-12)  # all train features identical: any direction is far
    weights = 1 / floor - 1 / (floor + (1 - MAHALANOBIS_SHRINKAGE) * np.clip(eigenvalues[keep], 0, None))
    return {
        "means": torch.from_numpy(means).float(),
        "components": torch.from_numpy(eigenvectors[:, keep].copy()).float(),
        "weights": torch.from_numpy(weights).float(),
        "inverse_floor": torch.tensor(1 / floor, dtype=torch.float32),
    }


def build_score(name: str, temperature: float = 1.0, statistics: dict | None = None) -> nn.Module:
    """The score module ``name`` with its temperature or feature statistics."""
    if name not in SCORES:
        raise KeyError(f"unknown OOD score {name!r}; choose from {', '.join(SCORES)}")
    if name in FEATURE_SCORES and not statistics:
        raise ValueError(f"the {name} score needs feature statistics of the train split")
    return SCORES[name](temperature=temperature, **(statistics or {})).eval()


def acceptance_threshold(in_distribution_scores: np.ndarray, accept_rate: float = ACCEPT_RATE) -> float:
    """A score threshold accepting the lowest ``ceil(accept_rate * n)`` in-distribution scores.

    It lies just above the last accepted score (by :data:`THRESHOLD_MARGIN` of it, or halfway to the
    next score if that is closer), never on a photo's own score: runtimes a few ulps apart give that
    photo the same verdict.
    """
    scores = np.sort(np.asarray(in_distribution_scores, dtype=np.float64))
    accepted = min(len(scores), max(1, int(np.ceil(accept_rate * len(scores) - 1e-9))))
    last = scores[accepted - 1]
    step = THRESHOLD_MARGIN * max(abs(last), 1.0)
    if accepted < len(scores):
        step = min(step, (scores[accepted] - last) / 2)
    return float(last + step)


def detection_metrics(in_scores: np.ndarray, out_scores: np.ndarray, accept_rate: float = ACCEPT_RATE) -> dict:
    """AUROC (out-of-distribution = positive) and FPR at 95% TPR.

    FPR at 95% TPR is the share of out-of-distribution images still *accepted* by the threshold
    that accepts 95% of the in-distribution ones (the threshold the checkpoint ships).
    """
    from sklearn.metrics import roc_auc_score

    in_scores, out_scores = np.asarray(in_scores, dtype=np.float64), np.asarray(out_scores, dtype=np.float64)
    labels = np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))]
    threshold = acceptance_threshold(in_scores, accept_rate)
    return {
        "auroc": float(roc_auc_score(labels, np.r_[in_scores, out_scores])),
        "fpr_at_95_tpr": float((out_scores <= threshold).mean()),
        "in_images": len(in_scores),
        "out_images": len(out_scores),
    }
