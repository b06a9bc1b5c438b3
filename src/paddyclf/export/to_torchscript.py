"""TorchScript (traced, metadata as the archive's extra file ``paddyclf.json``)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from ..inference.runtimes import TORCHSCRIPT_METADATA
from .graph import graph_module


def write_torchscript(model, example: torch.Tensor, path: Path, metadata: dict, opset: int, calibration=None) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph_module(model), example)
        torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_METADATA: json.dumps(metadata)})
    return path
