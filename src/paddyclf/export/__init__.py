"""``paddyclf export``: a checkpoint to every deployment format, each one checked before it is written.

=================  ================  ==========  ===============================================
format             file              runtime     check before writing
=================  ================  ==========  ===============================================
``onnx``           ``.onnx``         ONNX RT     logits within 1e-3 of PyTorch, same verdicts
``onnx-int8``      ``.onnx``         ONNX RT     accuracy gate on real photos
``openvino``       ``.xml``+``.bin`` OpenVINO    logits within 1e-3, same verdicts
``openvino-int8``  ``.xml``+``.bin`` OpenVINO    accuracy gate
``tflite``         ``.tflite``       LiteRT      logits within 1e-3, same verdicts
``tflite-int8``    ``.tflite``       LiteRT      accuracy gate
``torchscript``    ``.ts``/``.pt``   PyTorch     logits within 1e-3, same verdicts
=================  ================  ==========  ===============================================

The exported graph is the :class:`~paddyclf.trust.TrustedModel` (``logits`` and, for a calibrated
checkpoint, ``ood_score``). Every export writes ``<file>.json`` beside itself (the app's contract,
:mod:`paddyclf.export.contract`); ONNX and TorchScript also embed it. The files are written into
a temporary folder beside the output, checked there by the same predictor ``predict`` uses, and
only then moved into place (the model file last): a failed check leaves nothing behind.

The accuracy gate (INT8): the float PyTorch model and the INT8 file predict the valid split of
``--validate`` (default: the calibration metadata). When the plain recipe's file is more than
``--max-accuracy-drop`` points below float, an accuracy-aware search (NNCF's accuracy control for
ONNX and OpenVINO, :mod:`paddyclf.export.int8_search` over LiteRT recipes) keeps the most
sensitive layers out of full INT8 until the gate passes, within ``--search-evaluations`` passes
over the validation photos; the export fails (nothing written) only when that cannot meet the
budget either, naming how close it came. The sidecar's ``int8`` records the outcome: the layers
kept out of INT8, the evaluations spent, the drop, the size against the float ONNX.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_checkpoint
from ..data import Normalization, load_splits, make_loader, stratified_subset
from ..errors import UserError
from ..fileio import staging_folder, write_json
from ..inference import load_predictor
from ..inference.runtimes import sidecar_path
from ..trust import checkpoint_trust, trusted_model, verdicts
from ..trust.calibration import calibrated_probabilities
from .contract import export_metadata
from .graph import example_batch
from .int8_search import DEFAULT_SEARCH_EVALUATIONS, SearchRequest, search_failure
from .to_onnx import search_onnx_int8, write_onnx, write_onnx_int8
from .to_openvino import search_openvino_int8, write_openvino, write_openvino_int8
from .to_tflite import search_tflite_int8, write_tflite, write_tflite_int8
from .to_torchscript import write_torchscript

PARITY_TOLERANCE = 1e-3
DEFAULT_OPSET = 18
DEFAULT_CALIBRATION_IMAGES = 256
DEFAULT_MAX_ACCURACY_DROP = 1.0  # points


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffixes: tuple[str, ...]  # the first is the default
    write: Callable
    int8: bool = False
    layout: str = "NCHW"
    batch: int | None = None  # fixed batch size, or None for dynamic
    companions: tuple[str, ...] = ()  # files written beside the main one (OpenVINO's weights)
    search: Callable | None = None  # INT8: the accuracy-aware search when the plain recipe fails the gate


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("onnx", (".onnx",), write_onnx),
        ExportFormat("onnx-int8", (".onnx",), write_onnx_int8, int8=True, search=search_onnx_int8),
        ExportFormat("openvino", (".xml",), write_openvino, companions=(".bin",)),
        ExportFormat(
            "openvino-int8",
            (".xml",),
            write_openvino_int8,
            int8=True,
            companions=(".bin",),
            search=search_openvino_int8,
        ),
        ExportFormat("tflite", (".tflite",), write_tflite, layout="NHWC", batch=1),
        ExportFormat(
            "tflite-int8", (".tflite",), write_tflite_int8, int8=True, layout="NHWC", batch=1, search=search_tflite_int8
        ),
        ExportFormat("torchscript", (".ts", ".pt"), write_torchscript),
    )
}


@dataclass
class ExportOptions:
    """What ``paddyclf export`` takes besides the checkpoint, format and output."""

    opset: int = DEFAULT_OPSET
    tolerance: float = PARITY_TOLERANCE
    calibration: str | Path | None = None  # metadata CSV: its train split calibrates INT8
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    validate: str | Path | None = None  # metadata CSV: its valid split gates INT8 (default: calibration)
    max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP
    search_evaluations: int = DEFAULT_SEARCH_EVALUATIONS  # INT8: budget of the accuracy-aware search; 0: none
    num_workers: int = 0


def export_model(checkpoint: str | Path, output: str | Path, fmt: str = "onnx", options: ExportOptions | None = None):
    """Export ``checkpoint`` to ``output`` as ``fmt``; return the check's report (see :func:`export_checkpoint`)."""
    return export_checkpoint(load_checkpoint(checkpoint), output, fmt, options)


