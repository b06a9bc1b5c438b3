"""Checkpoints: what a ``<model_name>_best.pt`` holds, and how to load one safely.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(path, weights_only=True)`` (no pickled code runs)::

    {"format": "paddyclf-checkpoint", "version": 1,
     "state_dict": {...}, "config": {architecture, num_classes, heads, image_size, dropout,
     reduction, backbone}, "label2id": {...}, "normalization": {mean, std, crop_pct},
     "epoch": int, "metrics": {...}}
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from .data import Normalization
from .engine import EpochResult
from .errors import UserError
from .fileio import save_torch
from .models import create_model, model_kwargs
from .runstate import RunState

CHECKPOINT_FORMAT = "paddyclf-checkpoint"
CHECKPOINT_VERSION = 1


def model_config(config, num_classes: int) -> dict:
    """The architecture part of a :class:`~paddyclf.config.TrainConfig` that rebuilds the model."""
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
    return _load_weights_only(
        path, CHECKPOINT_FORMAT, "Checkpoint", "a paddyclf checkpoint (written by `paddyclf train`)"
    )


def _load_weights_only(path: str | Path, fmt: str, what: str, expected: str) -> dict:
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


# --------------------------------------------------------------------------- resumable training state

TRAIN_STATE_FORMAT = "paddyclf-train-state"


def rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) RNG states, in types ``weights_only`` loading accepts."""
    import random

    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import random

    import numpy as np

    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_train_state(
    path,
    model,
    optimizer,
    scheduler,
    scaler,
    config,
    arch: dict,
    label2id: dict,
    norm: Normalization,
    state,
    partial,
    ema=None,
) -> Path:
    """Write ``<model_name>_last.pt`` atomically: everything an exact ``--resume`` needs."""
    from dataclasses import asdict

    payload = {
        "format": TRAIN_STATE_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": dict(arch),
        "train_config": asdict(config),
        "label2id": dict(label2id),
        "normalization": norm.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": state.epoch,
        "skip": state.skip,
        "partial": None
        if partial is None
        else {
            "loss_sum": partial.loss_sum,
            "correct": partial.correct,
            "images": partial.images,
            "seconds": partial.seconds,
            "steps": partial.steps,
            "failures": list(partial.failures),
        },
        "best_f1": state.best_f1,
        "best_epoch": state.best_epoch,
        "stale": state.stale,
        "history": {k: list(v) for k, v in state.history.items()},
        "rng": rng_state(),
        "ema": None if ema is None else ema.state_dict(),
    }
    return save_torch(path, payload)


def load_train_state(path, arch: dict, label2id: dict) -> dict:
    """Load a ``_last.pt`` (``weights_only=True``); refuse one of another architecture or class set."""
    state = _load_weights_only(path, TRAIN_STATE_FORMAT, "--resume", "a training state (a run's <model_name>_last.pt)")
    if state["config"] != arch:
        diff = {k: (state["config"].get(k), v) for k, v in arch.items() if state["config"].get(k) != v}
        raise UserError(
            f"Refusing to resume from {path}: it was trained with another architecture "
            f"({', '.join(f'{k}: {old} in the checkpoint, {new} now' for k, (old, new) in diff.items())})."
        )
    if state["label2id"] != label2id:
        raise UserError(f"Refusing to resume from {path}: its class set differs from the current label2id.")
    return state


def restore_train_state(
    state: dict, model, optimizer, scheduler, scaler, keep_partial: bool = True, ema=None
) -> RunState:
    """Load a ``_last.pt`` into the live objects; return the RunState to continue from.

    ``keep_partial`` is true on rank 0 only: the saved sums of an interrupted epoch already
    cover every rank. A run with ``--ema-decay`` needs a ``_last.pt`` that has EMA weights.
    """
    if ema is not None:
        if state.get("ema") is None:
            raise UserError("Refusing to resume: --ema-decay is on, but the saved state has no EMA weights.")
        ema.load_state_dict(state["ema"])
    unwrap(model).load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    run = RunState(state["epoch"], None, state["skip"], state["best_f1"], state["best_epoch"], state["stale"])
    for key, values in state["history"].items():
        run.history[key] = list(values)
    if state["partial"] is not None:
        run.partial = EpochResult(**state["partial"]) if keep_partial else EpochResult(steps=state["partial"]["steps"])
    return run
