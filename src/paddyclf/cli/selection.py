"""Choosing a model: ``paddyclf cv`` (grouped cross-validation with paired tests)."""

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


COMMANDS = {
    "cv": Command(
        "grouped K-fold cross-validation of one or more models: intervals and corrected paired t-tests",
        add_cv_arguments,
        run_cv,
    ),
}
