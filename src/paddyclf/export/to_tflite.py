"""LiteRT (``.tflite``) for Android, by ``litert-torch``; INT8 by LiteRT's own ``ai-edge-quantizer``.

The file takes what a phone camera pipeline produces: one NHWC float32 image, batch fixed to 1
(LiteRT does not support a dynamic batch). INT8 recipe (measured, docs/BENCHMARKS.md section 7):
static int8 weights and activations for the convolutions, depthwise convolutions and the
classifier, except the squeeze-excitation convolutions, which get int8 weights only (their
activations in int8 took rice5 accuracy from 0.93 to 0.56: the known MobileNetV3 collapse);
everything else (hard-swish, attention, the OOD score) stays float.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from .graph import graph_module

SQUEEZE_EXCITE = ".*SqueezeExcite.*"


def write_tflite(model, example: torch.Tensor, path: Path, metadata: dict, opset: int, calibration=None) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "0")  # its per-stage log lines; errors still raise
    import litert_torch

    nhwc = example[:1].permute(0, 2, 3, 1).contiguous()
    module = litert_torch.to_channel_last_io(graph_module(model), args=[0]).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        litert_torch.convert(module, (nhwc,)).export(str(path))
    return path


def int8_recipe():
    from ai_edge_quantizer import qtyping, recipe_manager

    manager = recipe_manager.RecipeManager()
    ops = qtyping.TFLOperationName
    for op in (ops.CONV_2D, ops.DEPTHWISE_CONV_2D, ops.FULLY_CONNECTED):
        regex = f"^(?!{SQUEEZE_EXCITE}).*" if op == ops.CONV_2D else ".*"
        manager.add_static_config(regex=regex, operation_name=op, activation_num_bits=8, weight_num_bits=8)
    manager.add_weight_only_config(regex=SQUEEZE_EXCITE, operation_name=ops.CONV_2D, num_bits=8)
    return manager.get_quantization_recipe()


def write_tflite_int8(
    model, example: torch.Tensor, path: Path, metadata: dict, opset: int, calibration: torch.Tensor
) -> Path:
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer

    float_path = path.with_name(path.stem + ".float.tflite")
    write_tflite(model, example, float_path, metadata, opset)
    signatures = Interpreter(str(float_path)).get_signature_list()
    key = next(iter(signatures))
    input_name = signatures[key]["inputs"][0]
    images = calibration.permute(0, 2, 3, 1).contiguous().numpy()
    tool = quantizer.Quantizer(str(float_path))
    tool.load_quantization_recipe(int8_recipe())
    calibrated = tool.calibrate({key: [{input_name: image[None]} for image in images]}, num_threads=1)
    tool.quantize(calibrated, enable_progress_report=False).export_model(str(path), overwrite=True)
    float_path.unlink()
    return path