def export_checkpoint(ckpt: dict, output: str | Path, fmt: str = "onnx", options: ExportOptions | None = None) -> dict:
    """:func:`export_model` for a checkpoint dict in memory. Returns ``{"format", "path", "files",
    "size_bytes", "check": {...}}``; the check holds the parity figures or the INT8 accuracy gate's."""
    options = options or ExportOptions()
    spec = _format(fmt)
    output = Path(output)
    if output.suffix.lower() not in spec.suffixes:
        raise UserError(f"--format {fmt} writes a {' or '.join(spec.suffixes)} file; got --output {output}.")
    if options.search_evaluations < 0:
        raise UserError(f"--search-evaluations must be >= 0 (0: no search), got {options.search_evaluations}.")
    if spec.int8 and options.calibration is None:
        raise UserError(f"--format {fmt} needs --calibration METADATA (its train split calibrates the INT8 ranges).")
    size = ckpt["config"]["image_size"]
    calibration = validation = None
    if spec.int8:
        calibration = split_images(ckpt, options.calibration, "train", options.calibration_images, options)[0]
        validation = split_images(ckpt, options.validate or options.calibration, "valid", None, options)
    model = trusted_model(ckpt)
    metadata = export_metadata(ckpt, fmt, spec.layout, spec.batch, precision="int8" if spec.int8 else "float32")
    staging = staging_folder(output)
    try:
        staged = staging / output.name
        with torch.no_grad():
            spec.write(model, example_batch(size), staged, metadata, options.opset, calibration)
        write_json(sidecar_path(staged), metadata)
        if spec.int8:
            check = int8_check(model, ckpt, spec, staged, metadata, calibration, validation, options)
            model_bytes = sum(staged.with_suffix(s).stat().st_size for s in (staged.suffix, *spec.companions))
            reference = float_onnx_bytes(model, size, staging, metadata, options.opset)
            check["int8"].update(
                size_bytes=model_bytes, float_onnx_bytes=reference, size_vs_float_onnx=model_bytes / reference
            )
            metadata = {**metadata, "int8": {**check["int8"], **_gate_figures(check)}}
            write_json(sidecar_path(staged), metadata)  # the sidecar records what the gate measured
        else:
            check = parity_check(model, staged, size, options.tolerance, checkpoint_trust(ckpt))
        files = _move_into_place(staged, output, spec)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "format": fmt,
        "path": str(output),
        "files": [str(f) for f in files],
        "size_bytes": sum(f.stat().st_size for f in files if f != sidecar_path(output)),
        "check": check,
    }


def _gate_figures(check: dict) -> dict:
    keys = ("validation_images", "float_accuracy", "int8_accuracy", "accuracy_drop_points", "verdict_agreement")
    return {key: check[key] for key in keys}


