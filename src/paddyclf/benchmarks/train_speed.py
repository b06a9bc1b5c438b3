"""``paddyclf benchmark train``: training throughput of the project's pipeline vs a naive one, same run.

Both pipelines train the same model with the same batch size, workers and augmentation recipe
(random resized crop, two flips, colour jitter):

* **naive**: full-resolution PIL decode, classic ``torchvision.transforms`` on the PIL image
  (RandomResizedCrop resamples the whole photo), NCHW float32 model, on any device.
* **plain**: the loop a user writes with timm alone: full PIL decode, RandomResizedCrop + flips,
  no colour jitter (so no slow HSV hue), channels_last model, float32. The honest baseline: the
  naive pipeline carries torchvision's HSV hue jitter, which overstates what the project gains.
* **project**: JPEG draft-mode decode (DCT-domain downscale), a decoded uint8 cache (built in
  the first epoch, memory-mapped afterwards), Pillow-kernel transforms with the one-pass colour
  jitter of :mod:`paddyclf.data.augment`, channels_last model; on CUDA also AMP and pinned memory.

Reported per batch size: images/s of the input pipeline alone, of the training step alone
(synthetic tensors), and end to end per epoch (steady state = epochs 2+), with project/naive
ratios; with a valid split, the valid accuracy each pipeline reaches; on CUDA, peak memory.
With ``whole_run``, also the wall time of two whole processes on the same data and epochs, start-up
and everything included: ``paddyclf train`` (validation every epoch, checkpoints, the final report)
against :mod:`paddyclf.benchmarks.plain_loop` (validation every epoch, nothing else).
"""

from __future__ import annotations

import csv
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import transforms as classic

from ..data import (
    DecodedCache,
    ImageDataset,
    Normalization,
    Sample,
    collate_skipping_bad,
    collect_images,
    eval_short_side,
    load_label2id,
    load_splits,
    make_loader,
)
from ..errors import UserError
from ..models import create_model
from ..training.engine import autocast, autocast_dtype, evaluate, to_device, train_one_epoch
from ..training.run import parameter_groups
from .common import PRINT, environment, median_seconds

PIPELINES = ("naive", "plain", "project")


def naive_transform(image_size: int, norm: Normalization, train: bool, jitter: bool = True):
    """The textbook PIL pipeline (torchvision's classic transforms); ``jitter`` adds the colour jitter."""
    to_tensor = [classic.ToTensor(), classic.Normalize(norm.mean, norm.std)]
    if train:
        colour = [classic.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.15, hue=0.02)] if jitter else []
        return classic.Compose(
            [
                classic.RandomResizedCrop(image_size, scale=(0.5, 1.0)),
                classic.RandomHorizontalFlip(),
                classic.RandomVerticalFlip(),
                *colour,
                *to_tensor,
            ]
        )
    return classic.Compose(
        [classic.Resize(int(image_size / norm.crop_pct)), classic.CenterCrop(image_size), *to_tensor]
    )


def naive_loader(samples, image_size, norm, train, batch_size, num_workers, seed, jitter=True) -> DataLoader:
    dataset = ImageDataset(samples, naive_transform(image_size, norm, train, jitter), decode_min_size=None)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        num_workers=num_workers,
        collate_fn=collate_skipping_bad,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=num_workers > 0,
    )


def images_per_second_of_loader(loader) -> float:
    start, n = time.perf_counter(), 0
    for batch in loader:
        n += 0 if batch.images is None else len(batch.images)
    return n / (time.perf_counter() - start)


