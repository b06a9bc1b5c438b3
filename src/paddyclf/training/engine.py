"""One training epoch, one evaluation pass, and the inference-speed measurement."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..checkpoint import unwrap as ckpt_unwrap
from ..metrics import classification_metrics


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed precision on CUDA: bf16 where the GPU supports it, else fp16; none on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(images: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """The batch on ``device`` in the model's memory format (a no-op when it is already in it)."""
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; carries where it happened."""

    def __init__(self, epoch: int, step: int, value: float) -> None:
        super().__init__(f"loss became {value} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.value = epoch, step, value


@dataclass
class StepRecipe:
    """What a training step does beyond forward, backward and the optimizer step (see :mod:`paddyclf.training.recipe`).

    ``criterion(logits, targets)``; ``mix(images, labels) -> (images, soft targets)`` or None;
    ``ema.update(model)`` after every optimizer step, or None.
    """

    criterion: nn.Module = field(default_factory=nn.CrossEntropyLoss)
    mix: object | None = None
    ema: object | None = None


@dataclass
class EpochResult:
    """Sums over the batches of one epoch (on this rank); ``steps`` counts batches done, incl. resumed ones."""

    loss_sum: float = 0.0
    correct: int = 0
    images: int = 0
    seconds: float = 0.0
    steps: int = 0
    failures: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.images, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.images, 1)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    epoch: int,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: torch.dtype | None = None,
    grad_clip: float = 0.0,
    channels_last: bool = False,
    progress: bool = True,
    stop_requested=lambda: False,
    resumed: EpochResult | None = None,
    recipe: StepRecipe | None = None,
) -> EpochResult:
    """Train for one pass over ``loader``; batches of only unreadable images are skipped.

    ``resumed`` carries the sums of the batches an interrupted run already did in this epoch.
    ``stop_requested()`` is polled after every step; when it is true the epoch ends early with
    ``interrupted`` set, so SIGINT/SIGTERM never cut a step in half. ``recipe`` adds label smoothing,
    MixUp/CutMix and the EMA update; accuracy is always counted against the unmixed labels.
    """
    model.train()
    recipe = recipe or StepRecipe()
    result = resumed or EpochResult()
    start = time.perf_counter() - result.seconds
    bar = tqdm(loader, desc=f"epoch {epoch} train", leave=False, disable=not progress, dynamic_ncols=True)
    for batch in bar:
        result.steps += 1
        result.failures += batch.failures
        if batch.images is not None:
            images = to_device(batch.images, device, channels_last)
            labels = batch.labels.to(device, non_blocking=True)
            targets = labels
            if recipe.mix is not None:
                images, targets = recipe.mix(images, labels)
            with autocast(device, amp_dtype):
                logits = model(images)
                loss = recipe.criterion(logits.float(), targets)
            if not math.isfinite(loss.item()):
                raise NonFiniteLossError(epoch, result.steps, loss.item())
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if recipe.ema is not None:
                recipe.ema.update(model)
            n = labels.numel()
            result.loss_sum += loss.item() * n
            result.correct += (logits.argmax(1) == labels).sum().item()
            result.images += n
            bar.set_postfix(loss=f"{result.loss:.4f}", acc=f"{result.accuracy:.3f}")
        if stop_requested():
            result.interrupted = True
            break
    result.seconds = time.perf_counter() - start
    return result


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    f1: float
    targets: np.ndarray
    predictions: np.ndarray
    probabilities: np.ndarray
    indices: np.ndarray
    failures: list[str]
    seconds: float
    # with ``keep_outputs``: the logits (n, K) and pooled features (n, C) behind the probabilities, so
    # that calibration can fit the temperature and the OOD threshold without another pass over valid
    logits: np.ndarray | None = None
    features: np.ndarray | None = None


@torch.no_grad()
def predict_loader(
    model: nn.Module,
    loader,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: bool = True,
    desc: str = "valid",
    tta: bool = False,
    keep_outputs: bool = False,
) -> tuple:
    """(probabilities (n, K), targets (n,), dataset indices (n,), failures) over ``loader``; with
    ``keep_outputs`` (no ``tta``) also the logits (n, K) and the pooled features (n, C).

    ``tta`` averages the softmax of the image and of its horizontal flip.
    """
    model.eval()
    probs, targets, indices, failures, logits, features = [], [], [], [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress, dynamic_ncols=True):
        failures += batch.failures
        if batch.images is None:
            continue
        images = to_device(batch.images, device, channels_last)
        with autocast(device, amp_dtype):
            if keep_outputs:
                z, f = ckpt_unwrap(model).forward_with_features(images)
                logits.append(z.float().cpu())
                features.append(f.float().cpu())
            else:
                z = model(images)
            p = z.float().softmax(1)
            if tta:
                p = (p + model(images.flip(3)).float().softmax(1)) / 2
        probs.append(p.cpu())
        targets.append(batch.labels)
        indices.append(batch.indices)
    kept = (np.concatenate(logits), np.concatenate(features)) if keep_outputs and logits else ()
    if not probs:
        return np.zeros((0, 0)), np.zeros(0, dtype=int), np.zeros(0, dtype=int), failures
    return (torch.cat(probs).numpy(), torch.cat(targets).numpy(), torch.cat(indices).numpy(), failures, *kept)


def evaluate(
    model: nn.Module,
    loader,
    device: torch.device,
    num_classes: int,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: bool = True,
    tta: bool = False,
    gather=lambda part: [part],
    keep_outputs: bool = False,
) -> EvalResult:
    """Loss, accuracy and macro-F1 of ``model`` over ``loader`` (unreadable images excluded).

    Under DDP each rank predicts its shard and ``gather`` (e.g. ``DistInfo.gather``) collects all
    shards, so every rank computes the metrics of the whole set, each sample counted once.
    ``keep_outputs`` (one process, no ``tta``): the result also holds the logits and pooled features.
    """
    start = time.perf_counter()
    predicted = predict_loader(
        model, loader, device, amp_dtype, channels_last, progress, tta=tta, keep_outputs=keep_outputs
    )
    kept = predicted[4:]
    parts = gather(predicted[:4])
    parts = [p for p in parts if len(p[1])] or parts[:1]  # ranks with nothing readable add nothing
    probs, targets, indices = (np.concatenate([p[i] for p in parts]) for i in range(3))
    failures = [f for p in parts for f in p[3]]
    if len(targets) == 0:
        nan = float("nan")
        return EvalResult(nan, nan, nan, targets, targets, probs, indices, failures, time.perf_counter() - start)
    eps = 1e-12  # NLL of the softmax (what CrossEntropyLoss computes), guarded against log(0)
    loss = float(-np.log(probs[np.arange(len(targets)), targets] + eps).mean())
    preds = probs.argmax(1)
    summary = classification_metrics(targets, preds, num_classes)
    return EvalResult(
        loss,
        summary["accuracy"],
        summary["macro_f1"],
        targets,
        preds,
        probs,
        indices,
        failures,
        time.perf_counter() - start,
        *kept,
    )


@torch.no_grad()
def measure_fps(
    model: nn.Module,
    device: torch.device,
    image_size: int | tuple[int, int],
    batch_size: int = 32,
    warmup: int = 3,
    iters: int = 10,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> float:
    """Inference images/s on random input: ``iters`` timed batches after ``warmup``, synchronised on CUDA."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    model.eval()
    x = torch.randn(batch_size, 3, h, w, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with autocast(device, amp_dtype):
        for _ in range(warmup):
            model(x)
        sync()
        start = time.perf_counter()
        for _ in range(iters):
            model(x)
        sync()
    return batch_size * iters / (time.perf_counter() - start)
