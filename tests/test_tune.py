"""`paddyclf tune`: an Optuna search whose study lives in a storage URL, pruned per epoch, ending in a
config file that `train --config` takes."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml

from paddyclf.cli import main
from paddyclf.selection.tune import PruningReporter
from tests.conftest import tiny_args


def tune_args(data, out, *extra: str) -> list[str]:
    args = tiny_args(data, out, "--params", "head_lr", "dropout", "--no-calibrate", *extra)
    return ["tune", *args]


def trials_of(out) -> list[dict]:
    with (out / "trials.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_tune_writes_a_best_config_that_train_accepts_and_resumes_from_its_storage(tiny_data, tmp_path):
    out = tmp_path / "tune"
    assert main(tune_args(tiny_data, out, "--trials", "3", "--tensorboard", str(tmp_path / "tb"))) == 0
    trials = trials_of(out)
    for k in range(3):  # each trial tracked, grouped under the study
        assert (tmp_path / "tb" / "tune-paddyclf" / f"trial_{k:04d}" / "MobileNetV3_Small_BoT_Linear").is_dir()
    assert [t["number"] for t in trials] == ["0", "1", "2"] and {t["state"] for t in trials} <= {"COMPLETE", "PRUNED"}
    assert (out / "study.db").is_file() and (out / "optimization_history.png").stat().st_size > 5_000
    best = yaml.safe_load((out / "best_config.yaml").read_text())
    winner = max((t for t in trials if t["state"] == "COMPLETE"), key=lambda t: float(t["value"]))
    assert best["dropout"] == pytest.approx(float(winner["dropout"])) and best["epochs"] == 2
    assert "output_dir" not in best and best["calibrate"] is False

    final = tmp_path / "final"
    assert main(["train", "--config", str(out / "best_config.yaml"), "--output-dir", str(final), "--epochs", "1"]) == 0
    config = torch.load(final / "MobileNetV3_Small_BoT_Linear_best.pt", weights_only=False)["config"]
    assert config["dropout"] == pytest.approx(best["dropout"])  # the searched setting reached the model

    assert main(tune_args(tiny_data, out, "--trials", "4")) == 0  # the same study, one more trial
    assert [t["number"] for t in trials_of(out)] == ["0", "1", "2", "3"]


@pytest.mark.slow
def test_tune_with_cv_scores_a_trial_by_its_grouped_folds(tiny_data, tmp_path):
    out = tmp_path / "tune"
    assert main(tune_args(tiny_data, out, "--trials", "1", "--cv", "3", "--epochs", "1")) == 0
    (trial,) = trials_of(out)
    result = json.loads((out / "trials" / "trial_0000" / "cv.json").read_text())
    assert len(result["runs"]) == 3
    assert float(trial["value"]) == pytest.approx(
        result["summary"]["models"]["MobileNetV3_Small_BoT_Linear"]["macro_f1"]["mean"]
    )


class FakeTrial:
    def __init__(self, prune: bool) -> None:
        self.prune, self.reports = prune, []

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.prune


def test_each_epoch_is_reported_and_a_pruned_trial_stops():
    import optuna

    keep = FakeTrial(prune=False)
    PruningReporter(keep).epoch(1, {"valid/macro_f1": 0.5})
    assert keep.reports == [(1, 0.5)]
    with pytest.raises(optuna.TrialPruned):
        PruningReporter(FakeTrial(prune=True)).epoch(2, {"valid/macro_f1": 0.1})


@pytest.mark.parametrize(
    ("flags", "needle"), [(["--trials", "0"], "--trials must be >= 1"), (["--cv", "2"], "--cv must be 0")]
)
def test_tune_refuses_bad_settings_in_one_paragraph(tiny_data, tmp_path, capsys, flags, needle):
    assert main(tune_args(tiny_data, tmp_path, *flags)) == 2
    assert needle in capsys.readouterr().err
