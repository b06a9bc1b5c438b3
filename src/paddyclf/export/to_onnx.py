"""ONNX (float32, dynamic batch, metadata embedded) and ONNX INT8 (static QDQ, per-channel, by NNCF).

INT8: NNCF's post-training quantization of the ONNX graph, calibrated on real photos, with
``fast_bias_correction=False`` (full bias correction) and the ``MIXED`` preset (symmetric
per-channel weights, asymmetric activations); it writes standard QuantizeLinear/DequantizeLinear
pairs that ONNX Runtime runs. Measured against ONNX Runtime's own ``quantize_static`` (docs/
BENCHMARKS.md section 7): the same QDQ per-channel scheme without bias correction lost 1.5-3
points on rice5 in every configuration tried; NNCF lost none.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from ..inference.runtimes import ONNX_METADATA_KEY
from .graph import graph_module, output_names
from .int8_search import SearchRequest
from .nncf_search import nncf_search_record, quantize_with_accuracy_control

LAYER_OPS = ("Conv", "Gemm", "MatMul")  # the ops NNCF quantizes whose precision the search decides


def write_onnx(model, example: torch.Tensor, path: Path, metadata: dict, opset: int, calibration=None) -> Path:
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
    embed_metadata(proto, metadata)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def embed_metadata(proto, metadata: dict) -> None:
    for entry in list(proto.metadata_props):
        if entry.key == ONNX_METADATA_KEY:
            proto.metadata_props.remove(entry)
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(metadata)


def write_onnx_int8(
    model, example: torch.Tensor, path: Path, metadata: dict, opset: int, calibration: torch.Tensor
) -> Path:
    import nncf
    import onnx

    write_onnx(model, example, path, metadata, opset)
    dataset = nncf.Dataset([{"input": image[None].numpy()} for image in calibration])
    quantized = nncf.quantize(
        onnx.load(str(path)),
        dataset,
        subset_size=len(calibration),
        preset=nncf.QuantizationPreset.MIXED,
        fast_bias_correction=False,
    )
    embed_metadata(quantized, metadata)
    onnx.save(quantized, str(path))
    return path


def quantized_layers(proto) -> set[str]:
    """Names of the layers that compute in INT8: their activation input comes out of a DequantizeLinear."""
    dequantized = {out for node in proto.graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    return {node.name for node in proto.graph.node if node.op_type in LAYER_OPS and node.input[0] in dequantized}


def run_onnx(proto, images):
    import onnxruntime as ort

    options = ort.SessionOptions()
    # NNCF's ranking reverts one group of quantizers at a time; some intermediate graphs (a weight's
    # DequantizeLinear left without its activation pair) make ORT's extended fusions build an invalid
    # MatMulIntegerToFloat. Basic optimizations run every such graph; the file written is checked by
    # the gate through the predictor, with ORT's defaults.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": images})[0]


def search_onnx_int8(
    model, example: torch.Tensor, path: Path, metadata: dict, opset: int, calibration, request: SearchRequest
) -> dict:
    """NNCF's accuracy-controlled INT8 (:mod:`paddyclf.export.nncf_search`) over the plain one at ``path``."""
    import onnx

    plain = quantized_layers(onnx.load(str(path)))
    write_onnx(model, example, path, metadata, opset)
    quantized, counter, seconds = quantize_with_accuracy_control(
        onnx.load(str(path)), calibration, request, run_onnx, lambda images: {"input": images}
    )
    embed_metadata(quantized, metadata)
    onnx.save(quantized, str(path))
    return nncf_search_record(request, plain, quantized_layers(quantized), counter, seconds)