def _format(fmt: str) -> ExportFormat:
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r}).")
    return FORMATS[fmt]


def _move_into_place(staged: Path, output: Path, spec: ExportFormat) -> list[Path]:
    """Companions and the sidecar first, the model file last: once it exists, everything it needs does."""
    moves = [(staged.with_suffix(s), output.with_suffix(s)) for s in spec.companions]
    moves += [(sidecar_path(staged), sidecar_path(output)), (staged, output)]
    for source, target in moves:
        os.replace(source, target)
    return [target for _, target in moves]


# --------------------------------------------------------------------------- the checks


def parity_check(model, path: Path, size: int, tolerance: float, trust) -> dict:
    """The exported file and PyTorch on one random batch (3 images: not the traced batch size)."""

    check = example_batch(size, batch=3, seed=1)
    with torch.no_grad():
        expected = [t.numpy() for t in model(check)]
    actual = load_predictor(path).outputs(check)
    problem = parity_problem(expected, actual, trust, tolerance)
    if problem:
        raise UserError(f"The exported model disagrees with PyTorch: {problem}. Nothing was written.")
    return {"max_abs_logit_difference": float(np.abs(actual["logits"] - expected[0]).max()), "tolerance": tolerance}


def parity_problem(expected: list[np.ndarray], actual: dict, trust, tolerance: float) -> str | None:
    """Why the exported outputs disagree with PyTorch's (logits, score), or None when they agree."""
    diff = float(np.abs(actual["logits"] - expected[0]).max())
    if not diff <= tolerance:
        return f"max abs logit difference {diff:.3g} > {tolerance}"
    score = actual.get("ood_score")
    if trust.ood_score is not None:
        relative = float((np.abs(score - expected[1]) / np.maximum(np.abs(expected[1]), 1.0)).max())
        if not relative <= tolerance:
            return f"max relative out-of-distribution score difference {relative:.3g} > {tolerance}"
    mine = verdicts(calibrated_probabilities(expected[0], trust.temperature), expected[1], trust)
    theirs = verdicts(calibrated_probabilities(actual["logits"], trust.temperature), score, trust)
    mismatched = sum(a != b for a, b in zip(mine, theirs, strict=True))
    return f"{mismatched} verdict(s) differ" if mismatched else None


class Int8Gate:
    """The accuracy gate: top-1 accuracy of float PyTorch and of an INT8 file on the validation photos.

    The float model's outputs are computed once; every INT8 file (the plain recipe's, each model a
    search tries) costs one pass of that file over the photos. ``drop = 100 * (acc_float - acc_int8)``.
    """

    def __init__(self, model, validation: tuple[torch.Tensor, np.ndarray], max_drop: float) -> None:
        self.images, self.labels = validation
        self.max_drop = max_drop
        with torch.no_grad():
            outputs = [model(self.images[i : i + 32]) for i in range(0, len(self.images), 32)]
        self.float_logits = np.concatenate([logits.numpy() for logits, _ in outputs])
        self.float_scores = np.concatenate([score.numpy() for _, score in outputs])

    def report(self, path: Path) -> dict:
        """The gate's figures for the INT8 file at ``path`` (its sidecar beside it); never raises on a drop."""
        predictor = load_predictor(path)
        trust = predictor.trust
        outputs = [predictor.outputs(self.images[i : i + 32]) for i in range(0, len(self.images), 32)]
        il = np.concatenate([out["logits"] for out in outputs])
        is_ = np.concatenate([out.get("ood_score", np.zeros(len(out["logits"]), np.float32)) for out in outputs])
        fl, labels = self.float_logits, self.labels
        float_acc, int8_acc = float((fl.argmax(1) == labels).mean()), float((il.argmax(1) == labels).mean())
        has_score = trust.ood_score is not None
        float_verdicts = verdicts(
            calibrated_probabilities(fl, trust.temperature), self.float_scores if has_score else None, trust
        )
        int8_verdicts = verdicts(calibrated_probabilities(il, trust.temperature), is_ if has_score else None, trust)
        return {
            "validation_images": int(len(labels)),
            "float_accuracy": float_acc,
            "int8_accuracy": int8_acc,
            "accuracy_drop_points": 100 * (float_acc - int8_acc),
            "top1_agreement": float((fl.argmax(1) == il.argmax(1)).mean()),
            "verdict_agreement": float(np.mean([a == b for a, b in zip(float_verdicts, int8_verdicts, strict=True)])),
            "max_accuracy_drop_points": self.max_drop,
        }

    def drop(self, path: Path) -> float:
        return self.report(path)["accuracy_drop_points"]

    def refusal(self, report: dict) -> str:
        return (
            f"INT8 accuracy {report['int8_accuracy']:.4f} is {report['accuracy_drop_points']:.2f} points below float "
            f"({report['float_accuracy']:.4f}) on {report['validation_images']} validation photos, more than "
            f"--max-accuracy-drop {self.max_drop}."
        )


