"""The training run, top to bottom: data -> model -> optimizer -> epochs -> best checkpoint -> report.

Call :func:`train` with a :class:`~paddyclf.training.config.TrainConfig`; the CLI and the three root
scripts are thin wrappers around it. Under torchrun the same function runs on every process
(DistributedDataParallel); only rank 0 prints and writes files.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import checkpoint as ckpt_io
from ..data import DecodedCache, Normalization, TrainAugment, eval_short_side, load_label2id, load_splits, make_loader
from ..errors import TrainingInterruptedError, UserError
from ..fileio import save_torch, write_csv, write_json
from ..metrics import classification_metrics
from ..models import create_model, model_kwargs
from ..trust import FEATURE_SCORES, Calibration, Trust, calibrate_checkpoint, describe_fit
from ..trust.fit import Outputs
from .config import TrainConfig
from .distributed import DistInfo, init_distributed, shutdown_distributed
from .engine import (
    EpochResult,
    EvalResult,
    NonFiniteLossError,
    StepRecipe,
    autocast_dtype,
    evaluate,
    measure_fps,
    train_one_epoch,
)
from .recipe import BatchMixer, EmaWeights, make_criterion, make_scheduler
from .state import RunState, load_train_state, restore_train_state, save_train_state
from .tracking import Tracker, make_tracker, scalar_hparams

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


def summed_over_ranks(result: EpochResult, info: DistInfo) -> EpochResult:
    """This rank's epoch sums plus every other rank's (loss, correct, images, failures); as is on one process."""
    if not info.enabled:
        return result
    loss_sum, correct, images = info.sum([result.loss_sum, result.correct, result.images])
    failures = [f for fs in info.gather(result.failures) for f in fs]
    return EpochResult(loss_sum, int(correct), int(images), result.seconds, result.steps, failures)


# --------------------------------------------------------------------------- the run


def train(config: TrainConfig, progress: bool | None = None, tracker: Tracker | None = None) -> dict:
    """Run a full training as ``config`` describes; return the final metrics dict.

    ``tracker`` also hears every epoch and the end (beside ``--tensorboard`` / ``--mlflow``): ``tune``
    reports to Optuna through it, and may stop a run by raising from :meth:`Tracker.epoch`.

    Raises :class:`UserError` for bad input before anything is written, and
    :class:`TrainingInterruptedError` after saving ``<model_name>_last.pt`` on SIGINT/SIGTERM.
    """
    config.validate()
    device_type = resolve_device(config.device).type
    info = init_distributed(device_type)
    try:
        return _train(config, info, progress, tracker)
    finally:
        shutdown_distributed(info)


@dataclass
class Run:
    """Everything one training run holds; built by :func:`_train`, driven by :func:`run_epochs`."""

    config: TrainConfig
    info: DistInfo
    device: torch.device
    model: nn.Module  # the plain model (checkpoints are written from it)
    net: nn.Module  # what evaluates: the model, compiled with --compile
    trainer_net: nn.Module  # what trains: ``net``, wrapped in DDP under torchrun
    train_loader: object
    valid_loader: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: object
    amp_dtype: torch.dtype | None
    step_recipe: StepRecipe
    arch: dict
    label2id: dict
    norm: Normalization
    state: RunState
    progress: bool
    tracker: Tracker = field(default_factory=Tracker)  # --tensorboard / --mlflow (rank 0), else a no-op

    @property
    def num_classes(self) -> int:
        return len(self.label2id)

    @property
    def best_path(self) -> Path:
        return Path(self.config.output_dir) / f"{self.config.run_name}_best.pt"

    @property
    def last_path(self) -> Path:
        return Path(self.config.output_dir) / f"{self.config.run_name}_last.pt"

    @property
    def eval_model(self) -> nn.Module:
        """The weights that validate and are saved: the EMA's with --ema-decay, else the model's."""
        ema = self.step_recipe.ema
        return self.net if ema is None else ema.module

    def log(self, *args) -> None:
        if self.info.is_main:
            print(*args)

    def save_last(self) -> None:
        state, info = self.state, self.info
        partial = None if state.partial is None else summed_over_ranks(state.partial, info)  # rank 0 keeps all
        if info.is_main:
            save_train_state(
                self.last_path, self.model, self.optimizer, self.scheduler, self.scaler, self.config, self.arch,
                self.label2id, self.norm, state, partial, ema=self.step_recipe.ema,
            )  # fmt: skip

    def save_best(self, epoch: int, valid: EvalResult) -> None:
        if self.info.is_main:
            metrics = {"valid_acc": valid.accuracy, "valid_f1": valid.f1, "valid_loss": valid.loss}
            ckpt_io.save_checkpoint(
                self.best_path, ckpt_io.unwrap(self.eval_model), self.arch, self.label2id, self.norm, epoch, metrics,
                seed=self.config.seed, ema=self.step_recipe.ema is not None,
            )  # fmt: skip


def _build_model(config: TrainConfig, arch: dict, fresh: bool, info: DistInfo, device: torch.device):
    """(model on device, normalisation, parameter count, size MiB); pretrained weights only for a fresh run."""
    try:
        model = create_model(
            pretrained=config.pretrained and fresh,
            pretrained_weights=config.pretrained_weights if fresh else None,
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
    return model, norm, num_params, size_mb


# what must agree for a checkpoint's weights to fit the model being trained (dropout does not shape them)
WEIGHT_SHAPING = ("architecture", "num_classes", "heads", "image_size", "reduction", "backbone")


def load_initial_weights(model: nn.Module, path: str, arch: dict, label2id: dict[str, int]) -> None:
    """``--init-from``: the weights of a trained checkpoint, refused if they do not fit this run."""
    ckpt = ckpt_io.load_checkpoint(path)
    differ = [
        f"{k} {ckpt['config'].get(k)!r} vs {arch[k]!r}" for k in WEIGHT_SHAPING if ckpt["config"].get(k) != arch[k]
    ]
    if differ:
        raise UserError(f"--init-from {path} was trained with other settings ({'; '.join(differ)}); match them.")
    if ckpt_io.class_names(ckpt["label2id"]) != ckpt_io.class_names(label2id):
        raise UserError(f"--init-from {path} answers other classes (or in another order) than {label2id}.")
    ckpt_io.unwrap(model).load_state_dict(ckpt["state_dict"])


def check_every_class_trains(train: list, label2id: dict[str, int], config: TrainConfig) -> None:
    """A class of label2id without a train photo cannot be learned, and the feature OOD score has no mean for it."""
    present = {s.label for s in train}
    missing = [name for name, i in label2id.items() if i not in present]
    if missing and config.calibrate and config.ood_score in FEATURE_SCORES:
        raise UserError(
            f"{len(missing)} class(es) of {config.label2id} have no photo in the train split: "
            f"{', '.join(missing[:20])}. "
            f"The {config.ood_score} score needs train photos of every class: add photos, drop those classes from "
            "label2id.json, or pass --ood-score energy."
        )


def _train(config: TrainConfig, info: DistInfo, progress: bool | None, tracker: Tracker | None = None) -> dict:
    progress = info.is_main and (sys.stderr.isatty() if progress is None else progress)
    device = resolve_device(config.device, info.local_rank)

    # ---- data description (all checks happen before anything is written)
    label2id = load_label2id(config.label2id)
    num_classes = len(label2id)
    splits = load_splits(
        config.metadata, label2id, config.seed, {"train": config.train_limit, "valid": config.valid_limit}
    )
    arch = ckpt_io.model_config(config, num_classes)
    resume_state = load_train_state(config.resume, arch, label2id) if config.resume else None
    check_every_class_trains(splits["train"], label2id, config)
    torch.manual_seed(config.seed)

    # ---- model
    model, norm, num_params, size_mb = _build_model(config, arch, resume_state is None, info, device)
    if config.init_from and resume_state is None:
        load_initial_weights(model, config.init_from, arch, label2id)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed input size: pick the fastest kernels once
    net = torch.compile(model, backend=config.compile_backend) if config.compile else model  # evaluation runs it
    trainer_net = (
        DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        if info.enabled
        else net
    )
    if info.is_main:
        print(
            f"{config.run_name}: {config.model} on {device}"
            + (f" x {info.world_size} processes" if info.enabled else "")
            + f", {num_params:,} parameters, {num_classes} classes, "
            f"{len(splits['train'])} train / {len(splits['valid'])} valid images at {config.image_size}px"
            + ("" if config.recipe == "guide" else f", recipe {config.recipe}")
        )

    # ---- data loading
    cache = DecodedCache(config.cache_dir, eval_short_side(config.image_size, norm)) if config.cache_dir else None
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
    train_loader = make_loader(splits["train"], train=True, extra=TrainAugment.from_config(config), **loader_args)
    valid_loader = make_loader(splits["valid"], train=False, **loader_args)

    # ---- optimisation and the recipe's additions
    optimizer = torch.optim.AdamW(parameter_groups(model, config.base_lr, config.head_lr, config.weight_decay))
    scheduler = make_scheduler(optimizer, config.scheduler_tmax or config.epochs, config.warmup_epochs)
    amp_dtype = autocast_dtype(device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    step_recipe = StepRecipe(
        make_criterion(config.label_smoothing),
        BatchMixer.from_config(config, num_classes),
        EmaWeights.from_config(config, model),
    )
    state = RunState()
    if resume_state is not None:
        state = restore_train_state(
            resume_state, model, optimizer, scheduler, scaler, info.is_main, ema=step_recipe.ema
        )
    run = Run(
        config, info, device, model, net, trainer_net, train_loader, valid_loader, optimizer, scheduler, scaler,
        amp_dtype, step_recipe, arch, label2id, norm, state, progress,
    )  # fmt: skip
    if resume_state is not None:
        run.log(f"Resumed from {config.resume}: epoch {state.epoch}" + (", mid-epoch" if state.skip else ""))

    start = time.perf_counter()
    run.tracker = make_tracker(config, info.is_main, first_epoch=state.epoch, extra=tracker)
    try:
        best_valid = run_epochs(run)
        calibration = calibrate_best(run, splits, cache, best_valid) if config.calibrate and info.is_main else None
        metrics = final_report(run, best_valid, time.perf_counter() - start, num_params, size_mb, calibration)
    except BaseException:  # an interrupted or failed run is closed as such (MLflow: FAILED)
        run.tracker.close(failed=True)
        raise
    run.tracker.close()
    return metrics


def reuse_valid_outputs(run: Run) -> bool:
    """Whether each validation keeps its logits and features for calibration: one process, float32,
    eager (under torchrun, AMP or --compile, calibration makes its own pass over the valid photos)."""
    config = run.config
    return config.calibrate and not run.info.enabled and run.amp_dtype is None and not config.compile


def calibrate_best(
    run: Run, splits: dict, cache: DecodedCache | None, best_valid: EvalResult | None = None
) -> Calibration:
    """Fit the temperature and thresholds of the best checkpoint on the train/valid splits, in place (atomic).

    The best epoch's own validation gives the valid logits and features when it kept them (the same
    weights, photos and eval transform): only the train photos need a pass, for the OOD statistics.
    That pass runs in batches of ``FPS_BATCH_SIZE``, so its forward times give the report's fps.
    """
    config, start = run.config, time.perf_counter()
    ckpt = ckpt_io.load_checkpoint(run.best_path)
    valid = None
    if best_valid is not None and best_valid.logits is not None:
        valid = Outputs(best_valid.logits, best_valid.features, best_valid.targets, best_valid.indices, [])
    calibration = calibrate_checkpoint(
        ckpt, splits["train"], splits["valid"], config.target_accuracy, config.unsure_below, config.ood_score,
        FPS_BATCH_SIZE, config.num_workers, run.device, cache, run.progress, valid_outputs=valid,
    )  # fmt: skip
    save_torch(run.best_path, calibration.ckpt)
    run.log(describe_fit(Trust.from_dict(calibration.ckpt["trust"])) + f" [{time.perf_counter() - start:.1f} s]")
    return calibration


def run_epochs(run: Run) -> EvalResult | None:
    """Train until ``--epochs`` or early stopping; return the best epoch's validation (None if not in this process).

    Rank 0 writes ``_best.pt`` on every improvement and ``_last.pt`` after every epoch.
    """
    config, state = run.config, run.state
    best_valid = None
    with StopOnSignal() as stop:
        while state.epoch <= config.epochs and not (0 < config.patience <= state.stale):
            epoch = state.epoch
            lr = head_lr_of(run.optimizer)
            rates = {g["name"]: g["lr"] for g in run.optimizer.param_groups}
            train_result = _train_epoch(run, epoch, stop)
            valid_result = evaluate(
                run.eval_model, run.valid_loader, run.device, run.num_classes, run.amp_dtype, config.channels_last,
                run.progress, gather=run.info.gather, keep_outputs=reuse_valid_outputs(run),
            )  # fmt: skip
            if len(valid_result.targets) == 0:
                raise UserError("None of the validation images could be read; see the skipped-image messages.")
            run.scheduler.step()
            _record(state, train_result, valid_result, lr)
            if run.info.is_main:
                write_summary(Path(config.output_dir) / "results" / f"{config.run_name}_summary.csv", state.history)
            run.tracker.epoch(epoch, tracked_values(train_result, valid_result, rates))
            run.log(summary_line(epoch, config.epochs, train_result, valid_result, lr))
            if valid_result.f1 > state.best_f1:
                state.best_f1, state.best_epoch, state.stale = valid_result.f1, epoch, 0
                best_valid = valid_result
                run.save_best(epoch, valid_result)
            else:
                state.stale += 1
            state.epoch, state.partial, state.skip = epoch + 1, None, 0
            run.save_last()
            if 0 < config.patience <= state.stale and epoch < config.epochs:
                run.log(
                    f"Early stopping: valid macro-F1 has not improved for {config.patience} epochs "
                    f"(best {state.best_f1:.4f} at epoch {state.best_epoch})."
                )
    return best_valid


def _train_epoch(run: Run, epoch: int, stop: StopOnSignal) -> EpochResult:
    """One training epoch, summed over ranks; saves ``_last.pt`` and raises if a signal interrupted it."""
    config, state = run.config, run.state
    run.train_loader.sampler.set_epoch(epoch, skip=state.skip)
    try:
        result = train_one_epoch(
            run.trainer_net, run.train_loader, run.optimizer, run.device, epoch, run.scaler, run.amp_dtype,
            config.grad_clip, config.channels_last, run.progress, lambda: run.info.any(stop.signum is not None),
            state.partial,  # the sums of an interrupted epoch (all ranks' on rank 0, zeros elsewhere)
            run.step_recipe,
        )  # fmt: skip
    except NonFiniteLossError as exc:
        hint = f" The last good state is {run.last_path} (resume with --resume)." if run.last_path.is_file() else ""
        raise UserError(f"Training diverged: the {exc}. Lower --head-lr/--base-lr or check the data.{hint}") from None
    if result.interrupted:
        state.partial, state.skip = result, result.steps * config.batch_size
        run.save_last()
        signum = stop.signum or signal.SIGINT
        raise TrainingInterruptedError(
            signum,
            f"Interrupted by {signal.Signals(signum).name} at epoch {epoch}, step {result.steps}. "
            f"Saved {run.last_path}; continue with the same command plus --resume {run.last_path}",
        )
    return summed_over_ranks(result, run.info)


def _record(state: RunState, train: EpochResult, valid: EvalResult, lr: float) -> None:
    epoch_values = {
        "train_loss": train.loss,
        "valid_loss": valid.loss,
        "train_acc": train.accuracy,
        "valid_acc": valid.accuracy,
        "valid_f1": valid.f1,
        "learning_rates": lr,
        "epoch_seconds": train.seconds + valid.seconds,
        "skipped_images": len(train.failures) + len(valid.failures),
    }
    for key, value in epoch_values.items():
        state.history[key].append(value)


def tracked_values(train: EpochResult, valid: EvalResult, rates: dict[str, float]) -> dict[str, float]:
    """What the trackers get per epoch: losses, accuracy, macro-F1, every group's learning rate (as the
    epoch trained with it, before the scheduler's step), seconds."""
    return {
        "train/loss": train.loss,
        "valid/loss": valid.loss,
        "train/accuracy": train.accuracy,
        "valid/accuracy": valid.accuracy,
        "valid/macro_f1": valid.f1,
        **{f"lr/{name}": rate for name, rate in rates.items()},
        "time/epoch_seconds": train.seconds + valid.seconds,
    }


