"""Choosing a model and its settings: ``paddyclf cv`` (grouped cross-validation with paired tests) and
``paddyclf tune`` (an Optuna search)."""

from __future__ import annotations

import argparse

from ..options import CONFIG_FILE_HELP, add_config_arguments, config_from_args
from ..training.config import TrainConfig
from .common import Command

# set per run by cv (model, its name and folder, the fold's metadata, resume): not flags of `cv`
TRAIN_FLAGS_SET_BY_CV = {"model", "model_name", "output_dir", "resume", "save_history", "plot"}


def add_cv_arguments(parser: argparse.ArgumentParser) -> None:
    from ..selection.cv import CrossValidationConfig

    add_config_arguments(parser, CrossValidationConfig())
    parser.add_argument("--config", metavar="FILE", default=None, help=CONFIG_FILE_HELP)
    add_config_arguments(parser.add_argument_group("training (every run)"), TrainConfig(), TRAIN_FLAGS_SET_BY_CV)


def run_cv(args: argparse.Namespace) -> int:
    from ..selection.cv import CrossValidationConfig, run_cv

    result = run_cv(config_from_args(args, CrossValidationConfig()), config_from_args(args, TrainConfig()))
    for model, summary in result["summary"]["models"].items():
        acc, f1 = summary["accuracy"], summary["macro_f1"]
        print(
            f"{model}: accuracy {acc['mean']:.4f} [{acc['low']:.4f}, {acc['high']:.4f}]  "
            f"macro-F1 {f1['mean']:.4f} [{f1['low']:.4f}, {f1['high']:.4f}]  ({summary['runs']} runs)"
        )
    for comparison in result["summary"]["comparisons"]:
        print(comparison["verdict"])
    print(f"Wrote {args.output_dir}/cv.md, cv.json, cv_scores.png and folds.csv")
    return 0


# set per trial by tune (its folder, no resume or per-run files): not flags of `tune`
TRAIN_FLAGS_SET_BY_TUNE = {"output_dir", "resume", "save_history", "plot", "model_name", "track_group"}


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    from ..selection.tune import TuneConfig, describe_space

    parser.description = f"{parser.description}. The declared space: {describe_space()}."
    add_config_arguments(parser, TuneConfig())
    parser.add_argument("--config", metavar="FILE", default=None, help=CONFIG_FILE_HELP)
    add_config_arguments(parser.add_argument_group("training (every trial)"), TrainConfig(), TRAIN_FLAGS_SET_BY_TUNE)


def run_tune(args: argparse.Namespace) -> int:
    from ..selection.tune import TuneConfig, run_tune

    result = run_tune(config_from_args(args, TuneConfig()), config_from_args(args, TrainConfig()))
    settings = ", ".join(f"{k}={v}" for k, v in result["config"].items() if k in result["params"])
    print(f"Best: trial {result['best_trial']}, macro-F1 {result['best_value']:.4f} ({settings})")
    print(f"Train it: paddyclf train --config {args.output_dir}/best_config.yaml")
    return 0


COMMANDS = {
    "cv": Command(
        "grouped K-fold cross-validation of one or more models: intervals and corrected paired t-tests",
        add_cv_arguments,
        run_cv,
    ),
    "tune": Command(
        "Optuna search over learning rates, weight decay, dropout, image size and recipe pieces (resumable)",
        add_tune_arguments,
        run_tune,
    ),
}
