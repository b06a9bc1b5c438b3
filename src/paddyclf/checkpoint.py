"""Checkpoints: what a ``<model_name>_best.pt`` holds, and how to load one safely.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(path, weights_only=True)`` (no pickled code runs)::

    {"format": "paddyclf-checkpoint", "version": 1,
     "state_dict": {...}, "config": {architecture, num_classes, heads, image_size, dropout,
     reduction, backbone}, "label2id": {...}, "normalization": {mean, std, crop_pct},
     "epoch": int, "metrics": {...}}

A run's resumable state (``<model_name>_last.pt``) is the training's own: :mod:`paddyclf.training.state`.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from .data import Normalization
from .errors import UserError
from .fileio import save_torch
from .models import create_model, model_kwargs

CHECKPOINT_FORMAT = "paddyclf-checkpoint"
CHECKPOINT_VERSION = 1


def model_config(config, num_classes: int) -> dict:
    """The architecture part of a :class:`~paddyclf.training.config.TrainConfig` that rebuilds the model."""
    return {
        "architecture": config.model,
        "num_classes": num_classes,
        "heads": config.heads,
        "image_size": config.image_size,
        "dropout": config.dropout,
        "reduction": config.reduction,
        "backbone": config.backbone,
    }


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    arch: dict,
    label2id: dict[str, int],
    norm: Normalization,
    epoch: int,
    metrics: dict,
    **extra,
) -> Path:
    """Write the checkpoint atomically (temp file + rename)."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "config": dict(arch),
        "label2id": dict(label2id),
        "normalization": norm.to_dict(),
        "epoch": epoch,
        "metrics": dict(metrics),
        **extra,
    }
    return save_torch(path, state)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DistributedDataParallel and/or torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def load_checkpoint(path: str | Path) -> dict:
    """Load a paddyclf checkpoint with ``weights_only=True``; a clear UserError for anything else."""
    return load_weights_only(
        path, CHECKPOINT_FORMAT, "Checkpoint", "a paddyclf checkpoint (written by `paddyclf train`)"
    )


def load_weights_only(path: str | Path, fmt: str, what: str, expected: str) -> dict:
    """``torch.load(weights_only=True)`` of a dict whose ``format`` is ``fmt``; UserError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} not found.")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise UserError(
            f"{what} {path} could not be read ({type(exc).__name__}: {first_line(exc)}). "
            f"It may be truncated or not {expected}."
        ) from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise UserError(f"{what} {path} is not {expected}.")
    return data


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, shortened: enough to diagnose, no wall of text."""
    return (str(exc).splitlines() or [""])[0][:limit]


def model_from_checkpoint(ckpt: dict) -> nn.Module:
    """Rebuild the model of a loaded checkpoint (no pretrained download) in eval mode."""
    model = create_model(pretrained=False, **model_kwargs(ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def class_names(label2id: dict[str, int]) -> list[str]:
    """Label names ordered by id."""
    return [name for name, _ in sorted(label2id.items(), key=lambda kv: kv[1])]
