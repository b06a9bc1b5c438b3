"""The training run, top to bottom: data -> model -> optimizer -> epochs -> best checkpoint -> report.

Call :func:`train` with a :class:`~paddyclf.config.TrainConfig`; the CLI and the three root
scripts are thin wrappers around it. Under torchrun the same function runs on every process
(DistributedDataParallel); only rank 0 prints and writes files.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import checkpoint as ckpt_io
from .config import TrainConfig
from .data import DecodedCache, Normalization, decode_size, load_label2id, load_splits, make_loader
from .distributed import DistInfo, init_distributed, shutdown_distributed
from .engine import EpochResult, NonFiniteLossError, autocast_dtype, evaluate, measure_fps, train_one_epoch
from .errors import TrainingInterruptedError, UserError
from .fileio import write_json
from .metrics import classification_metrics
from .models import create_model, model_kwargs
from .plots import plot_history

FPS_BATCH_SIZE = 32
HISTORY_KEYS = ("train_loss", "valid_loss", "train_acc", "valid_acc", "valid_f1", "learning_rates")


# --------------------------------------------------------------------------- small helpers


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> cuda when available, else cpu. Asking for an absent CUDA is a user error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device; use cpu, cuda, cuda:N or auto.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} was asked for, but no CUDA GPU is available; use --device cpu.")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)  # one GPU per torchrun process
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


def summary_line(epoch: int, epochs: int, train: EpochResult, valid, lr: float) -> str:
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


class StopOnSignal:
    """Turns SIGINT/SIGTERM into a request the training loop polls after each step.

    A second Ctrl-C while the state is being saved falls back to Python's default (KeyboardInterrupt).
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopOnSignal:
        with contextlib.suppress(ValueError):  # not in the main thread: leave signals alone
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class RunState:
    """Where a run stands: everything beyond model/optimizer/scheduler that an exact resume needs."""

    epoch: int = 1  # the epoch in progress (or the next one)
    partial: EpochResult | None = None  # sums of the batches already done in ``epoch``
    skip: int = 0  # training indices of ``epoch`` already consumed (per rank)
    best_f1: float = -1.0
    best_epoch: int = 0
    stale: int = 0
    history: dict = field(default_factory=lambda: defaultdict(list))


def summed_over_ranks(result: EpochResult, info: DistInfo) -> EpochResult:
    """This rank's epoch sums plus every other rank's (loss, correct, images, failures); as is on one process."""
    if not info.enabled:
        return result
    loss_sum, correct, images = info.sum([result.loss_sum, result.correct, result.images])
    failures = [f for fs in info.gather(result.failures) for f in fs]
    return EpochResult(loss_sum, int(correct), int(images), result.seconds, result.steps, failures)


# --------------------------------------------------------------------------- the run


def train(config: TrainConfig, progress: bool | None = None) -> dict:
    """Run a full training as ``config`` describes; return the final metrics dict.

    Raises :class:`UserError` for bad input before anything is written, and
    :class:`TrainingInterruptedError` after saving ``<model_name>_last.pt`` on SIGINT/SIGTERM.
    """
    config.validate()
    device_type = resolve_device(config.device).type
    info = init_distributed(device_type)
    try:
        return _train(config, info, progress)
    finally:
        shutdown_distributed(info)


