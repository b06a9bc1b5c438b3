"""``paddyclf export``: a checkpoint to ONNX (with our metadata) or TorchScript, parity-checked.

The exported graph is the :class:`~paddyclf.trust.TrustedModel`: it returns ``logits`` and, for a
calibrated checkpoint, ``ood_score``; the metadata carries the temperature and thresholds, so
every runtime gives the same verdicts. After writing, both the PyTorch model and the exported
file run the same random batch; the export fails (and the file is not left behind) if the logits
or the scores differ by more than ``tolerance`` (relative, for scores), or any verdict differs.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from .calibration import calibrated_probabilities
from .checkpoint import class_names, load_checkpoint
from .errors import UserError
from .fileio import atomic_path
from .inference import ONNX_METADATA_KEY
from .trust import TrustedModel, checkpoint_trust, trusted_model, verdicts

PARITY_TOLERANCE = 1e-3
DEFAULT_OPSET = 18


def export_metadata(ckpt: dict) -> dict:
    return {
        "classes": class_names(ckpt["label2id"]),
        "image_size": ckpt["config"]["image_size"],
        "normalization": ckpt["normalization"],
        "architecture": ckpt["config"]["architecture"],
        "seed": ckpt.get("seed", 42),
        "trust": checkpoint_trust(ckpt).to_dict(),
    }


def output_names(model: TrustedModel) -> list[str]:
    """``logits``, plus ``ood_score`` when the checkpoint has an OOD score."""
    return ["logits"] + (["ood_score"] if model.score is not None else [])


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model: TrustedModel) -> None:
        super().__init__()
        self.model = model.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def graph_module(model: TrustedModel) -> torch.nn.Module:
    """What the exported graph runs: the TrustedModel, or just the classifier when there is no score."""
    return model if model.score is not None else _LogitsOnly(model)


def _write_onnx(model: TrustedModel, example: torch.Tensor, path: Path, opset: int, metadata: dict) -> None:
    import onnx

    names = output_names(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation/tracer chatter
        torch.onnx.export(
            graph_module(model),
            (example,),
            str(path),
            input_names=["input"],
            output_names=names,
            dynamic_axes={"input": {0: "batch"}, **{name: {0: "batch"} for name in names}},
            opset_version=opset,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(metadata)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _onnx_outputs(path: Path, x: torch.Tensor) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})


def _write_torchscript(model: TrustedModel, example: torch.Tensor, path: Path, metadata: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph_module(model), example)
        torch.jit.save(traced, str(path), _extra_files={"paddyclf.json": json.dumps(metadata)})


def _torchscript_outputs(path: Path, x: torch.Tensor) -> list[np.ndarray]:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice; the format is what users asked for
        out = torch.jit.load(str(path)).eval()(x)
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def parity_problem(expected: list[np.ndarray], actual: list[np.ndarray], trust, tolerance: float) -> str | None:
    """Why the exported outputs disagree with PyTorch's (logits, [score]), or None when they agree."""
    diff = float(np.abs(actual[0] - expected[0]).max())
    if not diff <= tolerance:
        return f"max abs logit difference {diff:.3g} > {tolerance}"
    if len(expected) > 1:
        relative = float((np.abs(actual[1] - expected[1]) / np.maximum(np.abs(expected[1]), 1.0)).max())
        if not relative <= tolerance:
            return f"max relative out-of-distribution score difference {relative:.3g} > {tolerance}"

    def status(out: list[np.ndarray]) -> list[str]:
        return verdicts(calibrated_probabilities(out[0], trust.temperature), out[1] if len(out) > 1 else None, trust)

    mismatched = sum(a != b for a, b in zip(status(expected), status(actual), strict=True))
    return f"{mismatched} verdict(s) differ" if mismatched else None


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
    model = trusted_model(ckpt)
    size = ckpt["config"]["image_size"]
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    check = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))  # another batch size
    metadata = export_metadata(ckpt)
    with torch.no_grad():
        expected = [t.numpy() for t in model(check)][: len(output_names(model))]
    with atomic_path(output) as tmp:
        if fmt == "onnx":
            _write_onnx(model, example, tmp, opset, metadata)
            actual = _onnx_outputs(tmp, check)
        else:
            _write_torchscript(model, example, tmp, metadata)
            actual = _torchscript_outputs(tmp, check)
        problem = parity_problem(expected, actual, checkpoint_trust(ckpt), tolerance)
        if problem:
            raise UserError(f"Exported {fmt} model disagrees with PyTorch: {problem}. Nothing was written.")
    return float(np.abs(actual[0] - expected[0]).max())
