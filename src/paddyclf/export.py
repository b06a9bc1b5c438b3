"""``paddyclf export``: a checkpoint to ONNX (with our metadata) or TorchScript, parity-checked.

After writing, both the PyTorch model and the exported file run the same random batch; the
export fails (and the file is not left behind) if the logits differ by more than ``tolerance``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from .checkpoint import class_names, load_checkpoint, model_from_checkpoint
from .errors import UserError
from .fileio import atomic_path
from .inference import ONNX_METADATA_KEY

PARITY_TOLERANCE = 1e-3
DEFAULT_OPSET = 18


def export_metadata(ckpt: dict) -> dict:
    return {
        "classes": class_names(ckpt["label2id"]),
        "image_size": ckpt["config"]["image_size"],
        "normalization": ckpt["normalization"],
        "architecture": ckpt["config"]["architecture"],
    }


def _write_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path, opset: int, metadata: dict) -> None:
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation/tracer chatter
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(metadata)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _onnx_logits(path: Path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _write_torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path, metadata: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, str(path), _extra_files={"paddyclf.json": json.dumps(metadata)})


def _torchscript_logits(path: Path, x: torch.Tensor) -> np.ndarray:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice; the format is what users asked for
        return torch.jit.load(str(path)).eval()(x).numpy()


def export_model(
    checkpoint: str | Path,
    output: str | Path,
    fmt: str = "onnx",
    opset: int = DEFAULT_OPSET,
    tolerance: float = PARITY_TOLERANCE,
) -> float:
    """Export ``checkpoint`` to ``output``; return the max abs logit difference (raises if above tolerance)."""
    return export_checkpoint(load_checkpoint(checkpoint), output, fmt, opset, tolerance)


def export_checkpoint(
    ckpt: dict, output: str | Path, fmt: str = "onnx", opset: int = DEFAULT_OPSET, tolerance: float = PARITY_TOLERANCE
) -> float:
    """:func:`export_model` for a checkpoint dict already in memory."""
    if fmt not in ("onnx", "torchscript"):
        raise UserError(f"--format must be onnx or torchscript (got {fmt!r}).")
    model = model_from_checkpoint(ckpt)
    size = ckpt["config"]["image_size"]
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    check = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))  # another batch size
    metadata = export_metadata(ckpt)
    with torch.no_grad():
        expected = model(check).numpy()
    with atomic_path(output) as tmp:
        if fmt == "onnx":
            _write_onnx(model, example, tmp, opset, metadata)
            actual = _onnx_logits(tmp, check)
        else:
            _write_torchscript(model, example, tmp, metadata)
            actual = _torchscript_logits(tmp, check)
        diff = float(np.abs(actual - expected).max())
        if not diff <= tolerance:
            raise UserError(
                f"Exported {fmt} model disagrees with PyTorch: max abs logit difference {diff:.3g} > {tolerance}. "
                "Nothing was written."
            )
    return diff
