"""The promotion gate: is a candidate no worse than the champion on the photos that judge them both?

Both models answer the same photos (:func:`paddyclf.inference.paired.compare_on_test`, McNemar's exact
test included): the base test split, which never changes, and the field test split, which grows with
the experts' reviews and is never trained on. The candidate passes when

    accuracy_candidate(base test)  >= accuracy_champion(base test)  - max_drop / 100
    accuracy_candidate(field test) >= accuracy_champion(field test) - max_field_drop / 100

checked by MLflow's own ``validate_evaluation_results`` with those thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..inference.paired import compare_on_test

DEFAULT_MAX_DROP = 1.0  # points of base-test accuracy a candidate may lose
DEFAULT_MAX_FIELD_DROP = 0.0  # the field photos are why we retrain: no loss there
SPLITS = ("base_test", "field_test")
# a threshold computed as champion - drop lands a hair off in binary floating point; accuracies are
# multiples of 1/n, so a margin far below 1/n decides nothing but float noise
FLOAT_MARGIN = 1e-9


@dataclass
class GateDecision:
    passed: bool
    failures: list[str] = field(default_factory=list)
    splits: dict[str, dict] = field(default_factory=dict)  # split -> paired report summary

    def as_dict(self) -> dict:
        return {"passed": self.passed, "failures": self.failures, "splits": self.splits}


def paired_summary(report: dict, allowed_drop: float) -> dict:
    champion, candidate = report["a"]["accuracy"], report["b"]["accuracy"]
    return {
        "photos": report["num_images"],
        "champion_accuracy": champion,
        "candidate_accuracy": candidate,
        "difference_points": 100 * (candidate - champion),
        "allowed_drop_points": allowed_drop,
        "mcnemar_p": report["mcnemar"]["p_value"],
        "table": report["mcnemar"]["table"],
    }


def threshold(summary: dict) -> float:
    return summary["champion_accuracy"] - summary["allowed_drop_points"] / 100 - FLOAT_MARGIN


def failure(split: str, summary: dict) -> str:
    return (
        f"{split.replace('_', ' ')}: the candidate's accuracy {summary['candidate_accuracy']:.4f} is "
        f"{-summary['difference_points']:.2f} points below the champion's {summary['champion_accuracy']:.4f} "
        f"on {summary['photos']} photos (allowed: {summary['allowed_drop_points']:g})"
    )


def validate(splits: dict[str, dict]) -> list[str]:
    """MLflow's threshold validation of the candidate's accuracies; the failures, in words."""
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import (
        MetricThreshold,
        ModelValidationFailedException,
        validate_evaluation_results,
    )

    thresholds = {
        f"{split}_accuracy": MetricThreshold(threshold=threshold(s), greater_is_better=True)
        for split, s in splits.items()
    }
    candidate = EvaluationResult({f"{split}_accuracy": s["candidate_accuracy"] for split, s in splits.items()}, {})
    try:
        validate_evaluation_results(thresholds, candidate)
    except ModelValidationFailedException:
        return [failure(split, s) for split, s in splits.items() if s["candidate_accuracy"] < threshold(s)]
    return []


def run_gate(
    champion: Path,
    candidate: Path,
    tests: dict[str, Path],
    drops: dict[str, float],
    output_dir: Path,
) -> GateDecision:
    """Evaluate ``champion`` and ``candidate`` on each test CSV (``tests``: split -> CSV); the decision.

    Writes ``output_dir/<split>/paired_test.{md,json}`` and ``disagreements.csv`` per split."""
    if "base_test" not in tests:
        raise UserError("The gate needs the base test split (--base-test CSV, or one recorded on the version).")
    splits = {}
    for split, csv in tests.items():
        if not Path(csv).is_file():
            raise UserError(f"The {split.replace('_', ' ')} CSV {csv} is not there.")
        report = compare_on_test(
            champion, candidate, csv, output_dir / split, model_labels=("the champion", "the candidate")
        )
        splits[split] = paired_summary(report, drops[split])
    failures = validate(splits)
    return GateDecision(not failures, failures, splits)