def _train(config: TrainConfig, info: DistInfo, progress: bool | None) -> dict:
    log = print if info.is_main else (lambda *a, **k: None)
    progress = info.is_main and (sys.stderr.isatty() if progress is None else progress)
    device = resolve_device(config.device, info.local_rank)

    # ---- data description (all checks happen before anything is written)
    label2id = load_label2id(config.label2id)
    num_classes = len(label2id)
    names = ckpt_io.class_names(label2id)
    splits = load_splits(
        config.metadata, label2id, config.seed, {"train": config.train_limit, "valid": config.valid_limit}
    )
    arch = ckpt_io.model_config(config, num_classes)
    resume_state = ckpt_io.load_train_state(config.resume, arch, label2id) if config.resume else None
    torch.manual_seed(config.seed)

    # ---- model
    try:
        model = create_model(
            pretrained=config.pretrained and resume_state is None,
            pretrained_weights=config.pretrained_weights if resume_state is None else None,
            **model_kwargs(arch),
        )
    except ValueError as exc:  # e.g. --heads not dividing the attention width
        raise UserError(f"Invalid model options: {exc}.") from None
    norm = Normalization.from_pretrained_cfg(model.pretrained_cfg)
    num_params, size_mb = model_size(model)
    if info.enabled and config.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed input size: pick the fastest kernels once
    net = torch.compile(model, backend=config.compile_backend) if config.compile else model  # evaluation runs it
    trainer_net = (
        DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        if info.enabled
        else net
    )
    log(
        f"{config.run_name}: {config.model} on {device}"
        + (f" x {info.world_size} processes" if info.enabled else "")
        + f", {num_params:,} parameters, {num_classes} classes, "
        f"{len(splits['train'])} train / {len(splits['valid'])} valid images at {config.image_size}px"
    )

    # ---- data loading
    cache = (
        DecodedCache(config.cache_dir, decode_size(config.image_size, norm, train=False)) if config.cache_dir else None
    )
    loader_args = dict(
        image_size=config.image_size,
        norm=norm,
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        seed=config.seed,
        pin_memory=config.pin_memory or device.type == "cuda",
        rank=info.rank,
        world_size=info.world_size,
        cache=cache,
    )
    train_loader = make_loader(splits["train"], train=True, **loader_args)
    valid_loader = make_loader(splits["valid"], train=False, **loader_args)

    # ---- optimisation
    optimizer = torch.optim.AdamW(parameter_groups(model, config.base_lr, config.head_lr, config.weight_decay))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.scheduler_tmax or config.epochs)
    amp_dtype = autocast_dtype(device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    state = RunState()
    if resume_state is not None:
        state = ckpt_io.restore_train_state(resume_state, model, optimizer, scheduler, scaler, info.is_main)
        log(f"Resumed from {config.resume}: epoch {state.epoch}" + (", mid-epoch" if state.skip else ""))

    # ---- epochs
    output_dir = Path(config.output_dir)
    best_path = output_dir / f"{config.run_name}_best.pt"
    last_path = output_dir / f"{config.run_name}_last.pt"

    def save_last() -> None:
        partial = None if state.partial is None else summed_over_ranks(state.partial, info)  # rank 0 keeps all
        if info.is_main:
            ckpt_io.save_train_state(
                last_path, model, optimizer, scheduler, scaler, config, arch, label2id, norm, state, partial
            )

    start = time.perf_counter()
    with StopOnSignal() as stop:
        while state.epoch <= config.epochs and not (0 < config.patience <= state.stale):
            epoch = state.epoch
            lr = head_lr_of(optimizer)
            train_loader.sampler.set_epoch(epoch, skip=state.skip)
            try:
                train_result = train_one_epoch(
                    trainer_net,
                    train_loader,
                    optimizer,
                    device,
                    epoch,
                    scaler,
                    amp_dtype,
                    config.grad_clip,
                    config.channels_last,
                    progress,
                    lambda: info.any(stop.signum is not None),
                    state.partial,  # the sums of an interrupted epoch (all ranks' on rank 0, zeros elsewhere)
                )
            except NonFiniteLossError as exc:
                hint = f" The last good state is {last_path} (resume with --resume)." if last_path.is_file() else ""
                raise UserError(
                    f"Training diverged: the {exc}. Lower --head-lr/--base-lr or check the data.{hint}"
                ) from None
            if train_result.interrupted:
                state.partial, state.skip = train_result, train_result.steps * config.batch_size
                save_last()
                signum = stop.signum or signal.SIGINT
                raise TrainingInterruptedError(
                    signum,
                    f"Interrupted by {signal.Signals(signum).name} at epoch {epoch}, step {train_result.steps}. "
                    f"Saved {last_path}; continue with the same command plus --resume {last_path}",
                )
            train_result = summed_over_ranks(train_result, info)
            valid_result = evaluate(
                net, valid_loader, device, num_classes, amp_dtype, config.channels_last, progress, gather=info.gather
            )
            if len(valid_result.targets) == 0:
                raise UserError("None of the validation images could be read; see the skipped-image messages.")
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
                state.history[key].append(value)
            log(summary_line(epoch, config.epochs, train_result, valid_result, lr))

            if valid_result.f1 > state.best_f1:
                state.best_f1, state.best_epoch, state.stale = valid_result.f1, epoch, 0
                if info.is_main:
                    metrics = {
                        "valid_acc": valid_result.accuracy,
                        "valid_f1": valid_result.f1,
                        "valid_loss": valid_result.loss,
                    }
                    ckpt_io.save_checkpoint(best_path, model, arch, label2id, norm, epoch, metrics, seed=config.seed)
            else:
                state.stale += 1
            state.epoch, state.partial, state.skip = epoch + 1, None, 0
            save_last()
            if 0 < config.patience <= state.stale and epoch < config.epochs:
                log(
                    f"Early stopping: valid macro-F1 has not improved for {config.patience} epochs "
                    f"(best {state.best_f1:.4f} at epoch {state.best_epoch})."
                )
    training_seconds = time.perf_counter() - start

    # ---- final report: the reloaded best checkpoint on the whole valid set, its speed, the files
    if info.enabled:
        torch.distributed.barrier()  # rank 0 has finished writing the best checkpoint
    best = ckpt_io.model_from_checkpoint(ckpt_io.load_checkpoint(best_path)).to(device)
    final = evaluate(best, valid_loader, device, num_classes, amp_dtype, progress=False, gather=info.gather)
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
    if not info.is_main:
        return metrics
    results_dir = Path(config.output_dir) / "results"
    if config.save_history:
        details = classification_metrics(final.targets, final.predictions, num_classes, names)
        write_json(results_dir / f"{config.run_name}_history.json", dict(state.history))
        write_json(
            results_dir / f"{config.run_name}_metrics.json",
            {
                **metrics,
                "architecture": config.model,
                "valid_loss": final.loss,
                "best_epoch": state.best_epoch,
                "epochs_run": len(state.history["train_loss"]),
                "training_seconds": training_seconds,
                "classes": names,
                "per_class": details["per_class"],
                "confusion_matrix": details["confusion_matrix"],
                "device": str(device),
                "processes": info.world_size,
                "fps_batch_size": FPS_BATCH_SIZE,
                "fps_threads": torch.get_num_threads(),
                "fps_precision": str(amp_dtype or torch.float32).replace("torch.", ""),
                "config": asdict(config),
            },
        )
    if config.plot:
        plot_history(state.history, results_dir / f"{config.run_name}_history.png", title=config.run_name)
    return metrics
