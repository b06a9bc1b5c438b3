"""``paddyclf train`` (and the root ``train_<model>.py`` scripts) and ``paddyclf demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import UserError
from ..models import model_arguments
from ..options import CONFIG_FILE_HELP, add_config_arguments, config_from_args
from ..training.config import TrainConfig
from .common import Command, guarded

DEMO_DIR = "data/demo"


def add_train_arguments(parser: argparse.ArgumentParser, model: str | None = None) -> None:
    """Flags of :class:`TrainConfig`. With a fixed ``model`` (root scripts) ``--model`` is absent,
    and so is ``--reduction`` unless that model uses it."""
    defaults = TrainConfig() if model is None else TrainConfig(model=model)
    skip = set() if model is None else {"model"} | ({"reduction"} - model_arguments(model))
    add_config_arguments(parser, defaults, skip)
    if model is None:  # `paddyclf train`: the root scripts take flags only
        parser.add_argument("--config", metavar="FILE", default=None, help=CONFIG_FILE_HELP)


def run_train(args: argparse.Namespace, model: str | None = None) -> int:
    from ..training import train  # imported late: keeps `--help` fast

    defaults = TrainConfig() if model is None else TrainConfig(model=model)
    train(config_from_args(args, defaults))
    return 0


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=DEMO_DIR, help=f"where the synthetic dataset goes (default: {DEMO_DIR})")
    parser.add_argument("--per-class", type=int, default=80, help="images per class (default: 80)")
    parser.add_argument("--epochs", type=int, default=25, help="training epochs (default: 25)")
    parser.add_argument("--image-size", type=int, default=160, help="training size in pixels (default: 160)")
    parser.add_argument("--output-dir", default="runs/demo", help="checkpoint and results (default: runs/demo)")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers (default: 2)")
    parser.add_argument("--data-only", action="store_true", help="only generate the dataset, do not train")


def run_demo(args: argparse.Namespace) -> int:
    from ..data.synthetic import dataset_exists, make_dataset

    if args.per_class < 5:
        raise UserError(f"--per-class must be >= 5 (got {args.per_class}).")
    if dataset_exists(args.data_dir):
        print(f"Using the synthetic dataset in {args.data_dir}/")
    else:
        print(f"Generating the synthetic paddy-leaf dataset in {args.data_dir}/ ...", flush=True)
        make_dataset(args.data_dir, per_class=args.per_class)
    if args.data_only:
        return 0
    from ..training import train

    config = TrainConfig(
        metadata=f"{args.data_dir}/metadata.csv",
        label2id=f"{args.data_dir}/label2id.json",
        epochs=args.epochs,
        image_size=args.image_size,
        batch_size=32,
        head_lr=2e-3,
        base_lr=1e-3,
        device="cpu",
        num_workers=args.num_workers,
        output_dir=args.output_dir,
        save_history=True,
        plot=True,
    )
    train(config)
    return 0


def train_script(model: str, argv: Sequence[str] | None = None) -> None:
    """Entry point of the root ``train_<model>.py`` scripts: ``paddyclf train --model <model>``."""
    parser = argparse.ArgumentParser(description=f"Train {model} (paddyclf).")
    add_train_arguments(parser, model)
    args = parser.parse_args(argv)
    sys.exit(guarded(lambda: run_train(args, model)))


COMMANDS = {
    "train": Command("train a model (see --model)", add_train_arguments, run_train),
    "demo": Command(
        "generate synthetic leaf data and train BoT-Linear on it (CPU, ~3 min)", add_demo_arguments, run_demo
    ),
}
