"""From every fold's scores to the numbers a reviewer asks for: intervals and paired tests.

:func:`summarise` is a pure function of the runs that ``cv.json`` stores, so every interval and
p-value in ``cv.md`` can be recomputed from ``cv.json`` alone (``tests/test_cv.py`` does).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from ..stats import corrected_resampled_ttest, difference_verdict, mean_interval

METRICS = ("accuracy", "macro_f1", "nll", "ece")
COMPARED = ("accuracy", "macro_f1")  # higher is better; NLL and ECE are reported, not tested
METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "nll": "NLL", "ece": "ECE"}


def runs_of(runs: list[dict], model: str) -> list[dict]:
    """A model's runs in (repeat, fold) order: the pairing key of every test."""
    return sorted((r for r in runs if r["model"] == model), key=lambda r: (r["repeat"], r["fold"]))


def model_summary(runs: list[dict], classes: list[str]) -> dict:
    """Mean and 95% t interval of each metric, and of each class's F1, over a model's runs."""
    return {
        "runs": len(runs),
        **{metric: mean_interval([r[metric] for r in runs]).as_dict() for metric in METRICS},
        "per_class_f1": {name: mean_interval([r["per_class_f1"][name] for r in runs]).as_dict() for name in classes},
    }


def compare_models(runs_a: list[dict], runs_b: list[dict], name_a: str, name_b: str) -> list[dict]:
    """The corrected resampled t-test of A - B on each compared metric, paired by (repeat, fold)."""
    keys_a, keys_b = [(r["repeat"], r["fold"]) for r in runs_a], [(r["repeat"], r["fold"]) for r in runs_b]
    if keys_a != keys_b:
        raise ValueError(f"{name_a} and {name_b} were not run on the same folds")
    n_train = float(np.mean([r["n_train"] for r in runs_a]))
    n_test = float(np.mean([r["n_test"] for r in runs_a]))
    out = []
    for metric in COMPARED:
        diffs = [a[metric] - b[metric] for a, b in zip(runs_a, runs_b, strict=True)]
        test = corrected_resampled_ttest(diffs, n_train, n_test)
        out.append(
            {
                "a": name_a,
                "b": name_b,
                "metric": metric,
                **test.as_dict(),
                "n_train": n_train,
                "n_test": n_test,
                "verdict": difference_verdict(name_a, name_b, test.mean_difference, test.p_value, METRIC_NAMES[metric]),
            }
        )
    return out


def summarise(runs: list[dict], models: list[str], classes: list[str]) -> dict:
    """``{"models": {name: model_summary}, "comparisons": [...]}`` for ``models`` in the given order.

    Every pair of models is compared when each has at least two runs (a test needs a spread).
    """
    by_model = {m: runs_of(runs, m) for m in models}
    comparisons = []
    for a, b in combinations(models, 2):
        if len(by_model[a]) >= 2:
            comparisons += compare_models(by_model[a], by_model[b], a, b)
    return {"models": {m: model_summary(r, classes) for m, r in by_model.items()}, "comparisons": comparisons}
