"""LiteRT (``.tflite``) for Android, by ``litert-torch``; INT8 by LiteRT's own ``ai-edge-quantizer``.

The file takes what a phone camera pipeline produces: one NHWC float32 image, batch fixed to 1
(LiteRT does not support a dynamic batch). INT8 recipe (measured, docs/BENCHMARKS.md section 7):
static int8 weights and activations for the convolutions, depthwise convolutions and the
classifier, except the squeeze-excitation convolutions, which get int8 weights only (their
activations in int8 took rice5 accuracy from 0.93 to 0.56: the known MobileNetV3 collapse);
everything else (hard-swish, attention, the OOD score) stays float.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .graph import graph_module
from .int8_search import SearchRequest, search_kept_layers, search_record

SQUEEZE_EXCITE = ".*SqueezeExcite.*"


# Recent conversions, by the content of the module converted: `benchmark export` (and the test suite)
# writes the float and the INT8 LiteRT file of one model in one process, and the conversion is the slow
# part of both (with it reused, the INT8 gate-search test went from 21-22 s to 7 s on 2 cores).
_CONVERTED: OrderedDict[str, bytes] = OrderedDict()
_CONVERTED_KEPT = 2


def module_key(module: torch.nn.Module, example: torch.Tensor) -> str | None:
    """A digest of everything the conversion depends on: the pickled module (its classes, parameters,
    buffers and plain attributes such as a temperature) and the input shape. None when the module
    cannot be pickled (then nothing is cached)."""
    buffer = io.BytesIO()
    try:
        torch.save(module, buffer)
    except Exception:  # noqa: BLE001 - any pickling failure only means no cache
        return None
    return hashlib.sha256(buffer.getvalue() + repr(tuple(example.shape)).encode()).hexdigest()


def write_tflite(model, example: torch.Tensor, path: Path, metadata: dict, opset: int, calibration=None) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "0")  # its per-stage log lines; errors still raise
    nhwc = example[:1].permute(0, 2, 3, 1).contiguous()
    graph = graph_module(model)
    key = module_key(graph, nhwc)
    if key is not None and key in _CONVERTED:
        _CONVERTED.move_to_end(key)
        path.write_bytes(_CONVERTED[key])
        return path
    import litert_torch

    module = litert_torch.to_channel_last_io(graph, args=[0]).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        litert_torch.convert(module, (nhwc,)).export(str(path))
    if key is not None:
        _CONVERTED[key] = path.read_bytes()
        while len(_CONVERTED) > _CONVERTED_KEPT:
            _CONVERTED.popitem(last=False)
    return path


LAYER_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")  # what the recipe quantizes in full INT8
KEPT_AS = "as int8 weights with float activations"
SENSITIVITY_PHOTOS = 16


@dataclass(frozen=True)
class Layer:
    """One fully INT8 op of the float LiteRT graph: its op type and scope (its output tensors' names)."""

    op: str
    scope: str

    @property
    def name(self) -> str:
        """The module path of the op, without the converter's wrapper and class prefixes (for people)."""
        first = self.scope.split(";")[0]
        parts = [p.rsplit(".", 1)[-1] for p in first.split("/")[2:]]  # skip the I/O wrapper and TrustedModel
        return "/".join(parts) or first


def int8_recipe(weights_only: tuple[Layer, ...] = ()):
    """The plain recipe (module docstring), with the ``weights_only`` layers' activations kept float."""
    from ai_edge_quantizer import qtyping, recipe_manager

    manager = recipe_manager.RecipeManager()
    ops = qtyping.TFLOperationName
    for op in (ops.CONV_2D, ops.DEPTHWISE_CONV_2D, ops.FULLY_CONNECTED):
        regex = f"^(?!{SQUEEZE_EXCITE}).*" if op == ops.CONV_2D else ".*"
        manager.add_static_config(regex=regex, operation_name=op, activation_num_bits=8, weight_num_bits=8)
    manager.add_weight_only_config(regex=SQUEEZE_EXCITE, operation_name=ops.CONV_2D, num_bits=8)
    for layer in weights_only:  # later configs win: an exact scope overrides the static one above
        manager.add_weight_only_config(regex=f"^{re.escape(layer.scope)}$", operation_name=ops(layer.op), num_bits=8)
    return manager.get_quantization_recipe()


class Int8Builder:
    """The float LiteRT file, calibrated once; writes its INT8 under any recipe of :func:`int8_recipe`.

    Calibration records every tensor's range under the full recipe, so keeping layers' activations
    float only changes the recipe, never needs a new calibration.
    """

    def __init__(self, model, example: torch.Tensor, path: Path, metadata: dict, opset: int, calibration) -> None:
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_quantizer import quantizer

        self.float_path = float_path(path)
        if not self.float_path.is_file():  # the plain export's, reused by the search: conversion is the slow part
            write_tflite(model, example, self.float_path, metadata, opset)
        signatures = Interpreter(str(self.float_path)).get_signature_list()
        self.key = next(iter(signatures))
        input_name = signatures[self.key]["inputs"][0]
        images = calibration.permute(0, 2, 3, 1).contiguous().numpy()
        self.samples = [{input_name: image[None]} for image in images]
        self.tool = quantizer.Quantizer(str(self.float_path))
        self.tool.load_quantization_recipe(int8_recipe())
        self.calibrated = self.tool.calibrate({self.key: self.samples}, num_threads=1)

    def write(self, path: Path, weights_only: tuple[Layer, ...] = ()) -> Path:
        self.tool.load_quantization_recipe(int8_recipe(weights_only))
        self.tool.quantize(self.calibrated, enable_progress_report=False).export_model(str(path), overwrite=True)
        return path

    def layer_ops(self) -> list:
        """``(Layer, op)`` of every layer the plain recipe puts in full INT8 (weights and activations)."""
        from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfl

        graph = tfl.read_model(str(self.float_path))
        subgraph, codes = graph.subgraphs[0], graph.operatorCodes
        found = []
        for op in subgraph.operators:
            name = tfl.TFL_OP_CODE_TO_NAME.get(codes[op.opcodeIndex].builtinCode)
            scope = tfl.get_op_scope(op, subgraph.tensors)
            if name is not None and name.name in LAYER_OPS and not re.search(SQUEEZE_EXCITE, scope):
                found.append((Layer(name.name, scope), op))
        return found

    def ranked_layers(self) -> list[Layer]:
        """The fully INT8 layers, most sensitive first, measured once.

        Sensitivity of layer ``l``: the error at the model's output when ``l`` alone is in full INT8
        (every other layer keeps float activations), ``e(l) = mean((logits_l - logits_float)^2)``
        over a few calibration photos. Measured at the output because per-tensor statistics
        mislead (a coarse INT8 expansion before a hard-swish barely moves the expansion's own
        signal-to-noise ratio yet costs accuracy downstream), and in isolation because the
        opposite ("error left when ``l`` alone leaves INT8") is buried under every other layer's
        error when the error is spread over many layers. Cost: one quantization (a recipe
        change: the calibration is reused) and one run on ``SENSITIVITY_PHOTOS`` photos per layer,
        about half a second each on 2 cores, where accuracy would cost a full validation pass each.
        """
        reference = self._logits(self.float_path.read_bytes())
        layers = [layer for layer, _ in self.layer_ops()]
        errors = {}
        for layer in layers:
            others = tuple(other for other in layers if other != layer)
            self.tool.load_quantization_recipe(int8_recipe(others))
            quantized = self.tool.quantize(self.calibrated, enable_progress_report=False).quantized_model
            errors[layer] = float(np.mean((self._logits(quantized) - reference) ** 2))
        return sorted(layers, key=lambda layer: -errors[layer])

    def _logits(self, model: bytes) -> np.ndarray:
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_content=bytes(model), num_threads=1).get_signature_runner(self.key)
        return np.concatenate([runner(**sample)["output_0"] for sample in self.samples[:SENSITIVITY_PHOTOS]])

    def close(self) -> None:
        self.float_path.unlink(missing_ok=True)