def int8_check(model, ckpt: dict, spec: ExportFormat, staged: Path, metadata: dict, calibration, validation, options):
    """The gate on the plain recipe's file; when it fails, the backend's accuracy-aware search, then the gate again.

    Returns the gate's report with ``int8`` (the search's record, or the plain recipe's) and the
    sizes; raises (nothing written) when even the search's model fails, naming how close it came.
    """
    gate = Int8Gate(model, validation, options.max_accuracy_drop)
    report = gate.report(staged)
    plain_drop = report["accuracy_drop_points"]
    record = {"searched": False, "plain_recipe_drop_points": plain_drop, "kept_layers": [], "evaluations": 0}
    if plain_drop > gate.max_drop and options.search_evaluations > 0:
        request = SearchRequest(
            gate.drop, gate.images, gate.labels, gate.max_drop, options.search_evaluations, plain_drop
        )
        size = ckpt["config"]["image_size"]
        with torch.no_grad():
            record = spec.search(model, example_batch(size), staged, metadata, options.opset, calibration, request)
        report = gate.report(staged)
    if report["accuracy_drop_points"] > gate.max_drop:
        closest = search_failure(record, report["accuracy_drop_points"]) + " " if record["searched"] else ""
        raise UserError(f"{gate.refusal(report)} {closest}Nothing was written.")
    return {**report, "int8": record}


def float_onnx_bytes(model, size: int, folder: Path, metadata: dict, opset: int) -> int:
    """The size of the float ONNX of ``model``: what every INT8 file's size is reported against."""
    path = write_onnx(model, example_batch(size), folder / "float-reference.onnx", metadata, opset)
    try:
        return path.stat().st_size
    finally:
        path.unlink()


def split_images(
    ckpt: dict, metadata: str | Path, split: str, limit: int | None, options: ExportOptions
) -> tuple[torch.Tensor, np.ndarray]:
    """The eval-transformed images (N, 3, S, S) and labels of ``split`` of ``metadata`` (a stratified ``limit``)."""
    labels = ckpt["label2id"]
    samples = load_splits(metadata, labels, ckpt.get("seed", 42), required=(split,))[split]
    samples = stratified_subset(samples, limit, seed=0) if limit else samples
    norm = Normalization(**ckpt["normalization"])
    loader = make_loader(samples, ckpt["config"]["image_size"], norm, False, 32, options.num_workers, seed=0)
    images, targets = [], []
    for batch in loader:
        if batch.images is not None:
            images.append(batch.images.contiguous())
            targets.append(batch.labels.numpy())
    if not images:
        raise UserError(f"None of the {len(samples)} {split} images of {metadata} could be read.")
    return torch.cat(images), np.concatenate(targets)


__all__ = [
    "DEFAULT_OPSET",
    "FORMATS",
    "PARITY_TOLERANCE",
    "ExportFormat",
    "ExportOptions",
    "Int8Gate",
    "export_checkpoint",
    "export_model",
    "split_images",
]
