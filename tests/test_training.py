"""End-to-end training on tiny generated data: outputs, determinism, optimizer groups."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_args

from paddyclf.cli import main
from paddyclf.models import create_model
from paddyclf.training.config import TrainConfig
from paddyclf.training.run import HISTORY_KEYS, parameter_groups

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = [
    "train_MobileNetV3_Small_BoT_Linear.py",
    "train_MobileNetV3_Small_BoT.py",
    "train_MobileNetV3_Small_Hybrid.py",
]


@pytest.fixture(scope="module")
def two_epoch_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = main(["train", *tiny_args(tiny_data, out, "--save-history", "--plot", "--patience", "0")])
    assert code == 0
    return out


def test_run_writes_checkpoint_history_metrics_and_plot(two_epoch_run):
    out = two_epoch_run
    name = "MobileNetV3_Small_BoT_Linear"
    ckpt = torch.load(out / f"{name}_best.pt", weights_only=True)
    assert set(ckpt["config"]) >= {
        "architecture",
        "num_classes",
        "heads",
        "image_size",
        "dropout",
        "reduction",
    }
    assert {"state_dict", "label2id", "normalization", "epoch", "metrics"} <= set(ckpt)
    history = json.loads((out / "results" / f"{name}_history.json").read_text())
    assert all(len(history[k]) == 2 for k in HISTORY_KEYS)
    metrics = json.loads((out / "results" / f"{name}_metrics.json").read_text())
    for key in (
        "model_name",
        "size_mb",
        "valid_acc",
        "valid_f1",
        "fps",
        "num_params",
        "ckpt_path",
        "per_class",
        "confusion_matrix",
        "device",
        "fps_batch_size",
        "fps_threads",
        "training_seconds",
    ):
        assert key in metrics
    assert len(metrics["confusion_matrix"]) == 4
    assert (out / "results" / f"{name}_history.png").stat().st_size > 10_000
    assert not list(out.rglob("*.tmp"))


def test_every_run_writes_a_summary_csv_with_one_row_per_epoch_of_the_history(two_epoch_run):
    name = "MobileNetV3_Small_BoT_Linear"
    with (two_epoch_run / "results" / f"{name}_summary.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    history = json.loads((two_epoch_run / "results" / f"{name}_history.json").read_text())
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert list(rows[0]) == ["epoch", *history]  # timm's layout: the epoch, then the history's fields
    for key, values in history.items():
        assert [float(r[key]) for r in rows] == pytest.approx(values, rel=1e-12)


def test_train_loss_falls(two_epoch_run):
    history = json.loads((two_epoch_run / "results" / "MobileNetV3_Small_BoT_Linear_history.json").read_text())
    assert history["train_loss"][-1] < history["train_loss"][0]


def test_cosine_schedule_is_recorded(two_epoch_run):
    lrs = json.loads((two_epoch_run / "results" / "MobileNetV3_Small_BoT_Linear_history.json").read_text())[
        "learning_rates"
    ]
    assert lrs[0] == pytest.approx(2e-3)
    assert lrs[1] == pytest.approx(1e-3)  # cosine half-way with T_max = epochs = 2


def test_printed_metrics_block_has_the_guide_shape(tiny_data, tmp_path, capsys):
    assert main(["train", *tiny_args(tiny_data, tmp_path, "--epochs", "1", "--model-name", "tiny")]) == 0
    out = capsys.readouterr().out
    block = out[out.index("Training finished. Metrics:") :].splitlines()
    keys = [line.split(":")[0].strip() for line in block[1:8]]
    assert keys == ["model_name", "size_mb", "valid_acc", "valid_f1", "fps", "num_params", "ckpt_path"]
    assert block[1] == "  model_name: tiny"
    assert block[7] == f"  ckpt_path: {tmp_path / 'tiny_best.pt'}"
    assert (tmp_path / "tiny_best.pt").is_file()


def test_same_seed_gives_the_same_history(tiny_data, tmp_path):
    histories = []
    for run in ("a", "b"):
        out = tmp_path / run
        assert main(["train", *tiny_args(tiny_data, out, "--save-history", "--train-limit", "16")]) == 0
        histories.append(json.loads((out / "results" / "MobileNetV3_Small_BoT_Linear_history.json").read_text()))
    for key in HISTORY_KEYS:
        assert histories[0][key] == histories[1][key]


@pytest.mark.parametrize("model", ["MobileNetV3_Small_BoT", "MobileNetV3_Small_Hybrid", "MobileNetV3_Small"])
def test_every_variant_trains(tiny_data, tmp_path, model):
    assert main(["train", "--model", model, *tiny_args(tiny_data, tmp_path, "--epochs", "1")]) == 0
    assert (tmp_path / f"{model}_best.pt").is_file()


def test_parameter_groups_hold_the_right_lrs_and_no_decay_sets():
    model = create_model("MobileNetV3_Small_BoT", num_classes=4)
    groups = {g["name"]: g for g in parameter_groups(model, 1e-5, 1e-3, 0.05)}
    assert set(groups) == {"backbone_decay", "backbone_no_decay", "head_decay", "head_no_decay"}
    assert groups["backbone_decay"]["lr"] == groups["backbone_no_decay"]["lr"] == 1e-5
    assert groups["head_decay"]["lr"] == groups["head_no_decay"]["lr"] == 1e-3
    assert groups["backbone_decay"]["weight_decay"] == groups["head_decay"]["weight_decay"] == 0.05
    assert groups["backbone_no_decay"]["weight_decay"] == groups["head_no_decay"]["weight_decay"] == 0.0
    name_of = {id(p): n for n, p in model.named_parameters()}
    no_decay = {name_of[id(p)] for g in groups.values() if g["weight_decay"] == 0 for p in g["params"]}
    decay = {name_of[id(p)] for g in groups.values() if g["weight_decay"] > 0 for p in g["params"]}
    assert {"head.attention.rel_h", "head.attention.rel_w", "classifier.bias"} <= no_decay
    assert all(model.get_parameter(n).ndim > 1 for n in decay)
    assert "classifier.weight" in decay
    assert all(
        n.startswith("backbone.")
        for g in ("backbone_decay", "backbone_no_decay")
        for n in (name_of[id(p)] for p in groups[g]["params"])
    )
    assert len(no_decay) + len(decay) == len(list(model.parameters()))


@pytest.fixture(scope="module")
def root_script_help() -> dict[str, str]:
    """Each root script's ``--help``, the three run at once (each spends seconds importing torch)."""
    running = {
        script: subprocess.Popen([sys.executable, str(ROOT / script), "--help"], stdout=subprocess.PIPE, text=True)
        for script in SCRIPTS
    }
    outputs = {script: process.communicate(timeout=120)[0] for script, process in running.items()}
    assert all(process.returncode == 0 for process in running.values())
    return outputs


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_root_script_help_lists_every_flag(script, root_script_help):
    help_text = root_script_help[script]
    flags = [
        "--metadata",
        "--label2id",
        "--image-size",
        "--heads",
        "--dropout",
        "--pretrained",
        "--epochs",
        "--batch-size",
        "--patience",
        "--base-lr",
        "--head-lr",
        "--weight-decay",
        "--scheduler-tmax",
        "--num-workers",
        "--pin-memory",
        "--train-limit",
        "--valid-limit",
        "--model-name",
        "--device",
        "--seed",
        "--plot",
        "--save-history",
        "--pretrained-weights",
        "--output-dir",
        "--backbone",
    ]
    if "Hybrid" in script:
        flags.append("--reduction")
    for flag in flags:
        assert flag in help_text, flag


