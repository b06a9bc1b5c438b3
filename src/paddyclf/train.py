"""The training run, top to bottom: data -> model -> optimizer -> epochs -> best checkpoint -> report.

Call :func:`train` with a :class:`~paddyclf.config.TrainConfig`; the CLI and the three root
scripts are thin wrappers around it.
"""

from __future__ import annotations

import random
import sys
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import checkpoint as ckpt_io
from .config import TrainConfig
from .data import Normalization, load_label2id, load_splits, make_loader
from .engine import NonFiniteLossError, autocast_dtype, evaluate, measure_fps, train_one_epoch
from .errors import UserError
from .fileio import write_json
from .metrics import classification_metrics
from .models import create_model, model_kwargs
from .plots import plot_history

FPS_BATCH_SIZE = 32
HISTORY_KEYS = ("train_loss", "valid_loss", "train_acc", "valid_acc", "valid_f1", "learning_rates")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu. Asking for an absent CUDA is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device; use cpu, cuda, cuda:N or auto.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} was asked for, but no CUDA GPU is available; use --device cpu.")
    return device


def parameter_groups(model: nn.Module, base_lr: float, head_lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups: backbone at ``base_lr``, new modules at ``head_lr``; each split into decay / no decay.

    Norm weights, biases (every 1-D parameter) and position tables get no weight decay:
    shrinking them towards zero regularises nothing useful.
    """
    no_decay_names = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    groups: dict[tuple[str, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "backbone" if name.startswith("backbone.") else "head"
        decay = param.ndim > 1 and name not in no_decay_names
        groups.setdefault((part, decay), []).append(param)
    lrs = {"backbone": base_lr, "head": head_lr}
    return [
        {
            "name": f"{part}_{'decay' if decay else 'no_decay'}",
            "params": params,
            "lr": lrs[part],
            "weight_decay": weight_decay if decay else 0.0,
        }
        for (part, decay), params in sorted(groups.items())
    ]


def head_lr_of(optimizer: torch.optim.Optimizer) -> float:
    return next(g["lr"] for g in optimizer.param_groups if g["name"].startswith("head"))


def model_size(model: nn.Module) -> tuple[int, float]:
    """(parameter count, size in MiB of parameters + buffers as stored in float32)."""
    num_params = sum(p.numel() for p in model.parameters())
    num_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    return num_params, num_bytes / 2**20


def summary_line(epoch: int, epochs: int, train, valid, lr: float) -> str:
    line = (
        f"epoch {epoch:>3}/{epochs}  train_loss {train.loss:.4f}  train_acc {train.accuracy:.4f}  "
        f"valid_loss {valid.loss:.4f}  valid_acc {valid.accuracy:.4f}  valid_f1 {valid.f1:.4f}  "
        f"lr {lr:.2e}  {train.seconds + valid.seconds:.1f}s  {train.images_per_second:.1f} img/s"
    )
    failures = train.failures + valid.failures
    if failures:
        line += f"\n  skipped {len(failures)} unreadable image(s) this epoch; first: {failures[0]}"
    return line


def format_metrics(metrics: dict) -> str:
    """The end-of-training block, in the guide's exact shape."""
    return "\n".join(
        [
            "Training finished. Metrics:",
            f"  model_name: {metrics['model_name']}",
            f"  size_mb: {metrics['size_mb']:.2f}",
            f"  valid_acc: {metrics['valid_acc']:.4f}",
            f"  valid_f1: {metrics['valid_f1']:.4f}",
            f"  fps: {metrics['fps']:.2f}",
            f"  num_params: {metrics['num_params']}",
            f"  ckpt_path: {metrics['ckpt_path']}",
        ]
    )


def log(message: str) -> None:
    print(message, flush=True)


def train(config: TrainConfig, progress: bool | None = None) -> dict:
    """Run a full training as ``config`` describes; return the final metrics dict.

    Raises :class:`UserError` for bad input before anything is written.
    """
    config.validate()
    progress = sys.stderr.isatty() if progress is None else progress
    label2id = load_label2id(config.label2id)
    num_classes = len(label2id)
    names = ckpt_io.class_names(label2id)
    splits = load_splits(
        config.metadata, label2id, config.seed, {"train": config.train_limit, "valid": config.valid_limit}
    )
    device = resolve_device(config.device)
    seed_everything(config.seed)

    # ---- model
    arch = ckpt_io.model_config(config, num_classes)
    try:
        model = create_model(
            pretrained=config.pretrained, pretrained_weights=config.pretrained_weights, **model_kwargs(arch)
        ).to(device)
    except ValueError as exc:  # e.g. --heads not dividing the attention width
        raise UserError(f"Invalid model options: {exc}.") from None
    norm = Normalization.from_pretrained_cfg(model.pretrained_cfg)
    num_params, size_mb = model_size(model)
    log(
        f"{config.run_name}: {config.model} on {device}, {num_params:,} parameters, {num_classes} classes, "
        f"{len(splits['train'])} train / {len(splits['valid'])} valid images at {config.image_size}px"
    )

    # ---- data
    loader_args = dict(
        image_size=config.image_size,
        norm=norm,
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        seed=config.seed,
        pin_memory=config.pin_memory,
    )
    train_loader = make_loader(splits["train"], train=True, **loader_args)
    valid_loader = make_loader(splits["valid"], train=False, **loader_args)

    # ---- optimisation
    optimizer = torch.optim.AdamW(parameter_groups(model, config.base_lr, config.head_lr, config.weight_decay))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.scheduler_tmax or config.epochs)
    amp_dtype = autocast_dtype(device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    # ---- epochs
    output_dir = Path(config.output_dir)
    results_dir = output_dir / "results"
    best_path = output_dir / f"{config.run_name}_best.pt"
    history: dict[str, list] = defaultdict(list)
    best_f1, best_epoch, stale = -1.0, 0, 0
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        lr = head_lr_of(optimizer)
        try:
            train_result = train_one_epoch(
                model,
                train_loader,
                optimizer,
                device,
                epoch,
                scaler,
                amp_dtype,
                config.grad_clip,
                progress=progress,
            )
        except NonFiniteLossError as exc:
            last_good = f" The last good checkpoint is {best_path}." if best_epoch else ""
            raise UserError(
                f"Training diverged: the {exc}. Lower --head-lr/--base-lr or check the data.{last_good}"
            ) from None
        valid_result = evaluate(model, valid_loader, device, num_classes, amp_dtype, progress=progress)
        scheduler.step()
        epoch_values = {
            "train_loss": train_result.loss,
            "valid_loss": valid_result.loss,
            "train_acc": train_result.accuracy,
            "valid_acc": valid_result.accuracy,
            "valid_f1": valid_result.f1,
            "learning_rates": lr,
            "epoch_seconds": train_result.seconds + valid_result.seconds,
            "skipped_images": len(train_result.failures) + len(valid_result.failures),
        }
        for key, value in epoch_values.items():
            history[key].append(value)
        log(summary_line(epoch, config.epochs, train_result, valid_result, lr))

        if valid_result.f1 > best_f1:
            best_f1, best_epoch, stale = valid_result.f1, epoch, 0
            epoch_metrics = {
                "valid_acc": valid_result.accuracy,
                "valid_f1": valid_result.f1,
                "valid_loss": valid_result.loss,
            }
            ckpt_io.save_checkpoint(best_path, model, arch, label2id, norm, epoch, epoch_metrics, seed=config.seed)
        else:
            stale += 1
        if config.patience > 0 and stale >= config.patience and epoch < config.epochs:
            log(
                f"Early stopping: valid macro-F1 has not improved for {config.patience} epochs "
                f"(best {best_f1:.4f} at epoch {best_epoch})."
            )
            break
    training_seconds = time.perf_counter() - start

    # ---- final report from the reloaded best checkpoint
    best = ckpt_io.model_from_checkpoint(ckpt_io.load_checkpoint(best_path)).to(device)
    final = evaluate(best, valid_loader, device, num_classes, amp_dtype, progress=progress)
    fps = measure_fps(best, device, config.image_size, FPS_BATCH_SIZE, amp_dtype=amp_dtype)
    metrics = {
        "model_name": config.run_name,
        "size_mb": round(size_mb, 4),
        "valid_acc": final.accuracy,
        "valid_f1": final.f1,
        "fps": fps,
        "num_params": num_params,
        "ckpt_path": str(best_path),
    }
    log(format_metrics(metrics))

    if config.save_history:
        details = classification_metrics(final.targets, final.predictions, num_classes, names)
        write_json(results_dir / f"{config.run_name}_history.json", history)
        write_json(
            results_dir / f"{config.run_name}_metrics.json",
            {
                **metrics,
                "architecture": config.model,
                "valid_loss": final.loss,
                "best_epoch": best_epoch,
                "epochs_run": len(history["train_loss"]),
                "training_seconds": training_seconds,
                "classes": names,
                "per_class": details["per_class"],
                "confusion_matrix": details["confusion_matrix"],
                "device": str(device),
                "fps_batch_size": FPS_BATCH_SIZE,
                "fps_threads": torch.get_num_threads(),
                "fps_precision": str(amp_dtype or torch.float32).replace("torch.", ""),
                "config": asdict(config),
            },
        )
    if config.plot:
        plot_history(history, results_dir / f"{config.run_name}_history.png", title=config.run_name)
    return metrics
