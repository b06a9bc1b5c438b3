"""MobileNetV3-Small classifiers: a plain baseline and the three attention-head variants.

Every model is ``backbone (timm features, stride 32) -> head blocks -> global average pool ->
dropout -> linear``. Only the head blocks differ, so each variant is a few lines.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from ..errors import UserError
from .blocks import BoTNetBlock, BoTNetBlockLinear, CABlock

DEFAULT_BACKBONE = "mobilenetv3_small_100"
BACKBONE_STRIDE = 32


def create_backbone(
    name: str = DEFAULT_BACKBONE, pretrained: bool = False, pretrained_weights: str | Path | None = None
) -> nn.Module:
    """A timm feature extractor returning only its last (stride-32) map.

    ``features_only`` drops the classifier and MobileNetV3's ``conv_head`` (576 -> 1024), which this
    project never runs, so parameter counts and checkpoints hold only what is used.
    ``pretrained_weights`` (a local .safetensors/.pth) goes through timm's own loader via
    ``pretrained_cfg_overlay=dict(file=...)``; plain ``pretrained`` downloads from the hub.
    """
    kwargs: dict = {"features_only": True, "out_indices": (-1,)}
    if pretrained_weights is not None:
        path = Path(pretrained_weights)
        if not path.is_file():
            raise UserError(f"--pretrained-weights {path}: no such file.")
        kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
        pretrained = True
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except RuntimeError as exc:  # timm: unknown model name
        if "Unknown model" in str(exc):
            raise UserError(f"--backbone {name!r} is not a timm model ({exc}).") from None
        if pretrained_weights is not None:
            raise UserError(f"Could not load --pretrained-weights {pretrained_weights}: {exc}") from None
        raise
    except OSError as exc:  # no network, hub down, or a bad local file
        if pretrained_weights is not None:
            raise UserError(f"Could not load --pretrained-weights {pretrained_weights}: {exc}") from None
        raise UserError(
            f"Could not download the ImageNet weights of {name!r} ({type(exc).__name__}: {exc}). "
            "Without internet access, download the weights elsewhere and pass the file with "
            "--pretrained-weights PATH (a timm .safetensors or .pth state dict)."
        ) from None


class PaddyClassifier(nn.Module):
    """backbone -> ``make_head(channels)`` -> pool -> dropout -> linear.

    Args:
        num_classes: output logits.
        make_head: builds the attention blocks from the backbone's channel count (never hard-coded).
        pretrained / pretrained_weights / backbone: see :func:`create_backbone`.
    Shapes: (B, 3, H, W) -> (B, num_classes); H and W any multiple-of-32-friendly size >= 32.
    """

    def __init__(
        self,
        num_classes: int,
        make_head,
        dropout: float = 0.1,
        pretrained: bool = False,
        backbone: str = DEFAULT_BACKBONE,
        pretrained_weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone, pretrained, pretrained_weights)
        channels = self.backbone.feature_info.channels()[-1]
        self.num_features = channels
        self.head = make_head(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels, num_classes)

    @property
    def pretrained_cfg(self) -> dict:
        """timm's pretrained config of the backbone (mean, std, interpolation, crop_pct)."""
        return self.backbone.pretrained_cfg

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, H/32, W/32): the map the classifier pools (Grad-CAM target)."""
        return self.head(self.backbone(x)[-1])

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C): the pooled feature the classifier reads (the OOD scores' input)."""
        return self.pool(self.forward_features(x)).flatten(1)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, K), pooled feature (B, C)) from one pass."""
        pooled = self.pooled_features(x)
        return self.classifier(self.dropout(pooled)), pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(x)[0]

    def no_weight_decay(self) -> set[str]:
        """Names of position tables, which (like norms and biases) get no weight decay."""
        return {name for name, _ in self.named_parameters() if name.rsplit(".", 1)[-1] in ("rel_h", "rel_w")}


def feature_size(image_size: int) -> tuple[int, int]:
    """(H, W) of the stride-32 map for a square ``image_size`` input."""
    side = -(-image_size // BACKBONE_STRIDE)  # ceil: timm's convs pad, so 100 px -> 4
    return side, side


class MobileNetV3_Small(PaddyClassifier):
    """Plain MobileNetV3-Small features + linear classifier: the no-attention baseline."""

    def __init__(self, num_classes: int, pretrained: bool = False, dropout: float = 0.1, **backbone_kwargs) -> None:
        super().__init__(num_classes, lambda c: nn.Identity(), dropout, pretrained, **backbone_kwargs)


class MobileNetV3_Small_BoT_Linear(PaddyClassifier):
    """MobileNetV3-Small + one :class:`BoTNetBlockLinear` (linear attention)."""

    def __init__(
        self,
        num_classes: int,
        heads: int = 4,
        pretrained: bool = False,
        dropout: float = 0.1,
        **backbone_kwargs,
    ) -> None:
        super().__init__(num_classes, lambda c: BoTNetBlockLinear(c, heads), dropout, pretrained, **backbone_kwargs)


class MobileNetV3_Small_BoT(PaddyClassifier):
    """MobileNetV3-Small + one :class:`BoTNetBlock` (softmax attention, tables for ``image_size``)."""

    def __init__(
        self,
        num_classes: int,
        heads: int = 4,
        pretrained: bool = False,
        dropout: float = 0.1,
        image_size: int = 224,
        **backbone_kwargs,
    ) -> None:
        def make_head(c: int) -> nn.Module:
            return BoTNetBlock(c, heads, feature_size(image_size))

        super().__init__(num_classes, make_head, dropout, pretrained, **backbone_kwargs)


class MobileNetV3_Small_Hybrid(PaddyClassifier):
    """MobileNetV3-Small + :class:`CABlock` (coordinate attention) -> :class:`BoTNetBlock`."""

    def __init__(
        self,
        num_classes: int,
        heads: int = 4,
        pretrained: bool = False,
        dropout: float = 0.1,
        image_size: int = 224,
        reduction: int = 32,
        **backbone_kwargs,
    ) -> None:
        def make_head(c: int) -> nn.Module:
            return nn.Sequential(CABlock(c, reduction), BoTNetBlock(c, heads, feature_size(image_size)))

        super().__init__(num_classes, make_head, dropout, pretrained, **backbone_kwargs)