def float_path(path: Path) -> Path:
    return path.with_name(path.stem + ".float.tflite")


def write_tflite_int8(
    model, example: torch.Tensor, path: Path, metadata: dict, opset: int, calibration: torch.Tensor
) -> Path:
    """The plain recipe's INT8. Its float file stays beside ``path`` (in the export's staging folder,
    which goes once the export ends) for :func:`search_tflite_int8` to reuse if the gate fails."""
    return Int8Builder(model, example, path, metadata, opset, calibration).write(path)


def search_tflite_int8(
    model, example: torch.Tensor, path: Path, metadata: dict, opset: int, calibration, request: SearchRequest
) -> dict:
    """The accuracy-aware INT8 (:mod:`paddyclf.export.int8_search`) over ai-edge-quantizer recipes.

    The most sensitive layers (:meth:`Int8Builder.ranked_layers`) keep int8 weights but float
    activations: the file stays as small as the plain recipe's (the weights are the bytes) while
    the layer computes in float. Writes the chosen model to ``path``; returns the search's record.
    """
    builder = Int8Builder(model, example, path, metadata, opset, calibration)
    try:
        start = time.perf_counter()
        ranked = tuple(builder.ranked_layers())
        result = search_kept_layers(
            len(ranked),
            lambda k: request.drop(builder.write(path, ranked[:k])),
            request.max_drop,
            request.budget,
            request.plain_drop,
        )
        kept = ranked[: result.chosen.kept]
        builder.write(path, kept)
        seconds = time.perf_counter() - start
        return search_record(
            result, [layer.name for layer in kept], KEPT_AS, seconds, request.budget, "ai-edge-quantizer"
        )
    finally:
        builder.close()