def write_summary(path: Path, history: dict[str, list]) -> Path:
    """``results/<model_name>_summary.csv``: one row per epoch (``epoch``, then the history's fields),
    as timm's ``summary.csv``. Rewritten whole and atomically after every epoch, from the history that
    ``--resume`` restores, so an interrupted run's file is complete up to its last epoch and the
    resumed run continues it."""
    fields = list(history)
    rows = [{"epoch": k + 1, **{f: history[f][k] for f in fields}} for k in range(len(history[fields[0]]))]
    return write_csv(path, ["epoch", *fields], rows)


def final_report(
    run: Run,
    best_valid: EvalResult | None,
    training_seconds: float,
    num_params: int,
    size_mb: float,
    calibration: Calibration | None = None,
):
    """The metrics block and result files: the best checkpoint's validation, its speed, the history.

    After calibration (this process) the calibrated checkpoint and its model are at hand, and the fps
    is the forward throughput of calibration's pass over the train photos (float32, batches of
    ``FPS_BATCH_SIZE``, after 2 warm-up batches): what :func:`measure_fps` would time on random batches,
    without running them. Otherwise (too few train photos, AMP, other ranks) it is measured.
    """
    config, info, device = run.config, run.info, run.device
    if info.enabled:
        torch.distributed.barrier()  # rank 0 has finished writing the best checkpoint
    best_ckpt = calibration.ckpt if calibration is not None else ckpt_io.load_checkpoint(run.best_path)
    fps = None
    if calibration is not None and run.amp_dtype is None:
        fps = calibration.outputs["train"].images_per_second(FPS_BATCH_SIZE)
    if best_valid is None or fps is None:
        best = calibration.model if calibration is not None else ckpt_io.model_from_checkpoint(best_ckpt).to(device)
    if best_valid is None:  # the best epoch came before a --resume: evaluate the reloaded checkpoint
        best_valid = evaluate(
            best, run.valid_loader, device, run.num_classes, run.amp_dtype, progress=False, gather=info.gather
        )
    if fps is None:
        fps = measure_fps(best, device, config.image_size, FPS_BATCH_SIZE, warmup=2, iters=5, amp_dtype=run.amp_dtype)
    metrics = {
        "model_name": config.run_name,
        "size_mb": round(size_mb, 4),
        "valid_acc": best_valid.accuracy,
        "valid_f1": best_valid.f1,
        "fps": fps,
        "num_params": num_params,
        "ckpt_path": str(run.best_path),
    }
    run.log(format_metrics(metrics))
    if not info.is_main:
        return metrics
    results_dir = Path(config.output_dir) / "results"
    state = run.state
    if config.save_history:
        names = ckpt_io.class_names(run.label2id)
        details = classification_metrics(best_valid.targets, best_valid.predictions, run.num_classes, names)
        write_json(results_dir / f"{config.run_name}_history.json", dict(state.history))
        write_json(
            results_dir / f"{config.run_name}_metrics.json",
            {
                **metrics,
                "architecture": config.model,
                "valid_loss": best_valid.loss,
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
                "fps_precision": str(run.amp_dtype or torch.float32).replace("torch.", ""),
                "trust": best_ckpt.get("trust"),
                "config": asdict(config),
            },
        )
    if config.plot:
        from ..plots import plot_history  # imported late: matplotlib costs 0.2 s of start-up

        plot_history(state.history, results_dir / f"{config.run_name}_history.png", title=config.run_name)
    track_final(run, metrics, best_valid, training_seconds)
    return metrics


def track_final(run: Run, metrics: dict, best_valid: EvalResult, training_seconds: float) -> None:
    """The hparams with the final metrics, the best epoch's confusion matrix, the checkpoint and result files."""
    if type(run.tracker) is Tracker:  # no tracker: skip the confusion matrix
        return
    names = ckpt_io.class_names(run.label2id)
    confusion = classification_metrics(best_valid.targets, best_valid.predictions, run.num_classes, names)
    final = {
        "valid_acc": best_valid.accuracy,
        "valid_f1": best_valid.f1,
        "valid_loss": best_valid.loss,
        "best_epoch": float(run.state.best_epoch),
        "fps": float(metrics["fps"]),
        "training_seconds": training_seconds,
    }
    results = Path(run.config.output_dir) / "results"
    files = [run.best_path, *sorted(results.glob(f"{run.config.run_name}_*"))]
    run.tracker.finish(scalar_hparams(run.config), final, np.asarray(confusion["confusion_matrix"]), names, files)
