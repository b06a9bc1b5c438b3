"""The ``paddyclf`` command line: a thin layer over the package's functions.

Every subcommand parses flags, calls one function, and turns :class:`UserError` into one
clear paragraph on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .config import TrainConfig, add_config_arguments, config_from_args
from .errors import UserError
from .models import model_arguments

DEMO_DIR = "data/demo"


# --------------------------------------------------------------------------- train


def add_train_arguments(parser: argparse.ArgumentParser, model: str | None = None) -> None:
    """Flags of :class:`TrainConfig`. With a fixed ``model`` (root scripts) ``--model`` is absent,
    and so is ``--reduction`` unless that model uses it."""
    defaults = TrainConfig() if model is None else TrainConfig(model=model)
    skip = set() if model is None else {"model"} | ({"reduction"} - model_arguments(model))
    add_config_arguments(parser, defaults, skip)


def run_train(args: argparse.Namespace, model: str | None = None) -> int:
    from .train import train  # imported late: keeps `--help` fast

    defaults = TrainConfig() if model is None else TrainConfig(model=model)
    train(config_from_args(args, defaults))
    return 0


# --------------------------------------------------------------------------- demo


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", default=DEMO_DIR, help=f"where the synthetic dataset goes (default: {DEMO_DIR})"
    )
    parser.add_argument("--per-class", type=int, default=80, help="images per class (default: 80)")
    parser.add_argument("--epochs", type=int, default=25, help="training epochs (default: 25)")
    parser.add_argument("--image-size", type=int, default=160, help="training size in pixels (default: 160)")
    parser.add_argument(
        "--output-dir", default="runs/demo", help="checkpoint and results (default: runs/demo)"
    )
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers (default: 2)")
    parser.add_argument("--data-only", action="store_true", help="only generate the dataset, do not train")


def run_demo(args: argparse.Namespace) -> int:
    from .synthetic import dataset_exists, make_dataset

    if args.per_class < 5:
        raise UserError(f"--per-class must be >= 5 (got {args.per_class}).")
    if dataset_exists(args.data_dir):
        print(f"Using the synthetic dataset in {args.data_dir}/")
    else:
        print(f"Generating the synthetic paddy-leaf dataset in {args.data_dir}/ ...", flush=True)
        make_dataset(args.data_dir, per_class=args.per_class)
    if args.data_only:
        return 0
    from .train import train

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


# --------------------------------------------------------------------------- prepare


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, help="class-per-folder tree: DIR/<class>/<image>")
    parser.add_argument("--out", required=True, help="folder for metadata.csv and label2id.json")
    parser.add_argument(
        "--valid-fraction", type=float, default=0.2, help="stratified valid share (default: 0.2)"
    )
    parser.add_argument("--test-fraction", type=float, default=0.0, help="stratified test share (default: 0)")
    parser.add_argument("--seed", type=int, default=42, help="split seed (default: 42)")


def run_prepare(args: argparse.Namespace) -> int:
    from .prepare import prepare_dataset

    metadata, label2id = prepare_dataset(
        args.images, args.out, args.valid_fraction, args.test_fraction, args.seed
    )
    print(f"Wrote {metadata} and {label2id}")
    return 0


# --------------------------------------------------------------------------- entry points

COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "train": ("train a model (see --model)", add_train_arguments, run_train),
    "demo": (
        "generate synthetic leaf data and train BoT-Linear on it (CPU, ~3 min)",
        add_demo_arguments,
        run_demo,
    ),
    "prepare": (
        "metadata.csv + label2id.json from a class-per-folder tree",
        add_prepare_arguments,
        run_prepare,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paddyclf", description="Rice leaf-disease classification.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def guarded(run: Callable[[], int]) -> int:
    """Run ``run``; a UserError becomes a one-paragraph message and exit code 2."""
    try:
        return run()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: COMMANDS[args.command][2](args))


def train_script(model: str, argv: Sequence[str] | None = None) -> None:
    """Entry point of the root ``train_<model>.py`` scripts: ``paddyclf train --model <model>``."""
    parser = argparse.ArgumentParser(description=f"Train {model} (paddyclf).")
    add_train_arguments(parser, model)
    args = parser.parse_args(argv)
    sys.exit(guarded(lambda: run_train(args, model)))


__all__ = ["build_parser", "main", "train_script"]
