"""Experiment tracking: ``--tensorboard DIR`` and ``--mlflow URI``, both optional.

A run reports to a :class:`Tracker` three times: once per epoch (:meth:`Tracker.epoch`: losses,
accuracy, macro-F1, every parameter group's learning rate, the epoch's seconds), once at the end
(:meth:`Tracker.finish`: the hparams with the final metrics, the best epoch's confusion matrix, the
result files). :func:`make_tracker` builds the ones asked for; with neither flag, or on a torchrun
rank other than 0, it returns :class:`Tracker` itself, which does nothing, and neither library is
imported (each is an optional extra: ``pip install paddyclf[track]``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..errors import UserError


class Tracker:
    """The no-op tracker, and the interface of the real ones."""

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        """``values``: metric name -> number for this epoch (``train/loss``, ``lr/head_decay``, ...)."""

    def finish(self, hparams: dict, metrics: dict[str, float], confusion: np.ndarray, classes: list[str],
               files: list[Path]) -> None:  # fmt: skip
        """The run's settings with its final metrics, the best epoch's confusion matrix, its result files."""

    def close(self, failed: bool = False) -> None:
        """Flush and release; ``failed``: the run raised (or was interrupted) before it finished."""


class Trackers(Tracker):
    """Several trackers as one."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def epoch(self, epoch, values):
        for tracker in self.trackers:
            tracker.epoch(epoch, values)

    def finish(self, hparams, metrics, confusion, classes, files):
        for tracker in self.trackers:
            tracker.finish(hparams, metrics, confusion, classes, files)

    def close(self, failed=False):
        for tracker in self.trackers:
            tracker.close(failed)


def scalar_hparams(config) -> dict[str, float | int | str | bool]:
    """The config's fields as TensorBoard/MLflow accept them: numbers, strings and booleans (None -> "none")."""
    out = {}
    for key, value in dataclasses.asdict(config).items():
        if isinstance(value, bool | int | float | str):
            out[key] = value
        elif value is None:
            out[key] = "none"
        else:
            out[key] = str(value)
    return out


class TensorBoardTracker(Tracker):
    """Scalars per epoch, hparams with the final metrics, the confusion matrix as an image."""

    def __init__(self, log_dir: str | Path, first_epoch: int = 1) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError(
                "--tensorboard needs the tensorboard package: pip install 'paddyclf[track]' (or tensorboard)."
            ) from None
        # a resumed run drops what the interrupted one logged after its last saved epoch
        self.writer = SummaryWriter(str(log_dir), purge_step=first_epoch if first_epoch > 1 else None)

    def epoch(self, epoch, values):
        for name, value in values.items():
            self.writer.add_scalar(name, value, epoch)
        self.writer.flush()

    def finish(self, hparams, metrics, confusion, classes, files):
        from ..plots import confusion_figure

        self.writer.add_figure("confusion_matrix", confusion_figure(confusion, classes), close=True)
        self.writer.add_hparams(hparams, {f"final/{k}": v for k, v in metrics.items()}, run_name=".")
        self.writer.flush()

    def close(self, failed=False):
        self.writer.close()


def mlflow_store(target: str) -> tuple[str, str | None]:
    """(tracking URI, artifact location) of ``--mlflow``: a URI as it is (``http://``, ``sqlite:///``,
    ``databricks``...), or a plain folder, which becomes a local store needing no server: the SQLite
    database ``<folder>/mlflow.db`` and the artifacts in ``<folder>/artifacts``."""
    if "://" in target or target == "databricks":
        return target, None
    folder = Path(target).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


class MLflowTracker(Tracker):
    """A run in MLflow's tracking store: params, per-epoch metrics, the checkpoint and result files as artifacts."""

    def __init__(self, target: str, experiment: str, run_name: str, tags: dict[str, str]) -> None:
        try:
            import mlflow
            from mlflow.exceptions import MlflowException
        except ImportError:
            raise UserError("--mlflow needs the mlflow package: pip install 'paddyclf[track]' (or mlflow).") from None
        self.mlflow = mlflow
        uri, artifacts = mlflow_store(target)
        try:
            mlflow.set_tracking_uri(uri)
            if artifacts is not None and mlflow.get_experiment_by_name(experiment) is None:
                mlflow.create_experiment(experiment, artifact_location=artifacts)
            mlflow.set_experiment(experiment)
            self.run = mlflow.start_run(run_name=run_name, tags=tags)
        except MlflowException as exc:
            raise UserError(f"--mlflow {target}: {' '.join(str(exc).split())}") from None

    def epoch(self, epoch, values):
        self.mlflow.log_metrics(values, step=epoch)

    def finish(self, hparams, metrics, confusion, classes, files):
        self.mlflow.log_params(hparams)
        self.mlflow.log_metrics({f"final/{k}": v for k, v in metrics.items()})
        from ..plots import confusion_figure, plt

        figure = confusion_figure(confusion, classes)
        self.mlflow.log_figure(figure, "confusion_matrix.png")
        plt.close(figure)
        for path in files:
            if path.is_file():
                self.mlflow.log_artifact(str(path))

    def close(self, failed=False):
        if self.mlflow.active_run() is not None:
            self.mlflow.end_run(status="FAILED" if failed else "FINISHED")


def make_tracker(config, is_main: bool, first_epoch: int = 1, extra: Tracker | None = None) -> Tracker:
    """The trackers ``config`` asks for (``tensorboard``, ``mlflow``) and ``extra``, on rank 0 only."""
    if not is_main:
        return Tracker()
    trackers: list[Tracker] = [] if extra is None else [extra]
    group = config.track_group
    if config.tensorboard:
        log_dir = Path(config.tensorboard) / (group or "") / config.run_name
        trackers.append(TensorBoardTracker(log_dir, first_epoch))
    if config.mlflow:
        tags = {"paddyclf.model": config.model, **({"paddyclf.group": group} if group else {})}
        name = f"{group}/{config.run_name}" if group else config.run_name
        trackers.append(MLflowTracker(config.mlflow, config.mlflow_experiment, name, tags))
    return Trackers(trackers) if trackers else Tracker()
