"""How a checkpoint learns when it does not know: the temperature, the OOD statistics and both thresholds.

``paddyclf train`` calls :func:`calibrate_checkpoint` on its best checkpoint; ``paddyclf calibrate``
(:func:`run_calibrate`) does the same for an existing one. The verdict they fit is in :mod:`.verdict`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..data import Normalization, load_label2id, load_splits, make_loader
from ..errors import UserError
from ..fileio import save_torch
from .calibration import calibrated_probabilities, calibration_metrics, choose_threshold, fit_temperature, select
from .ood import ACCEPT_RATE, acceptance_threshold, build_score, fit_feature_statistics
from .verdict import (
    DEFAULT_OOD_SCORE,
    DEFAULT_TARGET_ACCURACY,
    MIN_ERRORS_FOR_TEMPERATURE,
    Trust,
    check_trust_options,
)


@dataclass
class Outputs:
    """What a model gives for a loader: logits (N, K), pooled features (N, C), targets, dataset indices,
    and (from :func:`collect_outputs`) each batch's size and forward seconds."""

    logits: np.ndarray
    features: np.ndarray
    targets: np.ndarray
    indices: np.ndarray
    failures: list[str]
    batch_seconds: list[tuple[int, float]] = field(default_factory=list)

    def images_per_second(self, batch_size: int, warmup: int = 2, timed: int = 3) -> float | None:
        """Forward throughput over the full batches of ``batch_size`` after the first ``warmup`` of
        them, as ``measure_fps`` times random batches; None with fewer than ``timed`` such batches."""
        full = [seconds for images, seconds in self.batch_seconds if images == batch_size][warmup:]
        return batch_size * len(full) / sum(full) if len(full) >= timed else None


@torch.no_grad()
def collect_outputs(model: nn.Module, loader, device: torch.device, progress: bool = False, desc: str = "") -> Outputs:
    """Run ``model`` (a :class:`~paddyclf.models.PaddyClassifier`) over ``loader`` in eval mode, float32."""
    model.eval()
    logits, features, targets, indices, failures, seconds = [], [], [], [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress, dynamic_ncols=True):
        failures += batch.failures
        if batch.images is None:
            continue
        images = batch.images.to(device)
        start = time.perf_counter()
        z, f = model.forward_with_features(images)
        logits.append(z.float().cpu())  # the copy to the CPU waits for the device
        seconds.append((len(images), time.perf_counter() - start))
        features.append(f.float().cpu())
        targets.append(batch.labels)
        indices.append(batch.indices)
    if not logits:
        return Outputs(np.zeros((0, 0)), np.zeros((0, 0)), np.zeros(0, int), np.zeros(0, int), failures)
    arrays = (torch.cat(parts).numpy() for parts in (logits, features, targets, indices))
    return Outputs(*arrays, failures, seconds)


def fit_trust(
    train: Outputs,
    valid: Outputs,
    num_classes: int,
    target_accuracy: float = DEFAULT_TARGET_ACCURACY,
    unsure_below: float | None = None,
    ood_score: str = DEFAULT_OOD_SCORE,
) -> tuple[Trust, dict[str, torch.Tensor]]:
    """Fit the temperature (valid NLL), the OOD statistics (train features) and both thresholds (valid).

    With fewer than :data:`MIN_ERRORS_FOR_TEMPERATURE` mistakes on valid the temperature stays 1.
    The unsure threshold is chosen among the valid images the OOD threshold accepts, since only
    those can be answered ``ok``; ``unsure_below`` skips the search and is stored as given.
    """
    errors = int((valid.logits.argmax(1) != valid.targets).sum())
    # A split the model gets (almost) all right says nothing about how sure it should be: the NLL
    # keeps falling as T -> 0, and a tiny T would make every later mistake look certain.
    temperature = fit_temperature(valid.logits, valid.targets) if errors >= MIN_ERRORS_FOR_TEMPERATURE else 1.0
    statistics = fit_feature_statistics(train.features, train.targets, num_classes)
    score = build_score(ood_score, temperature, statistics)
    with torch.no_grad():
        valid_scores = score(torch.from_numpy(valid.logits), torch.from_numpy(valid.features)).numpy()
    ood_threshold = acceptance_threshold(valid_scores, ACCEPT_RATE)
    accepted = valid_scores <= ood_threshold
    probs = calibrated_probabilities(valid.logits, temperature)
    confidence, correct = probs.max(1), probs.argmax(1) == valid.targets
    if unsure_below is None:
        selection = choose_threshold(confidence[accepted], correct[accepted], target_accuracy)
    else:
        selection = select(confidence[accepted], correct[accepted], unsure_below)
    before = calibration_metrics(calibrated_probabilities(valid.logits), valid.targets)
    after = calibration_metrics(probs, valid.targets)
    trust = Trust(
        temperature=temperature,
        unsure_below=selection.threshold,
        target_accuracy=None if unsure_below is not None else target_accuracy,
        ood_score=ood_score,
        ood_threshold=ood_threshold,
        fit={
            "valid_images": int(len(valid.targets)),
            "valid_errors": errors,
            "train_images": int(len(train.targets)),
            "before": before,
            "after": after,
            "ood_accept_rate": ACCEPT_RATE,
            "coverage": selection.coverage,
            "selective_accuracy": None if math.isnan(selection.accuracy) else selection.accuracy,
        },
    )
    return trust, statistics


