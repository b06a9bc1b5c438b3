"""Where a training run stands, and ``<model_name>_last.pt``: everything an exact ``--resume`` needs.

:class:`RunState` is what the loop keeps beyond model, optimizer and scheduler (epoch, position inside
it, early-stopping counters, history). :func:`save_train_state` writes it with the weights, optimizer,
scheduler, scaler, EMA and every RNG state, in types ``torch.load(weights_only=True)`` accepts;
:func:`load_train_state` and :func:`restore_train_state` bring a run back exactly.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import CHECKPOINT_VERSION, load_weights_only, unwrap
from ..data import Normalization
from ..errors import UserError
from ..fileio import save_torch
from .engine import EpochResult


@dataclass
class RunState:
    epoch: int = 1  # the epoch in progress (or the next one)
    partial: EpochResult | None = None  # sums of the batches already done in ``epoch``
    skip: int = 0  # training indices of ``epoch`` already consumed (per rank)
    best_f1: float = -1.0
    best_epoch: int = 0
    stale: int = 0
    history: dict = field(default_factory=lambda: defaultdict(list))


TRAIN_STATE_FORMAT = "paddyclf-train-state"


def rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) RNG states, in types ``weights_only`` loading accepts."""
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
    state = load_weights_only(path, TRAIN_STATE_FORMAT, "--resume", "a training state (a run's <model_name>_last.pt)")
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
