"""Models: attention blocks, the MobileNetV3-Small variants, and a registry/factory by name.

>>> from paddyclf.models import create_model
>>> model = create_model("MobileNetV3_Small_BoT_Linear", num_classes=4, heads=4)
"""

from __future__ import annotations

import inspect

from torch import nn

from .attention import CoordinateAttention, LinearMHSA, SoftmaxMHSA, linear_attention
from .blocks import BoTNetBlock, BoTNetBlockLinear, CABlock
from .classifiers import (
    DEFAULT_BACKBONE,
    MobileNetV3_Small,
    MobileNetV3_Small_BoT,
    MobileNetV3_Small_BoT_Linear,
    MobileNetV3_Small_Hybrid,
    PaddyClassifier,
)

MODEL_REGISTRY: dict[str, type[PaddyClassifier]] = {
    cls.__name__: cls
    for cls in (
        MobileNetV3_Small,
        MobileNetV3_Small_BoT,
        MobileNetV3_Small_BoT_Linear,
        MobileNetV3_Small_Hybrid,
    )
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model` (and by ``--model``)."""
    return sorted(MODEL_REGISTRY)


def model_arguments(name: str) -> set[str]:
    """The constructor arguments of model ``name`` (e.g. only the Hybrid takes ``reduction``)."""
    return set(inspect.signature(MODEL_REGISTRY[name]).parameters) - {"backbone_kwargs"}


def create_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build model ``name``; keyword arguments the model does not take are dropped.

    Dropping lets one config (heads, image_size, reduction, ...) build every variant; e.g.
    ``reduction`` only reaches the Hybrid. ``backbone`` and ``pretrained_weights`` go to every model.
    """
    if name not in MODEL_REGISTRY:
        raise KeyError(f"unknown model {name!r}; choose from {', '.join(list_models())}")
    accepted = model_arguments(name) | {"backbone", "pretrained_weights"}
    return MODEL_REGISTRY[name](num_classes=num_classes, **{k: v for k, v in kwargs.items() if k in accepted})


def model_kwargs(arch: dict) -> dict:
    """:func:`create_model` keyword arguments from a checkpoint's ``config`` dict (architecture, ...)."""
    kwargs = dict(arch)
    kwargs["name"] = kwargs.pop("architecture")
    return kwargs


__all__ = [
    "DEFAULT_BACKBONE",
    "MODEL_REGISTRY",
    "BoTNetBlock",
    "BoTNetBlockLinear",
    "CABlock",
    "CoordinateAttention",
    "LinearMHSA",
    "MobileNetV3_Small",
    "MobileNetV3_Small_BoT",
    "MobileNetV3_Small_BoT_Linear",
    "MobileNetV3_Small_Hybrid",
    "PaddyClassifier",
    "SoftmaxMHSA",
    "create_model",
    "linear_attention",
    "list_models",
    "model_arguments",
    "model_kwargs",
]
