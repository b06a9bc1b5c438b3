"""Calibrated confidence: temperature scaling, calibration metrics, and the selective-prediction threshold.

Everything here works on plain arrays: ``logits`` (N, K) float, ``targets`` (N,) int, and
``confidence`` (N,) = the largest softmax probability. Nothing here knows about models.

- Temperature scaling (Guo et al., 2017): ``p = softmax(z / T)`` with the one scalar ``T > 0``
  that minimises the negative log-likelihood on held-out data. It never changes the argmax.
- ECE: expected calibration error over equal-width confidence bins,
  ``sum_b |B_b| / N * |acc(B_b) - conf(B_b)|`` (bins ``(lo, hi]``).
  On a few hundred images part of it is sampling noise: :func:`ece_of_a_perfect_model` says how much.
- Brier score: ``mean_i sum_k (p_ik - y_ik)^2`` (the multi-class form; 0 is perfect, 2 the worst).
- Risk-coverage: keep the images whose confidence is at least ``t``; coverage is the share kept,
  selective accuracy the accuracy of those kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

ECE_BINS = 15
THRESHOLD_MARGIN = 1e-4  # far above float runtimes' differences (1e-6), far below a confidence's spread
TEMPERATURE_RANGE = (0.05, 20.0)  # log-space search bounds: wide enough for any sane network


def calibrated_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / T) along the class axis, in float64."""
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def negative_log_likelihood(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean ``-log softmax(z / T)[y]`` (computed with log-softmax: no log(0))."""
    log_p = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return float(-log_p[np.arange(len(targets)), targets].mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature minimising the NLL of ``logits`` on ``targets`` (bounded 1-D search over log T).

    NLL is convex in 1/T, so a bounded scalar search finds the global minimum.
    """
    logits, targets = np.asarray(logits, dtype=np.float64), np.asarray(targets)
    if len(targets) == 0:
        raise ValueError("fit_temperature needs at least one sample")
    low, high = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, targets, float(np.exp(log_t))),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE with ``bins`` equal-width bins of the top-1 confidence."""
    table = reliability_table(probs, targets, bins)
    return float(sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in table) / max(len(targets), 1))


def reliability_table(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per non-empty bin ``(lo, hi]``: its bounds, count, mean confidence and accuracy."""
    probs, targets = np.asarray(probs), np.asarray(targets)
    confidence, correct = probs.max(1), probs.argmax(1) == targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)  # (lo, hi]
    rows = []
    for b in range(bins):
        members = which == b
        if members.any():
            rows.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "count": int(members.sum()),
                    "confidence": float(confidence[members].mean()),
                    "accuracy": float(correct[members].mean()),
                }
            )
    return rows


def ece_of_a_perfect_model(probs: np.ndarray, bins: int = ECE_BINS, draws: int = 200, seed: int = 0) -> float:
    """The ECE a *perfectly calibrated* model with these confidences would show on this many images.

    Each image is right with probability equal to its confidence (a perfectly calibrated model);
    the mean ECE over ``draws`` such draws is the part of a measured ECE that is sampling noise.
    Sparse bins make it large: 20 images at confidence 0.7 miss it by 0.08 on average.
    """
    confidence = np.asarray(probs).max(1)
    rng = np.random.default_rng(seed)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    conf_sums = np.bincount(which, weights=confidence, minlength=bins)
    correct = rng.random((draws, len(confidence))) < confidence  # (draws, N)
    hit_sums = np.stack([np.bincount(which, weights=row, minlength=bins) for row in correct])
    return float((np.abs(hit_sums - conf_sums).sum(1) / max(len(confidence), 1)).mean())


def brier_score(probs: np.ndarray, targets: np.ndarray) -> float:
    probs = np.asarray(probs, dtype=np.float64)
    onehot = np.eye(probs.shape[1])[np.asarray(targets)]
    return float(((probs - onehot) ** 2).sum(1).mean())