def step_images_per_second(
    model, image_size, batch_size, device, channels_last, amp_dtype=None, scaler=None, steps=10
) -> float:
    """Median images/s of full training steps (forward, backward, AdamW) on one synthetic batch."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = to_device(torch.randn(batch_size, 3, image_size, image_size), device, channels_last)
    y = torch.randint(0, 2, (batch_size,), device=device)
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp_dtype):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    return batch_size / median_seconds(step, device, warmup=1, repeats=steps)


def gather_samples(images, metadata, label2id, generate: int, work_dir: Path, seed: int):
    """(train samples, valid samples or [], number of classes) from the options given."""
    from ..data.synthetic import make_photo_folder

    if metadata:
        labels = load_label2id(label2id or Path(metadata).with_name("label2id.json"))
        splits = load_splits(metadata, labels, seed, required=("train",))
        return splits["train"], splits["valid"], len(labels)
    folders = list(images or [])
    if generate:
        folders.append(make_photo_folder(work_dir / "generated", generate, seed))
    if not folders:
        raise UserError("Give --images DIR, --metadata CSV or --generate N.")
    files = collect_images(folders)
    classes = sorted({p.parent.name for p in files})
    return [Sample(p, classes.index(p.parent.name)) for p in files], [], len(classes)


@dataclass(frozen=True)
class PipelineSetup:
    """What one pipeline changes: the loader, and how the model runs (layout, precision)."""

    name: str
    channels_last: bool
    amp_dtype: torch.dtype | None
    pin_memory: bool

    @classmethod
    def of(cls, name: str, device: torch.device) -> PipelineSetup:
        if name == "naive":  # the textbook loop: NCHW float32 whatever the device
            return cls(name, channels_last=False, amp_dtype=None, pin_memory=False)
        if name == "plain":  # timm alone: channels_last, float32
            return cls(name, channels_last=True, amp_dtype=None, pin_memory=False)
        return cls(name, channels_last=True, amp_dtype=autocast_dtype(device), pin_memory=device.type == "cuda")


def measure_pipeline(
    setup: PipelineSetup,
    train: list[Sample],
    valid: list[Sample],
    num_classes: int,
    norm: Normalization,
    image_size: int,
    batch_size: int,
    num_workers: int,
    epochs: int,
    model_name: str,
    device: torch.device,
    work: Path,
    seed: int,
    log=PRINT,
) -> dict:
    """One pipeline at one batch size: step alone, end to end per epoch, input pipeline alone, accuracy."""
    project = setup.name == "project"
    cache = DecodedCache(work / f"cache_{batch_size}", eval_short_side(image_size, norm)) if project else None

    def loader(samples, train_split):
        if project:
            return make_loader(
                samples, image_size, norm, train_split, batch_size, num_workers, seed, setup.pin_memory, cache=cache
            )
        jitter = setup.name == "naive"
        return naive_loader(samples, image_size, norm, train_split, batch_size, num_workers, seed, jitter)

    def fresh_model():
        torch.manual_seed(seed)
        model = create_model(model_name, num_classes=num_classes).to(device)
        return model.to(memory_format=torch.channels_last) if setup.channels_last else model

    scaler = torch.amp.GradScaler("cuda") if setup.amp_dtype == torch.float16 else None
    torch.backends.cudnn.benchmark = project and device.type == "cuda"  # as the trainer does; naive keeps the default
    step_rate = step_images_per_second(
        fresh_model(), image_size, batch_size, device, setup.channels_last, setup.amp_dtype, scaler
    )
    model = fresh_model()
    optimizer = torch.optim.AdamW(parameter_groups(model, 1e-3, 2e-3, 1e-2))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    train_loader = loader(train, True)
    epoch_rates = []
    for epoch in range(1, epochs + 1):
        if project:
            train_loader.sampler.set_epoch(epoch)
        result = train_one_epoch(
            model, train_loader, optimizer, device, epoch, scaler, setup.amp_dtype,
            channels_last=setup.channels_last, progress=False,
        )  # fmt: skip
        epoch_rates.append(result.images_per_second)
        log(f"  {setup.name:7} epoch {epoch}: {result.images_per_second:7.1f} img/s end to end")
    row = {
        "precision": str(setup.amp_dtype or torch.float32).replace("torch.", ""),
        "memory_format": "channels_last" if setup.channels_last else "NCHW",
        "input_pipeline_images_per_s": images_per_second_of_loader(train_loader),  # warm: cache built
        "train_step_images_per_s": step_rate,
        "end_to_end_images_per_s_by_epoch": epoch_rates,
        "end_to_end_steady_images_per_s": statistics.mean(epoch_rates[1:]),
    }
    if device.type == "cuda":
        row["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    if valid:
        row["valid_acc"] = evaluate(
            model, loader(valid, False), device, num_classes, setup.amp_dtype, setup.channels_last, progress=False
        ).accuracy
    log(
        f"  {setup.name:7} input pipeline {row['input_pipeline_images_per_s']:7.1f} img/s | "
        f"train step {step_rate:7.1f} img/s | end to end (epochs 2+) {row['end_to_end_steady_images_per_s']:7.1f} img/s"
        + (f" | valid acc {row['valid_acc']:.4f}" if valid else "")
    )
    return row


RATIO_KEYS = ("input_pipeline_images_per_s", "train_step_images_per_s", "end_to_end_steady_images_per_s")


def _write_metadata(train: list[Sample], valid: list[Sample], num_classes: int, folder: Path) -> tuple[Path, Path]:
    """A metadata.csv (absolute paths) and label2id.json for the samples; with no valid split, every 5th image."""
    if not valid:
        train, valid = [s for k, s in enumerate(train) if k % 5], train[::5]
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"class_{c}" for c in range(num_classes)]
    metadata = folder / "metadata.csv"
    with metadata.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split"])
        writer.writerows(
            [
                (Path(s.path).resolve(), names[s.label], split)
                for split, ss in (("train", train), ("valid", valid))
                for s in ss
            ]
        )
    label2id = folder / "label2id.json"
    label2id.write_text("{" + ", ".join(f'"{n}": {c}' for c, n in enumerate(names)) + "}")
    return metadata, label2id


def whole_run_seconds(
    train: list[Sample], valid: list[Sample], num_classes: int, image_size: int, batch_size: int,
    num_workers: int, epochs: int, work: Path, seed: int, log=PRINT, rounds: int = 2,
) -> dict:  # fmt: skip
    """Wall seconds of ``paddyclf train`` and of the plain timm loop as whole processes, same data and epochs.

    ``rounds`` alternate the order (project then plain, plain then project, ...), so that a machine
    getting faster or slower during the benchmark favours neither; every project run starts with an
    empty decoded cache, as a user's first run does. The ratio is of the mean times.
    """
    metadata, label2id = _write_metadata(train, valid, num_classes, work / "whole_run")
    common = ["--metadata", str(metadata), "--label2id", str(label2id), "--epochs", str(epochs),
              "--batch-size", str(batch_size), "--image-size", str(image_size), "--num-workers", str(num_workers),
              "--seed", str(seed)]  # fmt: skip

    def command(name: str, run: int) -> list[str]:
        if name == "plain":
            return [sys.executable, "-m", "paddyclf.benchmarks.plain_loop", *common]
        out = work / "whole_run" / f"project_{run}"
        return [sys.executable, "-m", "paddyclf", "train", *common, "--device", "cpu", "--patience", "0",
                "--cache-dir", str(out / "cache"), "--output-dir", str(out / "out")]  # fmt: skip

    times: dict[str, list[float]] = {"project": [], "plain": []}
    for run in range(rounds):
        for name in ("project", "plain") if run % 2 == 0 else ("plain", "project"):
            start = time.perf_counter()
            done = subprocess.run(command(name, run), capture_output=True, text=True)
            times[name].append(time.perf_counter() - start)
            if done.returncode != 0:
                raise UserError(f"the whole-run {name} process failed: {done.stderr.strip().splitlines()[-1:]}")
            log(f"  whole run {run + 1}/{rounds}, {name:7}: {times[name][-1]:6.1f} s ({epochs} epochs, all included)")
    seconds = {name: sum(values) / len(values) for name, values in times.items()}
    return {"seconds": seconds, "rounds": times, "project_over_plain_time": seconds["project"] / seconds["plain"]}


def run_train_benchmark(
    images: list[str] | None = None,
    metadata: str | None = None,
    label2id: str | None = None,
    generate: int = 0,
    image_size: int = 224,
    batch_sizes: Sequence[int] = (32,),
    num_workers: int = 2,
    epochs: int = 2,
    model_name: str = "MobileNetV3_Small_BoT_Linear",
    device: str | torch.device = "cpu",
    pipelines: Sequence[str] = PIPELINES,
    seed: int = 42,
    whole_run: bool = False,
    whole_run_rounds: int = 2,
    log=PRINT,
) -> dict:
    """Each pipeline at each batch size, same data, model and workers; ratios when both pipelines ran.

    On CUDA the project pipeline adds AMP (bf16 where supported) and pinned memory; the naive one
    stays NCHW float32.
    """
    if epochs < 2:
        raise UserError("--epochs must be >= 2: the first epoch builds the cache, the steady state starts after.")
    device = torch.device(device)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train, valid, num_classes = gather_samples(images, metadata, label2id, generate, work, seed)
        norm = Normalization.from_pretrained_cfg(create_model(model_name, num_classes=2).pretrained_cfg)
        for batch_size in batch_sizes:
            log(
                f"{len(train)} training images ({len(valid)} valid), {image_size}px, batch {batch_size}, "
                f"{num_workers} workers, {torch.get_num_threads()} threads, {model_name} on {device}"
            )
            rows = {
                name: measure_pipeline(
                    PipelineSetup.of(name, device), train, valid, num_classes, norm, image_size, batch_size,
                    num_workers, epochs, model_name, device, work, seed, log,
                )
                for name in pipelines
            }  # fmt: skip
            run = {"batch_size": batch_size, "pipelines": rows}
            for baseline in ("naive", "plain"):
                if {"project", baseline} <= set(rows):
                    ratios = {k: rows["project"][k] / rows[baseline][k] for k in RATIO_KEYS}
                    run["ratios" if baseline == "naive" else "ratios_vs_plain"] = ratios
                    log(
                        f"project / {baseline}: "
                        + ", ".join(f"{k.removesuffix('_images_per_s')} {v:.2f}x" for k, v in ratios.items())
                    )
            if whole_run:
                run["whole_run"] = whole_run_seconds(
                    train, valid, num_classes, image_size, batch_size, num_workers, epochs, work, seed, log,
                    whole_run_rounds,
                )  # fmt: skip
            runs.append(run)
    return {
        "environment": environment(device),
        "image_size": image_size,
        "num_workers": num_workers,
        "epochs": epochs,
        "model": model_name,
        "train_images": len(train),
        "runs": runs,
    }
