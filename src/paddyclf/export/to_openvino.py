"""OpenVINO IR (``.xml`` + ``.bin``, float32, dynamic batch) and its INT8 by NNCF post-training quantization.

INT8 uses the ``MIXED`` preset and ``fast_bias_correction=False`` (full bias correction), which is
what keeps MobileNetV3's hard-swish and squeeze-excitation blocks from losing accuracy.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .graph import graph_module, output_names
from .int8_search import SearchRequest
from .nncf_search import nncf_search_record, quantize_with_accuracy_control

LAYER_OPS = ("Convolution", "GroupConvolution", "MatMul")  # what the search decides the precision of


def convert(model, example: torch.Tensor):
    import openvino as ov

    size = example.shape[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = ov.convert_model(
            graph_module(model), example_input=example, input=[ov.PartialShape([-1, 3, size, size])]
        )
    for port, name in zip(converted.outputs, output_names(model), strict=True):
        port.get_tensor().set_names({name})
    return converted


def write_openvino(model, example: torch.Tensor, path: Path, metadata: dict, opset: int, calibration=None) -> Path:
    import openvino as ov

    ov.save_model(convert(model, example), str(path), compress_to_fp16=False)
    return path


def write_openvino_int8(
    model, example: torch.Tensor, path: Path, metadata: dict, opset: int, calibration: torch.Tensor
) -> Path:
    import nncf
    import openvino as ov

    quantized = nncf.quantize(
        convert(model, example),
        nncf.Dataset([image[None].numpy() for image in calibration]),
        subset_size=len(calibration),
        preset=nncf.QuantizationPreset.MIXED,
        fast_bias_correction=False,
    )
    ov.save_model(quantized, str(path))
    return path


def quantized_layers(ov_model) -> set[str]:
    """The layers that compute in INT8 (their activation input is a FakeQuantize), as ``"<type> #<i>"``.

    ``i`` counts the model's convolutions and matrix products in execution order: friendly names
    are no identity here (OpenVINO names the fused ones afresh, ``Multiply_<n>``, on every read),
    and quantization inserts nodes but never reorders these.
    """
    layers = [op for op in ov_model.get_ordered_ops() if op.get_type_name() in LAYER_OPS]
    return {
        f"{op.get_type_name()} #{i}"
        for i, op in enumerate(layers)
        if op.input_value(0).get_node().get_type_name() == "FakeQuantize"
    }


def run_openvino(compiled, images):
    return compiled(images)[compiled.output(0)]


def search_openvino_int8(
    model, example: torch.Tensor, path: Path, metadata: dict, opset: int, calibration, request: SearchRequest
) -> dict:
    """NNCF's accuracy-controlled INT8 (:mod:`paddyclf.export.nncf_search`) over the plain one at ``path``."""
    import openvino as ov

    plain = quantized_layers(ov.Core().read_model(str(path)))
    quantized, counter, seconds = quantize_with_accuracy_control(
        convert(model, example), calibration, request, run_openvino
    )
    ov.save_model(quantized, str(path))
    # read back: the saved IR (weights compressed) is what `plain` was counted on, and what ships
    searched = quantized_layers(ov.Core().read_model(str(path)))
    return nncf_search_record(request, plain, searched, counter, seconds)
