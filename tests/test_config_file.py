"""`train --config FILE` and `cv --config FILE`: YAML or JSON flag values, overridden by the command line."""

from __future__ import annotations

import json

import pytest

from paddyclf.cli import _build_parsers, main
from paddyclf.cli.common import with_config_file
from paddyclf.options import config_from_args
from paddyclf.training.config import TrainConfig


def parse(command: str, argv: list[str], config) -> object:
    parser, commands = _build_parsers()
    return parser.parse_args(with_config_file([command, *argv], command, commands[command], str(config)))


def test_a_yaml_config_sets_flags_and_the_command_line_overrides_it(tmp_path):
    config = tmp_path / "best.yaml"
    config.write_text("epochs: 7\nhead-lr: 0.004\nbase_lr: 3.0e-4\ncalibrate: false\nmodel: MobileNetV3_Small\n")
    args = parse("train", ["--config", str(config), "--epochs", "12"], config)
    train = config_from_args(args, TrainConfig())
    assert (train.epochs, train.head_lr, train.base_lr, train.calibrate) == (12, 0.004, 3e-4, False)
    assert train.model == "MobileNetV3_Small" and train.batch_size == TrainConfig().batch_size


def test_a_json_config_gives_cv_its_models_and_switches(tmp_path):
    config = tmp_path / "cv.json"
    config.write_text(
        json.dumps({"models": ["MobileNetV3_Small", "MobileNetV3_Small_BoT"], "folds": 4, "pretrained": True})
    )
    args = parse("cv", ["--config", str(config)], config)
    assert args.models == ["MobileNetV3_Small", "MobileNetV3_Small_BoT"] and args.folds == 4 and args.pretrained


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("epoch: 3\n", "not flags of `train`: epoch"),  # an abbreviation argparse would have taken for --epochs
        ("epochs: [1\n", "not valid YAML or JSON"),
        ("- 1\n", "must hold a mapping"),
        ("epochs: {a: 1}\n", "epochs must be a number"),
    ],
)
def test_a_bad_config_file_is_refused_in_one_paragraph(tmp_path, capsys, text, needle):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert main(["train", "--config", str(config), "--metadata", str(tmp_path / "none.csv")]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_missing_config_file_is_named(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nothere.yaml")]) == 2
    assert "nothere.yaml not found" in capsys.readouterr().err