def describe_fit(trust: Trust) -> str:
    """One paragraph on what calibration found, for the training log and ``paddyclf calibrate``."""
    fit = trust.fit
    before, after = fit["before"], fit["after"]
    accuracy = "n/a" if fit["selective_accuracy"] is None else f"{fit['selective_accuracy']:.1%}"
    target = "" if trust.target_accuracy is None else f" (target {trust.target_accuracy:.0%})"
    return (
        f"Calibrated on {fit['valid_images']} valid images ({fit['valid_errors']} misclassified"
        + ("" if fit["valid_errors"] >= MIN_ERRORS_FOR_TEMPERATURE else ": too few to fit a temperature")
        + f"): temperature {trust.temperature:.3f} "
        f"(NLL {before['nll']:.4f} -> {after['nll']:.4f}, ECE {before['ece']:.4f} -> {after['ece']:.4f}); "
        f"unsure below {trust.unsure_below:.3f}: answers {fit['coverage']:.1%} of the accepted valid images "
        f"at {accuracy} accuracy{target}; out-of-distribution: {trust.ood_score} score above "
        f"{trust.ood_threshold:.4g} (accepts {fit['ood_accept_rate']:.0%} of valid)."
    )


# --------------------------------------------------------------------------- checkpoints


@dataclass
class Calibration:
    """A calibrated checkpoint, the model it was fitted with, and that model's outputs ("train", "valid")."""

    ckpt: dict
    model: nn.Module
    outputs: dict[str, Outputs]


def calibrate_checkpoint(
    ckpt: dict,
    train_samples: list,
    valid_samples: list,
    target_accuracy: float = DEFAULT_TARGET_ACCURACY,
    unsure_below: float | None = None,
    ood_score: str = DEFAULT_OOD_SCORE,
    batch_size: int = 32,
    num_workers: int = 0,
    device: torch.device | None = None,
    cache=None,
    progress: bool = False,
    valid_outputs: Outputs | None = None,
) -> Calibration:
    """``ckpt`` with ``"trust"`` and ``"ood_statistics"`` fitted on the samples (eval transform, no
    augmentation), as :class:`Calibration`.

    ``valid_outputs``: the model's outputs on ``valid_samples`` already (training's best validation);
    then only the train samples are run.
    """
    device = device or torch.device("cpu")
    model = model_from_checkpoint(ckpt).to(device)
    size, norm = ckpt["config"]["image_size"], Normalization(**ckpt["normalization"])
    outputs = {"valid": valid_outputs} if valid_outputs is not None else {}
    for name, samples in (("train", train_samples), ("valid", valid_samples)):
        if name in outputs:
            continue
        # photos the training run has already decoded into the cache are read memory-mapped, which
        # costs less than starting worker processes (measured: 1.4 s -> 1.2 s for 300 cached photos)
        workers = 0 if cache is not None and cache.holds(samples) else num_workers
        loader = make_loader(samples, size, norm, False, batch_size, workers, seed=0, cache=cache)
        outputs[name] = collect_outputs(model, loader, device, progress, f"calibrate ({name})")
        if len(outputs[name].targets) == 0:
            raise UserError(f"None of the {len(samples)} {name} images used for calibration could be read.")
    trust, statistics = fit_trust(
        outputs["train"], outputs["valid"], len(ckpt["label2id"]), target_accuracy, unsure_below, ood_score
    )
    return Calibration({**ckpt, "trust": trust.to_dict(), "ood_statistics": statistics}, model, outputs)


def run_calibrate(
    checkpoint,
    metadata,
    output,
    label2id=None,
    split: str = "valid",
    target_accuracy: float = DEFAULT_TARGET_ACCURACY,
    unsure_below: float | None = None,
    ood_score: str = DEFAULT_OOD_SCORE,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = False,
) -> Trust:
    """``paddyclf calibrate``: fit an existing checkpoint on ``metadata`` and write it to ``output`` (atomically)."""
    if Path(output).resolve() == Path(checkpoint).resolve():
        raise UserError(f"--output must be a new file; {checkpoint} is left untouched (got the same path).")
    check_trust_options(target_accuracy, unsure_below, ood_score)
    ckpt = load_checkpoint(checkpoint)
    if label2id is not None and load_label2id(label2id) != ckpt["label2id"]:
        raise UserError(f"--label2id {label2id} differs from the label map stored in {checkpoint}.")
    if split not in ("valid", "test"):
        raise UserError(f"--split must be valid or test (got {split!r}); the statistics always use train.")
    splits = load_splits(metadata, ckpt["label2id"], ckpt.get("seed", 42), required=("train", split))
    calibrated = calibrate_checkpoint(
        ckpt, splits["train"], splits[split], target_accuracy, unsure_below, ood_score, batch_size, num_workers,
        progress=progress,
    ).ckpt  # fmt: skip
    calibrated["trust"]["fit"].update(metadata=str(metadata), split=split)
    save_torch(output, calibrated)
    return Trust.from_dict(calibrated["trust"])
