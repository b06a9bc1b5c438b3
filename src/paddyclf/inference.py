"""Run a trained model: a checkpoint on PyTorch, or an exported file on its runtime (:mod:`paddyclf.runtimes`).

Both give a :class:`Predictor` with the class names, the input size, the normalisation, the
:class:`~paddyclf.trust.Trust` (temperature and thresholds) and ``diagnose(batch)``: calibrated
probabilities (B, K), the out-of-distribution score (B,) and one verdict per image. Everything
downstream (predict, evaluate, benchmarks) is backend-agnostic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .calibration import calibrated_probabilities
from .checkpoint import class_names, load_checkpoint
from .data import Normalization
from .errors import UserError
from .ood import FEATURE_SCORES, SCORES, build_score
from .runtimes import ONNX_METADATA_KEY, RUNTIMES, SUFFIX_RUNTIMES, is_torchscript
from .trust import Trust, checkpoint_trust, trusted_model, verdicts

__all__ = ["ONNX_METADATA_KEY", "Diagnosis", "Predictor", "load_predictor", "torch_predictor"]


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


def torch_predictor(checkpoint: str | Path, device: torch.device | None = None) -> Predictor:
    ckpt = load_checkpoint(checkpoint)
    model = trusted_model(ckpt).to(device or "cpu")
    has_score = model.score is not None

    @torch.no_grad()
    def run(images: torch.Tensor) -> dict[str, np.ndarray]:
        logits, features, score = model.forward_all(images.to(next(model.parameters()).device))
        out = {"logits": logits.float().cpu().numpy(), "features": features.float().cpu().numpy()}
        if has_score:
            out["ood_score"] = score.float().cpu().numpy()
        return out

    return Predictor(
        class_names(ckpt["label2id"]),
        ckpt["config"]["image_size"],
        Normalization(**ckpt["normalization"]),
        "torch",
        checkpoint_trust(ckpt),
        run,
        ckpt.get("seed", 42),
        ckpt.get("ood_statistics"),
    )


def load_predictor(path: str | Path, backend: str | None = None, threads: int | None = None) -> Predictor:
    """The predictor of any model file, by its type: a checkpoint (``.pt``) runs on PyTorch, an export on
    its runtime (``.onnx`` ONNX Runtime, ``.xml`` OpenVINO, ``.tflite`` LiteRT, ``.ts`` or an exported
    ``.pt`` TorchScript). ``backend``, when given, must be that runtime."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Model file {path} not found.")
    runtime = SUFFIX_RUNTIMES.get(path.suffix.lower())
    if runtime is None and is_torchscript(path):
        runtime = "torchscript"
    runtime = runtime or "torch"
    if backend is not None and backend != runtime:
        raise UserError(
            f"--backend {backend} cannot run {path}: a {path.suffix or 'suffix-less'} file runs on {runtime} "
            f"(export one for {backend} with `paddyclf export --format ...`)."
        )
    if runtime == "torch":
        if threads:
            torch.set_num_threads(threads)
        return torch_predictor(path)
    return RUNTIMES[runtime](path, threads)
