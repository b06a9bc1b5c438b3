"""A predictor for any model file: a checkpoint on PyTorch, an export on its own runtime (:mod:`.runtimes`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..checkpoint import class_names, load_checkpoint
from ..data import Normalization
from ..errors import UserError
from ..trust import checkpoint_trust, trusted_model
from .predictor import Predictor
from .runtimes import RUNTIMES, SUFFIX_RUNTIMES, is_torchscript


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
