"""``paddyclf tune``: an Optuna search over the training settings, resumable and shareable.

Top to bottom, :func:`run_tune`:

1. opens (or creates) the study in ``--storage``: an Optuna storage URL, by default SQLite in the
   output folder, so an interrupted search resumes, several processes on one machine share it, and
   machines share it through a PostgreSQL or MySQL URL;
2. runs trials until the study holds ``--trials`` finished ones (earlier ones count): each samples
   the declared :data:`SEARCH_SPACE` (or the ``--params`` part of it) with TPE, trains through
   :func:`~paddyclf.training.train` and returns the best valid macro-F1; every epoch is reported
   to Optuna's median pruner, which stops runs worse than the median of earlier ones at that epoch;
   with ``--cv K`` a trial is a grouped K-fold :func:`~paddyclf.selection.cv.run_cv` instead and
   its value the mean test-fold macro-F1 (reported fold by fold), so the search cannot fit one split;
3. writes ``best_config.yaml`` (what ``paddyclf train --config`` takes), ``trials.csv``, and
   Optuna's ``optimization_history.png`` and ``param_importances.png``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..fileio import atomic_write, write_csv
from ..options import option
from ..training.config import TrainConfig
from ..training.tracking import Tracker

# name -> (kind, arguments): Optuna's suggest_<kind>(name, *arguments) (kwargs for log scales)
SEARCH_SPACE: dict[str, tuple[str, tuple, dict]] = {
    "head_lr": ("float", (1e-4, 1e-2), {"log": True}),
    "base_lr": ("float", (1e-5, 1e-3), {"log": True}),
    "weight_decay": ("float", (1e-4, 1e-1), {"log": True}),
    "dropout": ("float", (0.0, 0.5), {}),
    "image_size": ("categorical", ((160, 192, 224, 256),), {}),
    "label_smoothing": ("float", (0.0, 0.2), {}),
    "warmup_epochs": ("int", (0, 2), {}),
    "mixup": ("categorical", ((0.0, 0.2),), {}),
    "random_erasing": ("categorical", ((0.0, 0.25),), {}),
    "augment": ("categorical", (("none", "trivial"),), {}),
}
# fields a trial sets itself, not written to best_config.yaml
PER_TRIAL_FIELDS = frozenset({"output_dir", "resume", "model_name", "track_group", "save_history", "plot"})


def describe_space() -> str:
    """The search space in words, for ``--help`` and the README."""
    parts = []
    for name, (kind, args, kwargs) in SEARCH_SPACE.items():
        if kind == "categorical":
            parts.append(f"{name} in {{{', '.join(map(str, args[0]))}}}")
        else:
            parts.append(f"{name} {args[0]:g}..{args[1]:g}" + (" (log)" if kwargs.get("log") else ""))
    return "; ".join(parts)


@dataclass
class TuneConfig:
    """What ``paddyclf tune`` adds to the training flags; ``paddyclf tune --help`` lists the same fields."""

    trials: int = option(20, "finished trials the study should hold (earlier runs of the study count)")
    params: tuple[str, ...] = option(tuple(SEARCH_SPACE), "which settings to search", choices=tuple(SEARCH_SPACE))
    storage: str | None = option(
        None,
        "Optuna storage URL shared by every process of the search (default: sqlite:///<output-dir>/study.db; "
        "several machines: a postgresql:// or mysql:// URL)",
    )
    study_name: str = option("paddyclf", "the study's name in the storage")
    cv: int = option(0, "score each trial by grouped K-fold cross-validation (mean test-fold macro-F1); 0: valid split")
    output_dir: str = option("tune", "where trials, best_config.yaml, trials.csv and the plots go")

    def __post_init__(self) -> None:
        self.params = tuple(self.params)

    def validate(self) -> None:
        problems = []
        if self.trials < 1:
            problems.append(f"--trials must be >= 1 (got {self.trials})")
        unknown = sorted(set(self.params) - set(SEARCH_SPACE))
        if unknown:
            problems.append(f"--params: unknown {', '.join(unknown)} (choose from {', '.join(SEARCH_SPACE)})")
        if self.cv and self.cv < 3:
            problems.append(f"--cv must be 0 (the valid split) or >= 3 folds (got {self.cv})")
        if problems:
            raise UserError("Invalid options: " + "; ".join(problems) + ".")

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(Path(self.output_dir) / 'study.db').resolve()}"


class PruningReporter(Tracker):
    """Reports each epoch's valid macro-F1 to an Optuna trial; raises ``TrialPruned`` when told to stop."""

    def __init__(self, trial) -> None:
        self.trial = trial

    def epoch(self, epoch, values):
        import optuna

        self.trial.report(values["valid/macro_f1"], epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"valid macro-F1 {values['valid/macro_f1']:.4f} at epoch {epoch}")


