"""The training loop a user would write with timm alone: the reference for whole-run wall time.

Full PIL decode, RandomResizedCrop + flips (no colour jitter), a channels_last timm-based model,
AdamW, validation every epoch, nothing else: no cache, no checkpoints, no report. Run as
``python -m paddyclf.benchmarks.plain_loop --metadata CSV --label2id JSON --epochs N ...`` so that
its start-up (imports) is timed too; ``paddyclf benchmark train --whole-run`` does that.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metadata", required=True)
    parser.add_argument("--label2id", required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    import timm  # noqa: F401 - what a plain loop imports
    import torch
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    from ..models import create_model

    torch.manual_seed(args.seed)
    labels = json.loads(Path(args.label2id).read_text())
    root = Path(args.metadata).resolve().parent
    with Path(args.metadata).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_split = {
        s: [(root / r["path"], labels[r["label"]]) for r in rows if r.get("split", "train") == s]
        for s in ("train", "valid")
    }
    model = create_model("MobileNetV3_Small_BoT_Linear", num_classes=len(labels)).to(memory_format=torch.channels_last)
    mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    train_tf = T.Compose(
        [
            T.RandomResizedCrop(args.image_size, scale=(0.5, 1.0)),
            T.RandomHorizontalFlip(),
            T.RandomVerticalFlip(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
    eval_tf = T.Compose(
        [T.Resize(int(args.image_size / 0.875)), T.CenterCrop(args.image_size), T.ToTensor(), T.Normalize(mean, std)]
    )

    class Photos(Dataset):
        def __init__(self, items, tf):
            self.items, self.tf = items, tf

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            path, label = self.items[i]
            return self.tf(Image.open(path).convert("RGB")), label

    def loader(split, tf, shuffle):
        return DataLoader(
            Photos(by_split[split], tf), args.batch_size, shuffle=shuffle, num_workers=args.num_workers,
            persistent_workers=args.num_workers > 0,
        )  # fmt: skip

    train_loader, valid_loader = loader("train", train_tf, True), loader("valid", eval_tf, False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    loss_fn = torch.nn.CrossEntropyLoss()
    for epoch in range(1, args.epochs + 1):
        model.train()
        for x, y in train_loader:
            loss = loss_fn(model(x.contiguous(memory_format=torch.channels_last)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in valid_loader:
                correct += (model(x.contiguous(memory_format=torch.channels_last)).argmax(1) == y).sum().item()
                total += len(y)
        print(f"epoch {epoch}: valid acc {correct / max(total, 1):.4f}", flush=True)


if __name__ == "__main__":
    main()