def test_config_defaults_match_the_guide():
    c = TrainConfig()
    assert (c.metadata, c.label2id, c.image_size, c.heads, c.dropout, c.pretrained) == (
        "data/metadata.csv",
        "data/label2id.json",
        224,
        4,
        0.1,
        False,
    )
    assert (c.epochs, c.batch_size, c.patience, c.base_lr, c.head_lr, c.weight_decay) == (
        30,
        32,
        10,
        5e-5,
        5e-4,
        1e-2,
    )
    assert (c.scheduler_tmax, c.num_workers, c.pin_memory, c.train_limit, c.valid_limit) == (
        None,
        4,
        False,
        None,
        None,
    )
    assert (c.device, c.seed, c.plot, c.save_history, c.reduction, c.output_dir) == (
        "auto",
        42,
        False,
        False,
        32,
        ".",
    )


def test_classification_metrics_equal_scikit_learns_with_absent_classes():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    from paddyclf.metrics import classification_metrics

    rng = np.random.default_rng(0)
    targets = rng.integers(0, 5, 200)  # class 5 never occurs
    predictions = np.where(rng.random(200) < 0.6, targets, rng.integers(0, 5, 200))
    predictions[predictions == 4] = 3  # class 4 is never predicted
    labels = list(range(6))
    mine = classification_metrics(targets, predictions, 6)
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predictions, labels=labels, zero_division=0
    )
    assert mine["accuracy"] == pytest.approx(accuracy_score(targets, predictions))
    assert mine["macro_f1"] == pytest.approx(
        f1_score(targets, predictions, labels=labels, average="macro", zero_division=0)
    )
    for k, row in enumerate(mine["per_class"].values()):
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
            (precision[k], recall[k], f1[k], support[k])
        )
    assert mine["confusion_matrix"] == confusion_matrix(targets, predictions, labels=labels).tolist()


def test_the_training_process_does_not_import_scikit_learn_or_a_tracker():
    """scikit-learn's import was about 0.6 s of every run (docs/BENCHMARKS.md section 3); TensorBoard and
    MLflow are optional extras, imported only with --tensorboard or --mlflow."""
    code = (
        "import sys, paddyclf.cli, paddyclf.cli.train, paddyclf.training.run, paddyclf.trust.fit; "
        "print([m for m in ('sklearn', 'tensorboard', 'mlflow') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_fps_is_the_throughput_of_full_batches_after_the_warm_up():
    from paddyclf.trust.fit import Outputs

    empty = np.zeros(0)
    timed = Outputs(empty, empty, empty, empty, [], [(32, 1.0), (32, 1.0), (32, 0.5), (32, 0.25), (32, 0.75), (8, 0.1)])
    assert timed.images_per_second(32) == pytest.approx(32 * 3 / 1.5)
    assert timed.images_per_second(32, timed=4) is None  # too few batches to time: measure instead
    assert Outputs(empty, empty, empty, empty, []).images_per_second(32) is None
