"""OpenVINO IR (``.xml`` + ``.bin``, float32, dynamic batch) and its INT8 by NNCF post-training quantization.

INT8 uses the ``MIXED`` preset and ``fast_bias_correction=False`` (full bias correction), which is
what keeps MobileNetV3's hard-swish and squeeze-excitation blocks from losing accuracy.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .graph import graph_module, output_names


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
