"""Fine-tuning recipes: named sets of the regularisers a run adds, and the small objects that apply them.

``guide`` is the founding guide's recipe (none of the additions); ``field`` is the combination that
``paddyclf benchmark recipe`` measured best on a leak-free split of real photos with 30 training
photos per class (docs/BENCHMARKS.md). A flag given explicitly overrides the recipe's value.

The pieces, each off when its value is 0 / "none":

* :func:`make_criterion`: cross-entropy with label smoothing (soft targets accepted);
* :class:`BatchMixer`: MixUp and/or CutMix of a batch (torchvision v2), one of them per batch;
* :class:`EmaWeights`: an exponential moving average of the weights (timm ``ModelEmaV3`` with
  warm-up), which then validates, fills the best checkpoint and is what every later use loads;
* :func:`make_scheduler`: linear warm-up for ``warmup_epochs``, then the guide's cosine schedule;
* the train-transform additions ``augment`` (TrivialAugmentWide / RandAugment) and random erasing
  live in :func:`paddyclf.data.build_transform`.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms import v2

# every field a recipe sets: the guide's are its learning rates and every addition "off"; another
# recipe lists what it changes from the guide (``recipe_values`` merges the two)
RECIPES: dict[str, dict[str, object]] = {
    "guide": {
        "base_lr": 5e-5,
        "head_lr": 5e-4,
        "label_smoothing": 0.0,
        "ema_decay": 0.0,
        "mixup": 0.0,
        "cutmix": 0.0,
        "augment": "none",
        "random_erasing": 0.0,
        "warmup_epochs": 0,
    },
    # `paddyclf benchmark recipe` on leak-free rice5, 30 photos per class (docs/BENCHMARKS.md, section 5):
    # 4x the guide's learning rates cut the valid error by 44%; adding label smoothing to them did
    # worse (39%); EMA, MixUp, CutMix, TrivialAugment and RandAugment made the guide recipe worse
    "field": {"base_lr": 2e-4, "head_lr": 2e-3},  # what it changes from the guide
}
RECIPE_FIELDS = tuple(RECIPES["guide"])
AUGMENTS = ("none", "trivial", "randaugment")


def recipe_values(name: str) -> dict[str, object]:
    """The values recipe ``name`` sets (the guide's for an unknown name; validation reports it)."""
    return {**RECIPES["guide"], **RECIPES.get(name, {})}


def describe(name: str) -> str:
    """``label_smoothing=0.1, ema_decay=0.998, ...``: what a recipe changes from the guide."""
    changed = {k: v for k, v in recipe_values(name).items() if v != RECIPES["guide"][k]}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "nothing (the guide's recipe)"


def make_criterion(label_smoothing: float) -> nn.Module:
    """Cross-entropy; accepts class indices or (mixed) class probabilities as targets."""
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)


class BatchMixer:
    """MixUp (Zhang et al. 2018) and/or CutMix (Yun et al. 2019) on a batch, with torchvision v2.

    ``(images (N, C, H, W), labels (N,)) -> (mixed images, targets (N, K))``; each target row sums
    to 1. With both alphas > 0 one of the two is drawn per batch. Randomness comes from torch's
    global generator, so it is seeded with the run and restored by ``--resume``.
    """

    def __init__(self, mixup_alpha: float, cutmix_alpha: float, num_classes: int) -> None:
        ops = []
        if mixup_alpha > 0:
            ops.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            ops.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        if not ops:
            raise ValueError("BatchMixer needs mixup_alpha > 0 or cutmix_alpha > 0")
        self.op = ops[0] if len(ops) == 1 else v2.RandomChoice(ops)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.op(images, labels)

    @classmethod
    def from_config(cls, config, num_classes: int) -> BatchMixer | None:
        if config.mixup <= 0 and config.cutmix <= 0:
            return None
        return cls(config.mixup, config.cutmix, num_classes)


class EmaWeights:
    """An exponential moving average of a model's weights (timm ``ModelEmaV3``, with warm-up).

    ``update(model)`` after every optimizer step; ``module`` is the averaged model (eval mode). With
    warm-up the decay grows as ``1 - (1 + step)^(-2/3)`` up to ``decay``, so early, poor weights fade
    quickly. ``updates`` counts the steps; it is saved in ``_last.pt`` so a resumed run averages exactly
    as an uninterrupted one.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        from timm.utils import ModelEmaV3

        self.ema = ModelEmaV3(model, decay=decay, use_warmup=True)
        self.updates = 0

    @property
    def module(self) -> nn.Module:
        return self.ema.module

    def update(self, model: nn.Module) -> None:
        model = getattr(model, "module", model)  # DistributedDataParallel
        model = getattr(model, "_orig_mod", model)  # torch.compile
        self.updates += 1
        self.ema.update(model, step=self.updates)

    def state_dict(self) -> dict:
        return {"state_dict": self.ema.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.ema.module.load_state_dict(state["state_dict"])
        self.updates = int(state["updates"])

    @classmethod
    def from_config(cls, config, model: nn.Module) -> EmaWeights | None:
        return cls(model, config.ema_decay) if config.ema_decay > 0 else None


def make_scheduler(optimizer: torch.optim.Optimizer, epochs: int, warmup_epochs: int):
    """Per-epoch schedule: ``CosineAnnealingLR(T_max=epochs)``; with warm-up, first a linear ramp.

    Warm-up runs epochs 1..w at (1..w) / (w + 1) of the learning rates, then the cosine over the
    remaining ``epochs - w`` epochs starts at the full rates.
    """
    if warmup_epochs <= 0:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    warmup = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=1.0 / (warmup_epochs + 1), total_iters=warmup_epochs
    )
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs - warmup_epochs))
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_epochs])
