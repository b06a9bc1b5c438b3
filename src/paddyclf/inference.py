"""Run a trained model: from a checkpoint (PyTorch) or an exported ONNX file (ONNX Runtime).

Both give a :class:`Predictor` with the class names, the input size, the normalisation, the
:class:`~paddyclf.trust.Trust` (temperature and thresholds) and ``diagnose(batch)``: calibrated
probabilities (B, K), the out-of-distribution score (B,) and one verdict per image. Everything
downstream (predict, evaluate, benchmarks) is backend-agnostic.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .calibration import calibrated_probabilities
from .checkpoint import class_names, first_line, load_checkpoint
from .data import Normalization
from .errors import UserError
from .ood import FEATURE_SCORES, SCORES, build_score
from .trust import Trust, checkpoint_trust, trusted_model, verdicts

ONNX_METADATA_KEY = "paddyclf"


@dataclass
class Diagnosis:
    """Per image of a batch: calibrated probabilities (B, K), OOD score (B,) or None, verdict."""

    probabilities: np.ndarray
    ood_scores: np.ndarray | None
    statuses: list[str]


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


def onnx_metadata(path: str | Path) -> dict:
    """The paddyclf metadata stored in an exported ONNX file (labels, image size, normalisation)."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise UserError(f"{path} is not a loadable ONNX model ({first_line(exc)}).") from None
    meta = session.get_modelmeta().custom_metadata_map
    if ONNX_METADATA_KEY not in meta:
        raise UserError(f"{path} has no paddyclf metadata; export it with `paddyclf export --format onnx`.")
    return {"session": session, **json.loads(meta[ONNX_METADATA_KEY])}


def onnx_predictor(path: str | Path, threads: int | None = None) -> Predictor:
    import onnxruntime as ort

    meta = onnx_metadata(path)
    session = meta["session"]
    if threads:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]

    def run(images: torch.Tensor) -> dict[str, np.ndarray]:
        values = session.run(None, {input_name: images.float().contiguous().numpy()})
        return dict(zip(output_names, values, strict=True))

    return Predictor(
        meta["classes"],
        meta["image_size"],
        Normalization(**meta["normalization"]),
        "onnxruntime",
        Trust.from_dict(meta.get("trust")),
        run,
        meta.get("seed", 42),
    )


def load_predictor(path: str | Path, backend: str | None = None) -> Predictor:
    """A checkpoint (``.pt``) runs on PyTorch, an ``.onnx`` file on ONNX Runtime."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Model file {path} not found.")
    backend = backend or ("onnxruntime" if path.suffix == ".onnx" else "torch")
    if backend == "onnxruntime":
        if path.suffix != ".onnx":
            raise UserError(
                f"--backend onnxruntime needs an .onnx file (export one with `paddyclf export`); got {path}."
            )
        return onnx_predictor(path)
    if path.suffix == ".onnx":
        raise UserError(f"{path} is an ONNX file; use --backend onnxruntime (the default for .onnx).")
    return torch_predictor(path)
