"""``paddyclf benchmark train``: training throughput of the project's pipeline vs a naive one, same run.

Both pipelines train the same model with the same batch size, workers and augmentation recipe:

* **naive**: full-resolution PIL decode, classic ``torchvision.transforms`` on the PIL image
  (RandomResizedCrop resamples the whole photo), NCHW float32 model.
* **project**: JPEG draft-mode decode (DCT-domain downscale), a decoded uint8 cache (built in
  the first epoch, memory-mapped afterwards), uint8 tensor transforms, channels_last model.

Reported: images/s of the input pipeline alone, of the training step alone (synthetic
tensors), and end to end per epoch (steady state = epochs 2+), with project/naive ratios;
with a valid split, the valid accuracy each pipeline reaches.
"""

from __future__ import annotations

import statistics
import tempfile
import time
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
    decode_size,
    load_label2id,
    load_splits,
    make_loader,
)
from ..engine import evaluate, train_one_epoch
from ..errors import UserError
from ..models import create_model
from ..predict import collect_images
from ..train import parameter_groups
from .common import PRINT, environment


def naive_transform(image_size: int, norm: Normalization, train: bool):
    """The textbook PIL pipeline (torchvision's classic transforms), same augmentation recipe."""
    to_tensor = [classic.ToTensor(), classic.Normalize(norm.mean, norm.std)]
    if train:
        return classic.Compose(
            [
                classic.RandomResizedCrop(image_size, scale=(0.5, 1.0)),
                classic.RandomHorizontalFlip(),
                classic.RandomVerticalFlip(),
                classic.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.15, hue=0.02),
                *to_tensor,
            ]
        )
    return classic.Compose(
        [classic.Resize(int(image_size / norm.crop_pct)), classic.CenterCrop(image_size), *to_tensor]
    )


def naive_loader(samples, image_size, norm, train, batch_size, num_workers, seed) -> DataLoader:
    dataset = ImageDataset(samples, naive_transform(image_size, norm, train), decode_min_size=None)
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


def step_images_per_second(model, image_size, batch_size, channels_last, steps=5) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch_size, 3, image_size, image_size)
    y = torch.randint(0, 2, (batch_size,))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return batch_size / statistics.median(times)


def gather_samples(images, metadata, label2id, generate: int, work_dir: Path, seed: int):
    """(train samples, valid samples or [], number of classes) from the options given."""
    from ..synthetic import make_photo_folder

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


def run_train_benchmark(
    images: list[str] | None = None,
    metadata: str | None = None,
    label2id: str | None = None,
    generate: int = 0,
    image_size: int = 224,
    batch_size: int = 32,
    num_workers: int = 2,
    epochs: int = 2,
    model_name: str = "MobileNetV3_Small_BoT_Linear",
    seed: int = 42,
    log=PRINT,
) -> dict:
    if epochs < 2:
        raise UserError("--epochs must be >= 2: the first epoch builds the cache, the steady state starts after.")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train, valid, num_classes = gather_samples(images, metadata, label2id, generate, work, seed)
        log(
            f"{len(train)} training images ({len(valid)} valid), {image_size}px, batch {batch_size}, "
            f"{num_workers} workers, {torch.get_num_threads()} threads, {model_name}"
        )
        norm = Normalization.from_pretrained_cfg(create_model(model_name, num_classes=2).pretrained_cfg)
        pipelines = {}
        for name in ("naive", "project"):
            project = name == "project"
            cache = DecodedCache(work / "cache", decode_size(image_size, norm, train=False)) if project else None

            def loader(samples, train_split, project=project, cache=cache):
                if project:
                    return make_loader(
                        samples, image_size, norm, train_split, batch_size, num_workers, seed, cache=cache
                    )
                return naive_loader(samples, image_size, norm, train_split, batch_size, num_workers, seed)

            torch.manual_seed(seed)
            model = create_model(model_name, num_classes=num_classes)
            if project:
                model = model.to(memory_format=torch.channels_last)
            step_rate = step_images_per_second(model, image_size, batch_size, channels_last=project)
            torch.manual_seed(seed)
            model = create_model(model_name, num_classes=num_classes)
            if project:
                model = model.to(memory_format=torch.channels_last)
            optimizer = torch.optim.AdamW(parameter_groups(model, 1e-3, 2e-3, 1e-2))
            train_loader = loader(train, True)
            epoch_rates = []
            for epoch in range(1, epochs + 1):
                if project:
                    train_loader.sampler.set_epoch(epoch)
                result = train_one_epoch(
                    model, train_loader, optimizer, torch.device("cpu"), epoch, channels_last=project, progress=False
                )
                epoch_rates.append(result.images_per_second)
                log(f"  {name:7} epoch {epoch}: {result.images_per_second:6.1f} img/s end to end")
            pipeline_rate = images_per_second_of_loader(train_loader)  # warm: cache built, files in page cache
            row = {
                "input_pipeline_images_per_s": pipeline_rate,
                "train_step_images_per_s": step_rate,
                "end_to_end_images_per_s_by_epoch": epoch_rates,
                "end_to_end_steady_images_per_s": statistics.mean(epoch_rates[1:]),
            }
            if valid:
                row["valid_acc"] = evaluate(
                    model, loader(valid, False), torch.device("cpu"), num_classes, channels_last=project, progress=False
                ).accuracy
            pipelines[name] = row
            log(
                f"  {name:7} input pipeline {pipeline_rate:7.1f} img/s | train step {step_rate:6.1f} img/s | "
                f"end to end (epochs 2+) {row['end_to_end_steady_images_per_s']:6.1f} img/s"
                + (f" | valid acc {row['valid_acc']:.4f}" if valid else "")
            )
    naive, proj = pipelines["naive"], pipelines["project"]
    ratios = {
        k: proj[k] / naive[k]
        for k in ("input_pipeline_images_per_s", "train_step_images_per_s", "end_to_end_steady_images_per_s")
    }
    log("project / naive: " + ", ".join(f"{k.removesuffix('_images_per_s')} {v:.2f}x" for k, v in ratios.items()))
    return {
        "environment": environment(torch.device("cpu")),
        "image_size": image_size,
        "batch_size": batch_size,
        "num_workers": num_workers,
        "epochs": epochs,
        "model": model_name,
        "train_images": len(train),
        "pipelines": pipelines,
        "ratios": ratios,
    }