def calibration_metrics(probs: np.ndarray, targets: np.ndarray) -> dict:
    """NLL, ECE (15 bins), its noise floor and Brier score of ``probs`` (N, K), e.g. ``softmax(z / T)``."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets)
    picked = np.clip(probs[np.arange(len(targets)), targets], 1e-12, None)  # guards log(0) of float32 inputs
    return {
        "nll": float(-np.log(picked).mean()),
        "ece": expected_calibration_error(probs, targets),
        "ece_of_a_perfect_model": ece_of_a_perfect_model(probs),
        "brier": brier_score(probs, targets),
    }


# --------------------------------------------------------------------------- selective prediction


@dataclass(frozen=True)
class Selection:
    """What a confidence threshold keeps: ``coverage`` (share kept) and ``accuracy`` of those kept."""

    threshold: float
    coverage: float
    accuracy: float
    kept: int


def select(confidence: np.ndarray, correct: np.ndarray, threshold: float) -> Selection:
    """Keep the images with ``confidence >= threshold``; accuracy is NaN when nothing is kept."""
    kept = np.asarray(confidence) >= threshold
    n = int(kept.sum())
    accuracy = float(np.asarray(correct)[kept].mean()) if n else float("nan")
    return Selection(float(threshold), n / max(len(kept), 1), accuracy, n)


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, coverage, selective accuracy) at every distinct confidence, most confident first.

    Cut points sit only between distinct values: a threshold keeps all images tied at it.
    """
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    order = np.argsort(-confidence, kind="stable")
    conf_sorted, hits = confidence[order], np.cumsum(correct[order])
    kept = np.arange(1, len(order) + 1)
    last_of_tie = np.r_[conf_sorted[1:] != conf_sorted[:-1], True]
    return conf_sorted[last_of_tie], kept[last_of_tie] / len(order), hits[last_of_tie] / kept[last_of_tie]


def choose_threshold(confidence: np.ndarray, correct: np.ndarray, target_accuracy: float) -> Selection:
    """The lowest threshold (largest coverage) whose kept images are at least ``target_accuracy`` right.

    The threshold sits :data:`THRESHOLD_MARGIN` below the last kept confidence (or halfway to the
    next lower one, if closer), not on a photo's own value: the same photo run by another runtime
    (1e-6 off) keeps its verdict. If even
    the single most confident image misses the target, the threshold is just above the largest
    confidence: everything is unsure.
    """
    thresholds, coverage, accuracy = risk_coverage(confidence, correct)
    good = np.flatnonzero(accuracy >= target_accuracy)
    if len(good) == 0:
        return select(confidence, correct, float(np.nextafter(thresholds[0], np.inf)))
    cut = good[-1]
    below = thresholds[cut + 1] if cut + 1 < len(thresholds) else 0.0
    margin = min(THRESHOLD_MARGIN, (thresholds[cut] - below) / 2)
    return select(confidence, correct, float(thresholds[cut] - margin))


# --------------------------------------------------------------------------- figures


def plot_reliability(before: list[dict], after: list[dict], titles: tuple[str, str], path: str | Path) -> Path:
    """Two reliability diagrams side by side: accuracy per confidence bin against the diagonal."""
    from ..plots import plt, save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharey=True)
    for ax, table, title in zip(axes, (before, after), titles, strict=True):
        lows = [r["low"] for r in table]
        widths = [r["high"] - r["low"] for r in table]
        ax.bar(lows, [r["accuracy"] for r in table], widths, align="edge", edgecolor="k", alpha=0.8, label="accuracy")
        ax.bar(
            lows,
            [r["confidence"] - r["accuracy"] for r in table],
            widths,
            bottom=[r["accuracy"] for r in table],
            align="edge",
            color="tab:red",
            alpha=0.3,
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", title=title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_risk_coverage(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, marker: Selection | None = None
) -> Path:
    """Selective accuracy against coverage, one line per curve; ``marker`` is the stored threshold."""
    from ..plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(6, 4.6))
    for name, (coverage, accuracy) in curves.items():
        ax.plot(coverage, accuracy, label=name)
    if marker is not None and marker.kept:
        ax.scatter([marker.coverage], [marker.accuracy], color="k", zorder=3)
        ax.annotate(
            f"threshold {marker.threshold:.3f}\ncoverage {marker.coverage:.1%}, accuracy {marker.accuracy:.1%}",
            (marker.coverage, marker.accuracy),
            textcoords="offset points",
            xytext=(-150, -40),
        )
    ax.set(xlabel="coverage (share of images answered)", ylabel="accuracy of the answered", xlim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    return save_figure(fig, path)
