"""``paddyclf cv``: grouped K-fold cross-validation of one or more models, resumable, with paired tests.

Top to bottom, :func:`run_cv`:

1. reads the pool (every row but the ``test`` split) and its duplicate groups (:mod:`.folds`);
2. assigns test folds per repeat with ``StratifiedGroupKFold`` and writes them to ``folds.csv``
   (one ``fold_r<R>`` column per repeat) and one metadata CSV per run under ``folds/``;
3. for each model, repeat and fold: trains through :func:`~paddyclf.training.train` (fold k+1
   validates: early stopping and calibration), then evaluates the best checkpoint on fold k
   (:func:`~paddyclf.inference.evaluate.run_evaluation`) and writes ``runs/<model>/r<R>-f<K>/fold.json``;
4. summarises (:mod:`.summary`) into ``cv.json``, ``cv.md`` and ``cv_scores.png``.

A finished run's ``fold.json`` is read back, not retrained; an interrupted one continues from its
``<model>_last.pt``. ``plan.json`` pins the settings: rerunning into the same folder with other
settings is refused, and adding a model to ``--models`` trains only the new model's runs.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import class_names
from ..data import load_label2id
from ..errors import TrainingInterruptedError, UserError
from ..fileio import atomic_write, write_csv, write_json
from ..models import list_models
from ..options import option
from ..training.config import TrainConfig
from .folds import MIN_FOLDS, dataset_groups, fold_roles, grouped_folds, groups_crossing, read_pool
from .report import markdown_report, plot_scores
from .summary import summarise

# TrainConfig fields that cross-validation sets per run; the rest come from the user's flags
PER_RUN_FIELDS = frozenset({"model", "model_name", "metadata", "output_dir", "resume", "save_history", "plot"})
# where runs are logged does not change them: a resumed cv may log elsewhere
TRACKING_FIELDS = frozenset({"tensorboard", "mlflow", "mlflow_experiment", "track_group"})


@dataclass
class CrossValidationConfig:
    """What ``paddyclf cv`` adds to the training flags; ``paddyclf cv --help`` lists the same fields."""

    folds: int = option(5, f"number of grouped, stratified folds (>= {MIN_FOLDS}: one tests, one validates)")
    repeats: int = option(1, "repeat the K folds with other shuffles (seed + repeat)")
    models: tuple[str, ...] = option(
        ("MobileNetV3_Small_BoT_Linear",), "architectures to cross-validate on the same folds", choices=list_models()
    )
    output_dir: str = option("cv", "where folds, runs, cv.json, cv.md and cv_scores.png go")

    def __post_init__(self) -> None:
        self.models = tuple(self.models)

    def validate(self) -> None:
        problems = []
        if self.folds < MIN_FOLDS:
            problems.append(f"--folds must be >= {MIN_FOLDS}: one fold tests, one validates, the rest train")
        if self.repeats < 1:
            problems.append(f"--repeats must be >= 1 (got {self.repeats})")
        if len(set(self.models)) != len(self.models):
            problems.append("--models lists a model twice")
        unknown = sorted(set(self.models) - set(list_models()))
        if unknown:
            problems.append(f"--models: unknown {', '.join(unknown)} (choose from {', '.join(list_models())})")
        if problems:
            raise UserError("Invalid options: " + "; ".join(problems) + ".")


def run_name(repeat: int, fold: int) -> str:
    return f"r{repeat}-f{fold}"


def shared_settings(cv: CrossValidationConfig, train: TrainConfig, metadata: Path, label2id: Path) -> dict:
    """Everything that fixes the runs except the list of models: ``plan.json``."""
    skip = PER_RUN_FIELDS | TRACKING_FIELDS | {"label2id"}
    flags = {k: v for k, v in dataclasses.asdict(train).items() if k not in skip}
    return {
        "folds": cv.folds,
        "repeats": cv.repeats,
        "metadata": str(metadata),
        "label2id": str(label2id),
        "train": flags,
    }


def check_plan(path: Path, plan: dict) -> None:
    """Refuse to mix runs made with other settings into this folder (first run: write the plan)."""
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored != plan:
            differ = sorted(k for k in {*stored, *plan} if stored.get(k) != plan.get(k))
            if "train" in differ:
                train_a, train_b = stored.get("train", {}), plan["train"]
                differ += [f"--{k.replace('_', '-')}" for k in sorted(set(train_a) | set(train_b))
                           if train_a.get(k) != train_b.get(k)]  # fmt: skip
            raise UserError(
                f"{path.parent} holds a cross-validation made with other settings ({', '.join(differ)}). "
                "Give a new --output-dir, or the same settings to resume it."
            )
    else:
        write_json(path, plan)


def fold_rows(pool, groups: list[str], assignment) -> list[dict]:
    """The rows of ``folds.csv``: path, label, group, and the test fold per repeat (``fold_r<R>``)."""
    return [
        {
            "path": str(p.path),
            "label": p.label,
            "group": g,
            **{f"fold_r{r}": int(assignment[r, k]) for r in range(assignment.shape[0])},
        }
        for k, (p, g) in enumerate(zip(pool, groups, strict=True))
    ]


def rows_sha256(rows: list[dict]) -> str:
    """A fingerprint of the photos and their folds: runs read back must come from the same folds."""
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def write_fold_files(out: Path, pool, groups: list[str], assignment, n_folds: int, rows: list[dict]) -> dict[str, Path]:
    """``folds.csv`` (``rows``) and one metadata CSV per run (its photos' roles)."""
    repeats = assignment.shape[0]
    write_csv(out / "folds.csv", list(rows[0]), rows)
    metadata = {}
    for repeat in range(repeats):
        for fold in range(n_folds):
            roles = fold_roles(assignment[repeat], fold, n_folds)
            crossing = groups_crossing(roles, groups)
            if crossing:  # StratifiedGroupKFold's contract; checked because a leak would be silent
                raise RuntimeError(f"groups {crossing[:5]} span two roles in run {run_name(repeat, fold)}")
            metadata[run_name(repeat, fold)] = write_csv(
                out / "folds" / f"{run_name(repeat, fold)}.csv",
                ["path", "label", "split", "group"],
                [{"path": str(p.path), "label": p.label, "split": role, "group": g}
                 for p, g, role in zip(pool, groups, roles, strict=True)],
            )  # fmt: skip
    return metadata


def evaluate_run(checkpoint: Path, metadata: Path, run_dir: Path, batch_size: int, num_workers: int) -> dict:
    """The best checkpoint on its test fold: accuracy, macro-F1, calibrated NLL and ECE, per-class F1."""
    from ..inference.evaluate import run_evaluation

    report = run_evaluation(
        checkpoint, metadata, split="test", output_dir=run_dir / "evaluation",
        batch_size=batch_size, num_workers=num_workers, progress=False,
    )  # fmt: skip
    after = report["trust"]["after"]
    return {
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "nll": after["nll"],
        "ece": after["ece"],
        "per_class_f1": {name: m["f1"] for name, m in report["per_class"].items()},
        "n_test": report["num_images"],
    }


def train_and_evaluate(
    train_config: TrainConfig, model: str, repeat: int, fold: int, fold_csv: Path, out: Path
) -> dict:
    """One run: train (or continue) ``model`` on the fold's train photos, evaluate on its test fold."""
    from ..training import train

    run_dir = out / "runs" / model / run_name(repeat, fold)
    last = run_dir / f"{model}_last.pt"
    config = dataclasses.replace(
        train_config, model=model, model_name=model, metadata=str(fold_csv), output_dir=str(run_dir),
        seed=train_config.seed + repeat, resume=str(last) if last.is_file() else None,
        save_history=True, plot=False,
        # tracked runs of one cv share a group: TensorBoard's DIR/<group>/r<R>-f<K>/<model>, MLflow's tag
        track_group=f"{train_config.track_group or 'cv-' + out.resolve().name}/{run_name(repeat, fold)}",
    )  # fmt: skip
    config.validate()
    try:
        train(config)
    except TrainingInterruptedError as exc:
        raise TrainingInterruptedError(
            exc.exit_code - 128,
            f"Interrupted in run {model} {run_name(repeat, fold)}; its state is saved. "
            "Run the same `paddyclf cv` command again to continue: finished runs are read back.",
        ) from None
    metrics = json.loads((run_dir / "results" / f"{model}_metrics.json").read_text())
    with fold_csv.open(newline="") as fh:
        counts = Counter(row["split"] for row in csv.DictReader(fh))
    result = {
        "model": model,
        "repeat": repeat,
        "fold": fold,
        "n_train": min(train_config.train_limit or counts["train"], counts["train"]),  # what --train-limit kept
        "n_valid": min(train_config.valid_limit or counts["valid"], counts["valid"]),
        **evaluate_run(Path(metrics["ckpt_path"]), fold_csv, run_dir, config.batch_size, config.num_workers),
        "valid_f1": metrics["valid_f1"],
        "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"],
        "training_seconds": metrics["training_seconds"],
        "checkpoint": metrics["ckpt_path"],
    }
    write_json(run_dir / "fold.json", result)
    last.unlink(missing_ok=True)  # the run is finished: its resume state is dead weight (fold.json marks it done)
    return result


