"""`--tensorboard DIR` and `--mlflow URI`: every epoch, the hparams with the final metrics, the
confusion matrix and the result files, read back with each tool's own reader."""

from __future__ import annotations

import pytest

from paddyclf.cli import main
from tests.conftest import tiny_args

EPOCH_SCALARS = {"train/loss", "valid/loss", "train/accuracy", "valid/accuracy", "valid/macro_f1", "time/epoch_seconds"}


@pytest.fixture(scope="module")
def tracked_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("tracked")
    args = tiny_args(tiny_data, out, "--tensorboard", str(out / "tb"), "--mlflow", str(out / "mlflow"))
    assert main(["train", *args, "--model-name", "tracked", "--track-group", "study-1"]) == 0
    return out


@pytest.mark.slow
def test_tensorboard_gets_every_epoch_the_hparams_and_the_confusion_matrix(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_dir = tracked_run / "tb" / "study-1" / "tracked"  # DIR/<group>/<model_name>
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0}).Reload()
    tags = events.Tags()
    assert EPOCH_SCALARS | {"lr/head_decay", "lr/backbone_decay"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("valid/loss")] == [1, 2]
    assert "confusion_matrix" in tags["images"]
    assert {"final/valid_acc", "final/valid_f1", "final/best_epoch"} <= set(tags["scalars"])
    assert events.PluginTagToContent("hparams")  # the hparams with the final metrics, for TensorBoard's HParams tab


@pytest.mark.slow
def test_mlflow_gets_params_per_epoch_metrics_and_the_files_read_back_with_its_client(tracked_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tracked_run / 'mlflow' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("paddyclf").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "study-1/tracked"
    assert run.data.tags["paddyclf.group"] == "study-1" and run.data.params["epochs"] == "2"
    assert run.data.params["image_size"] == "64" and run.data.params["model"] == "MobileNetV3_Small_BoT_Linear"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "valid/macro_f1")] == [1, 2]
    assert set(run.data.metrics) >= EPOCH_SCALARS
    assert 0 <= run.data.metrics["final/valid_acc"] <= 1
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"tracked_best.pt", "tracked_summary.csv", "confusion_matrix.png"} <= artifacts


def test_an_unreachable_mlflow_store_is_one_clear_error(tiny_data, tmp_path, capsys):
    args = tiny_args(tiny_data, tmp_path, "--mlflow", "unknownscheme://nowhere", "--epochs", "1")
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert "--mlflow unknownscheme://nowhere" in err and "Traceback" not in err