def sample(trial, params: tuple[str, ...]) -> dict:
    """One point of the declared space (only ``params`` are searched; the rest keep the flags' values)."""
    values = {}
    for name in params:
        kind, args, kwargs = SEARCH_SPACE[name]
        values[name] = getattr(trial, f"suggest_{kind}")(name, *args, **kwargs)
    return values


def trial_value(trial, tune: TuneConfig, train_config: TrainConfig, log: Callable[[str], None]) -> float:
    """Train (or cross-validate) the trial's settings; the valid (or mean test-fold) macro-F1."""
    from ..training import train

    folder = Path(tune.output_dir) / "trials" / f"trial_{trial.number:04d}"
    group = f"{train_config.track_group or 'tune-' + tune.study_name}/trial_{trial.number:04d}"  # tracked, grouped
    config = dataclasses.replace(
        train_config, **sample(trial, tune.params), output_dir=str(folder), resume=None, save_history=False,
        plot=False, track_group=group,
    )  # fmt: skip
    log(f"trial {trial.number}: " + ", ".join(f"{k}={v}" for k, v in trial.params.items()))
    if not tune.cv:
        return train(config, tracker=PruningReporter(trial))["valid_f1"]
    from .cv import CrossValidationConfig, run_cv

    def report(done: list[dict]) -> None:  # the running mean after each fold, for the pruner
        import optuna

        trial.report(sum(r["macro_f1"] for r in done) / len(done), len(done))
        if trial.should_prune():
            raise optuna.TrialPruned(f"mean test-fold macro-F1 after {len(done)} folds")

    cv = CrossValidationConfig(folds=tune.cv, models=(config.model,), output_dir=str(folder))
    result = run_cv(cv, config, log=log, on_run=report)
    return result["summary"]["models"][config.model]["macro_f1"]["mean"]


def best_config(study, train_config: TrainConfig) -> dict:
    """The best trial's flags: the user's, with the best trial's settings (what ``train --config`` reads)."""
    values = {**dataclasses.asdict(train_config), **study.best_trial.params}
    return {k: v for k, v in values.items() if k not in PER_TRIAL_FIELDS and v is not None}


def write_outputs(study, train_config: TrainConfig, out: Path) -> dict:
    """``best_config.yaml``, ``trials.csv``, ``optimization_history.png``, ``param_importances.png``."""
    import optuna
    import yaml

    from ..plots import plt, save_figure

    best = best_config(study, train_config)
    text = f"# paddyclf tune: best of {len(study.trials)} trials, valid macro-F1 {study.best_value:.4f}\n"
    text += yaml.safe_dump(best, sort_keys=False)
    atomic_write(out / "best_config.yaml", lambda tmp: tmp.write_text(text))
    names = sorted({k for t in study.trials for k in t.params})
    rows = [
        {"number": t.number, "state": t.state.name, "value": t.value, "seconds": t.duration.total_seconds()
         if t.duration else None, **{n: t.params.get(n) for n in names}}
        for t in study.trials
    ]  # fmt: skip
    write_csv(out / "trials.csv", ["number", "state", "value", "seconds", *names], rows)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    with warnings.catch_warnings():  # Optuna's matplotlib plots are marked experimental since v2.2
        warnings.simplefilter("ignore")
        optuna.visualization.matplotlib.plot_optimization_history(study)
        save_figure(plt.gcf(), out / "optimization_history.png")
        if len(complete) >= 2 and len(names) >= 2:  # importances need a spread of finished trials
            optuna.visualization.matplotlib.plot_param_importances(study)
            save_figure(plt.gcf(), out / "param_importances.png")
    return best


def run_tune(tune: TuneConfig, train_config: TrainConfig, log: Callable[[str], None] = print) -> dict:
    """Run the search until the study holds ``tune.trials`` finished trials; return the best config."""
    try:
        import optuna
    except ImportError:
        raise UserError("paddyclf tune needs Optuna: pip install 'paddyclf[tune]' (or optuna).") from None
    tune.validate()
    train_config.validate()
    out = Path(tune.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=tune.study_name,
        storage=tune.storage_url(),
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=train_config.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(states=finished))
    if done < tune.trials:
        log(f"Study {tune.study_name} in {tune.storage_url()}: {done} finished trials, running up to {tune.trials}.")
        study.optimize(
            lambda trial: trial_value(trial, tune, train_config, log),
            n_trials=tune.trials - done,
            callbacks=[optuna.study.MaxTrialsCallback(tune.trials, states=finished)],
            catch=(),
        )
    if not study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        raise UserError(f"No trial of study {tune.study_name} has finished (all were pruned or failed).")
    best = write_outputs(study, train_config, out)
    log(
        f"Best trial {study.best_trial.number}: valid macro-F1 {study.best_value:.4f}; wrote {out / 'best_config.yaml'}"
    )
    return {
        "best_value": study.best_value,
        "best_trial": study.best_trial.number,
        "params": study.best_trial.params,
        "config": best,
    }