def run_cv(
    cv: CrossValidationConfig,
    train_config: TrainConfig,
    log: Callable[[str], None] = print,
    on_run: Callable[[list[dict]], None] | None = None,
) -> dict:
    """Cross-validate every model of ``cv.models`` on the same grouped folds; return what ``cv.json`` holds.

    ``on_run(runs)`` hears the runs so far after each newly trained one (``tune`` reports them to its pruner).
    """
    cv.validate()
    train_config.validate()
    out = Path(cv.output_dir)
    metadata, label2id_path = Path(train_config.metadata).resolve(), Path(train_config.label2id).resolve()
    label2id = load_label2id(label2id_path)
    classes = class_names(label2id)
    pool, held_out = read_pool(metadata, label2id, log)
    groups = dataset_groups(pool, out / ".fingerprints", log)
    assignment = grouped_folds([p.label for p in pool], groups, cv.folds, cv.repeats, train_config.seed)
    rows = fold_rows(pool, groups, assignment)
    settings = {**shared_settings(cv, train_config, metadata, label2id_path), "folds_sha256": rows_sha256(rows)}
    check_plan(out / "plan.json", settings)  # the metadata's photos, groups or labels changed: other folds
    fold_csvs = write_fold_files(out, pool, groups, assignment, cv.folds, rows)
    runs = []
    total = len(cv.models) * cv.repeats * cv.folds
    for model in cv.models:
        for repeat in range(cv.repeats):
            for fold in range(cv.folds):
                done = out / "runs" / model / run_name(repeat, fold) / "fold.json"
                step = f"[{len(runs) + 1}/{total}] {model} repeat {repeat} fold {fold}"
                if done.is_file():
                    runs.append(json.loads(done.read_text()))
                    log(f"{step}: finished earlier, read back from {done}")
                    continue
                log(f"{step}: training ...")
                runs.append(
                    train_and_evaluate(train_config, model, repeat, fold, fold_csvs[run_name(repeat, fold)], out)
                )
                log(f"{step}: test accuracy {runs[-1]['accuracy']:.4f}  macro-F1 {runs[-1]['macro_f1']:.4f}")
                if on_run is not None:
                    on_run(runs)
    result = {
        "plan": {**settings, "models": list(cv.models)},
        "pool": {"photos": len(pool), "groups": len(set(groups)), "held_out_test": held_out},
        "classes": classes,
        "runs": runs,
        "summary": summarise(runs, list(cv.models), classes),
    }
    write_json(out / "cv.json", result)
    text = markdown_report(result)
    atomic_write(out / "cv.md", lambda tmp: tmp.write_text(text))
    plot_scores(result, out / "cv_scores.png")
    return result
