"""Exported models on their own runtimes: ONNX Runtime, OpenVINO, LiteRT and TorchScript.

Each ``*_predictor(path)`` returns a :class:`~paddyclf.inference.predictor.Predictor` whose ``outputs`` are
the same dict as PyTorch's (``logits`` and, for a calibrated model, ``ood_score``), from the file
and the metadata exported with it: the sidecar ``<file>.json`` that every export writes (see
:mod:`paddyclf.export.contract`) or, for ONNX and TorchScript, the copy embedded in the file.
Inputs are NCHW float32 batches as the project's eval transform makes them; a runtime that wants
another layout (LiteRT: NHWC), a fixed batch of 1 or int8 inputs gets them converted here.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import first_line
from ..data import Normalization
from ..errors import UserError
from ..trust import Trust
from .predictor import Predictor

ONNX_METADATA_KEY = "paddyclf"
TORCHSCRIPT_METADATA = "paddyclf.json"
SIDECAR_SUFFIX = ".json"


def sidecar_path(model_path: str | Path) -> Path:
    """``model.tflite`` -> ``model.tflite.json``."""
    path = Path(model_path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_sidecar(model_path: str | Path) -> dict | None:
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} (the metadata of {model_path}) is not valid JSON: {exc}.") from None


def required_sidecar(model_path: Path, fmt: str) -> dict:
    meta = read_sidecar(model_path)
    if meta is None:
        raise UserError(
            f"{model_path} has no {sidecar_path(model_path).name} beside it: the classes, input size and thresholds "
            f"of a {fmt} model live there. Export it with `paddyclf export --format {fmt}`."
        )
    return meta


def predictor_from_metadata(meta: dict, backend: str, run) -> Predictor:
    return Predictor(
        meta["classes"],
        meta["image_size"],
        Normalization(**meta["normalization"]),
        backend,
        Trust.from_dict(meta.get("trust")),
        run,
        meta.get("seed", 42),
    )


def named_outputs(meta: dict, values) -> dict[str, np.ndarray]:
    names = meta.get("outputs") or ["logits", "ood_score"][: len(values)]
    return {name: np.asarray(v, dtype=np.float32) for name, v in zip(names, values, strict=True)}


# --------------------------------------------------------------------------- ONNX Runtime


def onnx_predictor(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise UserError(f"{path} is not a loadable ONNX model ({first_line(exc)}).") from None
    embedded = session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
    meta = read_sidecar(path) or (json.loads(embedded) if embedded else None)
    if meta is None:
        raise UserError(f"{path} has no paddyclf metadata; export it with `paddyclf export --format onnx`.")
    input_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]

    def run(images: torch.Tensor) -> dict[str, np.ndarray]:
        values = session.run(None, {input_name: images.float().contiguous().numpy()})
        return dict(zip(names, values, strict=True))

    return predictor_from_metadata(meta, "onnxruntime", run)


# --------------------------------------------------------------------------- OpenVINO


def openvino_predictor(path: str | Path, threads: int | None = None):
    """OpenVINO on the CPU, in float32 (its default on AMX CPUs is bf16, which moves logits by ~0.05)."""
    import openvino as ov

    meta = required_sidecar(Path(path), "openvino")
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    try:
        compiled = ov.Core().compile_model(str(path), "CPU", config)
    except RuntimeError as exc:
        raise UserError(f"{path} is not a loadable OpenVINO model ({first_line(exc)}).") from None
    request = compiled.create_infer_request()

    def run(images: torch.Tensor) -> dict[str, np.ndarray]:
        result = request.infer(images.float().contiguous().numpy())
        return named_outputs(meta, [result[out] for out in compiled.outputs])

    return predictor_from_metadata(meta, "openvino", run)


# --------------------------------------------------------------------------- LiteRT (TensorFlow Lite)


def _quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def _dequantize_output(v: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return v
    scale, zero_point = detail["quantization"]
    return (v.astype(np.float32) - zero_point) * scale


def litert_predictor(path: str | Path, threads: int | None = None):
    """LiteRT, as an Android app runs it: one NHWC image per invoke (the file has a fixed batch of 1)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # LiteRT's start-up banner
    from ai_edge_litert.interpreter import Interpreter

    meta = required_sidecar(Path(path), "tflite")
    try:
        interpreter = Interpreter(str(path), num_threads=threads or torch.get_num_threads())
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"{path} is not a loadable LiteRT model ({first_line(exc)}).") from None
    source = interpreter.get_input_details()[0]
    outputs = sorted(interpreter.get_output_details(), key=lambda d: d["name"])  # output_0, output_1

    def run(images: torch.Tensor) -> dict[str, np.ndarray]:
        nhwc = images.float().permute(0, 2, 3, 1).contiguous().numpy()
        rows = []
        for image in nhwc:
            interpreter.set_tensor(source["index"], _quantize_input(image[None], source))
            interpreter.invoke()
            rows.append([_dequantize_output(interpreter.get_tensor(d["index"]), d)[0] for d in outputs])
        return named_outputs(meta, [np.stack(column) for column in zip(*rows, strict=True)])

    return predictor_from_metadata(meta, "litert", run)


# --------------------------------------------------------------------------- TorchScript


def is_torchscript(path: str | Path) -> bool:
    """A TorchScript archive written by ``paddyclf export`` (it carries ``extra/paddyclf.json``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(f"extra/{TORCHSCRIPT_METADATA}") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def torchscript_predictor(path: str | Path, threads: int | None = None):
    if threads:
        torch.set_num_threads(threads)
    extra = {TORCHSCRIPT_METADATA: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        try:
            module = torch.jit.load(str(path), _extra_files=extra).eval()
        except RuntimeError as exc:
            raise UserError(f"{path} is not a loadable TorchScript model ({first_line(exc)}).") from None
    meta = read_sidecar(path) or json.loads(extra[TORCHSCRIPT_METADATA])

    @torch.no_grad()
    def run(images: torch.Tensor) -> dict[str, np.ndarray]:
        out = module(images.float())
        return named_outputs(meta, [t.numpy() for t in (out if isinstance(out, tuple) else (out,))])

    return predictor_from_metadata(meta, "torchscript", run)


RUNTIMES = {
    "onnxruntime": onnx_predictor,
    "openvino": openvino_predictor,
    "litert": litert_predictor,
    "torchscript": torchscript_predictor,
}
SUFFIX_RUNTIMES = {".onnx": "onnxruntime", ".xml": "openvino", ".tflite": "litert", ".ts": "torchscript"}
