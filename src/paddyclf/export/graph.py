"""The module every export traces: the classifier with its out-of-distribution score, as one graph."""

from __future__ import annotations

import torch
from torch import nn

from ..trust import TrustedModel


def output_names(model: TrustedModel) -> list[str]:
    """``logits``, plus ``ood_score`` when the checkpoint has an OOD score."""
    return ["logits"] + (["ood_score"] if model.score is not None else [])


class LogitsOnly(nn.Module):
    """An uncalibrated checkpoint exports as before: logits only."""

    def __init__(self, model: TrustedModel) -> None:
        super().__init__()
        self.model = model.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def graph_module(model: TrustedModel) -> nn.Module:
    """What the exported graph runs: the TrustedModel, or just the classifier when there is no score."""
    return (model if model.score is not None else LogitsOnly(model)).eval()


def example_batch(image_size: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
