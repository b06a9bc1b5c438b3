"""Exact resume after SIGKILL / SIGINT / SIGTERM, refusal of a foreign checkpoint, divergence, torchrun/DDP."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_args

from paddyclf.cli import main
from paddyclf.training.run import HISTORY_KEYS

NAME = "MobileNetV3_Small_BoT_Linear"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"}


def summary(out: Path) -> list[dict]:
    """The deterministic columns of ``<name>_summary.csv`` (not the epoch's seconds)."""
    with (out / "results" / f"{NAME}_summary.csv").open(newline="") as fh:
        return [{k: row[k] for k in ("epoch", *HISTORY_KEYS)} for row in csv.DictReader(fh)]


def history(out: Path) -> dict:
    data = json.loads((out / "results" / f"{NAME}_history.json").read_text())
    return {k: data[k] for k in HISTORY_KEYS}


def final_weights(out: Path) -> dict:
    return torch.load(out / f"{NAME}_last.pt", weights_only=True)["state_dict"]


def assert_same_run(a: Path, b: Path) -> None:
    assert history(a) == history(b)
    assert summary(a) == summary(b)  # the resumed run's summary.csv continued the interrupted one's
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full")
    assert main(["train", *tiny_args(tiny_data, out, "--epochs", "4", "--save-history", "--patience", "0")]) == 0
    return out


def start_run(tiny_data: Path, out: Path, *extra: str) -> subprocess.Popen:
    args = tiny_args(tiny_data, out, "--epochs", "4", "--save-history", "--patience", "0", *extra)
    return subprocess.Popen(
        [sys.executable, "-m", "paddyclf", "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    for line in proc.stdout:
        if text in line:
            return
        assert time.time() < deadline, f"no {text!r} in time"
    raise AssertionError(f"process ended before printing {text!r}: {proc.stderr.read()}")


@pytest.mark.slow
def test_sigkill_after_epoch_2_then_resume_equals_uninterrupted(tiny_data, tmp_path, uninterrupted):
    proc = start_run(tiny_data, tmp_path)
    wait_for_line(proc, "epoch   2/4")
    last = tmp_path / f"{NAME}_last.pt"
    deadline = time.time() + 60
    while torch.load(last, weights_only=True)["epoch"] < 3:  # epoch 2's state is written (atomically) after its line
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert torch.load(last, weights_only=True)["epoch"] in (3, 4)
    args = tiny_args(tiny_data, tmp_path, "--epochs", "4", "--save-history", "--patience", "0", "--resume", str(last))
    assert main(["train", *args]) == 0
    assert_same_run(uninterrupted, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_after_the_step_saves_state_and_resume_is_exact(tiny_data, tmp_path, uninterrupted, sig, code):
    proc = start_run(tiny_data, tmp_path)
    wait_for_line(proc, "epoch   1/4")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    last = tmp_path / f"{NAME}_last.pt"
    assert f"--resume {last}" in err and "Traceback" not in err
    args = tiny_args(tiny_data, tmp_path, "--epochs", "4", "--save-history", "--patience", "0", "--resume", str(last))
    assert main(["train", *args]) == 0
    assert_same_run(uninterrupted, tmp_path)


RECIPE_FLAGS = ("--ema-decay", "0.9", "--mixup", "0.2", "--cutmix", "1.0", "--label-smoothing", "0.1")


@pytest.mark.slow
def test_resume_mid_epoch_is_exact_with_ema_and_mixup_on(tiny_data, tmp_path_factory):
    full = tmp_path_factory.mktemp("full_recipe")
    args = tiny_args(tiny_data, full, "--epochs", "4", "--save-history", "--patience", "0", *RECIPE_FLAGS)
    assert main(["train", *args]) == 0
    out = tmp_path_factory.mktemp("resumed_recipe")
    proc = start_run(tiny_data, out, *RECIPE_FLAGS)
    wait_for_line(proc, "epoch   1/4")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    last = out / f"{NAME}_last.pt"
    resume = tiny_args(tiny_data, out, "--epochs", "4", "--save-history", "--patience", "0", *RECIPE_FLAGS)
    assert main(["train", *resume, "--resume", str(last)]) == 0
    assert_same_run(full, out)
    ema_a = torch.load(full / f"{NAME}_last.pt", weights_only=True)["ema"]
    ema_b = torch.load(last, weights_only=True)["ema"]
    assert ema_a["updates"] == ema_b["updates"] == 12
    assert all(torch.equal(ema_a["state_dict"][k], ema_b["state_dict"][k]) for k in ema_a["state_dict"])


def test_resume_refuses_another_architecture(tiny_data, uninterrupted, tmp_path, capsys):
    last = uninterrupted / f"{NAME}_last.pt"
    args = tiny_args(tiny_data, tmp_path, "--model", "MobileNetV3_Small_BoT", "--resume", str(last))
    assert main(["train", *args]) == 2
    assert "Refusing to resume" in capsys.readouterr().err


def test_resume_refuses_another_class_set(tiny_data, uninterrupted, tmp_path, capsys):
    labels = tmp_path / "label2id.json"
    labels.write_text(json.dumps({"healthy": 0, "brown_spot": 1, "blast": 2, "leaf_blight": 3, "tungro": 4}))
    args = tiny_args(tiny_data, tmp_path, "--resume", str(uninterrupted / f"{NAME}_last.pt"))
    args[args.index("--label2id") + 1] = str(labels)
    assert main(["train", *args]) == 2
    assert "Refusing to resume" in capsys.readouterr().err


def test_non_finite_loss_stops_with_epoch_and_step(tiny_data, tmp_path, capsys):
    args = tiny_args(tiny_data, tmp_path, "--head-lr", "1e12", "--base-lr", "1e12", "--grad-clip", "0", "--epochs", "3")
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert "diverged" in err and "at epoch" in err and "step" in err


@pytest.mark.slow
def test_torchrun_two_processes_with_ema_report_the_metrics_of_a_single_process_evaluation(tiny_data, tmp_path):
    # 7: shards of unequal size; EMA and MixUp on: each rank averages its (synchronised) weights
    args = tiny_args(
        tiny_data, tmp_path, "--save-history", "--valid-limit", "7", "--ema-decay", "0.9", "--mixup", "0.2",
        "--tensorboard", str(tmp_path / "tb"),
    )  # fmt: skip
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "paddyclf",
        "train",
        *args,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env={**ENV, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Training finished. Metrics:") == 1  # only rank 0 prints
    assert len(list((tmp_path / "tb").rglob("events.out.tfevents.*"))) == 2  # and logs: its epochs, its hparams
    metrics = json.loads((tmp_path / "results" / f"{NAME}_metrics.json").read_text())
    assert metrics["processes"] == 2
    from paddyclf.data import load_label2id, load_splits
    from paddyclf.inference.evaluate import run_evaluation

    valid = load_splits(tiny_data / "metadata.csv", load_label2id(tiny_data / "label2id.json"), 42, {"valid": 7})[
        "valid"
    ]
    assert sum(metrics["per_class"][c]["support"] for c in metrics["per_class"]) == len(valid) == 7
    # the same 7 images, evaluated in one process
    subset = tmp_path / "valid7.csv"
    subset.write_text(
        "path,label,split\n"
        + "".join(f"{s.path},{['healthy', 'brown_spot', 'blast', 'leaf_blight'][s.label]},valid\n" for s in valid)
    )
    report = run_evaluation(tmp_path / f"{NAME}_best.pt", subset, output_dir=tmp_path / "eval", progress=False)
    assert report["accuracy"] == pytest.approx(metrics["valid_acc"])
    assert report["macro_f1"] == pytest.approx(metrics["valid_f1"])
