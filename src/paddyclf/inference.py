"""Run a trained model: from a checkpoint (PyTorch) or an exported ONNX file (ONNX Runtime).

Both give a :class:`Predictor` with the class names, the input size, the normalisation and
``probabilities(batch) -> (B, K)``; everything downstream (predict, benchmarks) is backend-agnostic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import class_names, first_line, load_checkpoint, model_from_checkpoint
from .data import Normalization
from .errors import UserError

ONNX_METADATA_KEY = "paddyclf"


@dataclass
class Predictor:
    classes: list[str]
    image_size: int
    norm: Normalization
    backend: str
    _run: object  # (N, 3, S, S) float32 numpy -> logits numpy

    def logits(self, images: torch.Tensor) -> np.ndarray:
        return self._run(images)

    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        return torch.from_numpy(self.logits(images)).float().softmax(1).numpy()


def torch_predictor(checkpoint: str | Path, device: torch.device | None = None) -> Predictor:
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt).to(device or "cpu")

    @torch.no_grad()
    def run(images: torch.Tensor) -> np.ndarray:
        return model(images.to(next(model.parameters()).device)).float().cpu().numpy()

    return Predictor(
        class_names(ckpt["label2id"]),
        ckpt["config"]["image_size"],
        Normalization(**ckpt["normalization"]),
        "torch",
        run,
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

    def run(images: torch.Tensor) -> np.ndarray:
        return session.run(None, {input_name: images.float().contiguous().numpy()})[0]

    return Predictor(meta["classes"], meta["image_size"], Normalization(**meta["normalization"]), "onnxruntime", run)


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
