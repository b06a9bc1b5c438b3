"""``paddyclf evaluate``: a model on one split of a dataset, with every number and file a reviewer needs.

The model is a checkpoint or an exported file (any format :func:`~paddyclf.inference.load_predictor`
reads). Writes to ``--output-dir``: ``evaluation.json`` (accuracy, macro-F1, per-class table,
confusion matrix; NLL, ECE and Brier score before and after calibration; coverage and accuracy
at the stored unsure threshold; verdict counts; with ``--ood DIR...`` AUROC and FPR at 95% TPR of
every OOD score against each folder), ``per_class.csv``, ``confusion_matrix.png``,
``reliability_diagram.png``, ``risk_coverage.png`` and ``misclassified.csv`` (path, true,
predicted, confidence, verdict).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data import Sample, collect_images, load_label2id, load_splits, make_loader
from ..errors import UserError
from ..fileio import atomic_path, write_json
from ..metrics import classification_metrics
from ..trust import OK, VERDICTS, Trust, verdicts
from ..trust.calibration import (
    calibrated_probabilities,
    calibration_metrics,
    plot_reliability,
    plot_risk_coverage,
    reliability_table,
    risk_coverage,
    select,
)
from ..trust.ood import detection_metrics
from .loading import load_predictor
from .predictor import Predictor


def format_report(report: dict) -> str:
    """The console summary of :func:`run_evaluation`'s report."""
    trust = report["trust"]
    lines = [
        f"{report['split']}: {report['num_images']} images  accuracy {report['accuracy']:.4f}  "
        f"macro-F1 {report['macro_f1']:.4f}" + ("  (TTA)" if report["tta"] else ""),
        per_class_table(report["per_class"]),
        "calibration    NLL      ECE      Brier    (ECE of a perfectly calibrated model on these images)",
    ]
    for name in ("before", "after"):
        m = trust[name]
        lines.append(
            f"{name:<12} {m['nll']:7.4f}  {m['ece']:7.4f}  {m['brier']:7.4f}  ({m['ece_of_a_perfect_model']:.4f})"
        )
    answered = trust["answered"]
    accuracy = "n/a" if answered["selective_accuracy"] is None else f"{answered['selective_accuracy']:.4f}"
    lines.append(
        f"temperature {trust['temperature']:.3f}; unsure below {trust['unsure_below']:.3f}; answered (ok) "
        f"{answered['coverage']:.1%} at accuracy {accuracy}; verdicts "
        + ", ".join(f"{k} {v}" for k, v in trust["verdicts"].items())
    )
    for folder, entry in report.get("ood", {}).items():
        scores = "; ".join(
            f"{name} AUROC {m['auroc']:.3f} FPR@95TPR {m['fpr_at_95_tpr']:.1%}" for name, m in entry["scores"].items()
        )
        verdict = ", ".join(f"{k} {v}" for k, v in entry["verdicts"].items())
        lines.append(f"ood {folder} ({entry['images']} images): {scores}; verdicts {verdict}")
    if report["unreadable"]:
        lines.append(f"skipped {len(report['unreadable'])} unreadable image(s); first: {report['unreadable'][0]}")
    return "\n".join(lines)


def per_class_table(per_class: dict) -> str:
    width = max(12, *(len(n) for n in per_class))
    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    for name, m in per_class.items():
        lines.append(f"{name:<{width}}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:.4f}  {m['support']:7d}")
    return "\n".join(lines)


def plot_confusion(matrix: np.ndarray, names: list[str], path: Path) -> None:
    from ..plots import confusion_figure, save_figure

    save_figure(confusion_figure(matrix, names), path)


@dataclass
class Predictions:
    """A predictor's outputs over a list of samples (unreadable ones skipped).

    ``logits`` (N, K) of the image (and ``flip_logits`` of its mirror with TTA), ``scores``: every
    OOD score the model allows (name -> (N,)), ``ood_score`` the shipped one or None.
    """

    logits: np.ndarray
    flip_logits: np.ndarray | None
    scores: dict[str, np.ndarray]
    ood_score: np.ndarray | None
    targets: np.ndarray
    indices: np.ndarray
    failures: list[str]

    def probabilities(self, temperature: float = 1.0) -> np.ndarray:
        """softmax(z / T), averaged with the mirror's under TTA."""
        probs = calibrated_probabilities(self.logits, temperature)
        if self.flip_logits is not None:
            probs = (probs + calibrated_probabilities(self.flip_logits, temperature)) / 2
        return probs


def collect_predictions(
    predictor: Predictor, samples: list, batch_size: int, num_workers: int, tta: bool, progress: bool, desc: str
) -> Predictions:
    loader = make_loader(samples, predictor.image_size, predictor.norm, False, batch_size, num_workers, seed=0)
    parts: dict[str, list] = {"logits": [], "flip": [], "targets": [], "indices": []}
    scores: dict[str, list] = {}
    failures: list[str] = []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress, dynamic_ncols=True):
        failures += batch.failures
        if batch.images is None:
            continue
        out = predictor.outputs(batch.images)
        parts["logits"].append(out["logits"])
        if tta:
            parts["flip"].append(predictor.logits(batch.images.flip(3)))
        for name, value in predictor.all_scores(out).items():
            scores.setdefault(name, []).append(value)
        parts["targets"].append(batch.labels.numpy())
        parts["indices"].append(batch.indices.numpy())
    if not parts["logits"]:
        raise UserError(f"None of the {len(samples)} images ({desc}) could be read; first error: {failures[:1]}.")
    joined = {k: np.concatenate(v) if v else None for k, v in parts.items()}
    all_scores = {k: np.concatenate(v) for k, v in scores.items()}
    return Predictions(
        joined["logits"],
        joined["flip"],
        all_scores,
        all_scores.get(predictor.trust.ood_score) if predictor.trust.ood_score else None,
        joined["targets"],
        joined["indices"],
        failures,
    )


def trust_report(predictions: Predictions, trust: Trust, output_dir: Path) -> tuple[dict, list[str]]:
    """Calibration before/after, the unsure threshold's coverage, the verdict counts; writes the two figures."""
    raw, calibrated = predictions.probabilities(), predictions.probabilities(trust.temperature)
    targets = predictions.targets
    confidence, correct = calibrated.max(1), calibrated.argmax(1) == targets
    statuses = verdicts(calibrated, predictions.ood_score, trust)
    answered = np.array([s == OK for s in statuses])
    unsure_gate = select(confidence, correct, trust.unsure_below)
    before, after = calibration_metrics(raw, targets), calibration_metrics(calibrated, targets)
    report = {
        "temperature": trust.temperature,
        "calibrated": trust.calibrated,
        "before": before,
        "after": after,
        "unsure_below": trust.unsure_below,
        "target_accuracy": trust.target_accuracy,
        "unsure_threshold": {"coverage": unsure_gate.coverage, "selective_accuracy": _finite(unsure_gate.accuracy)},
        "answered": {
            "coverage": float(answered.mean()),
            "selective_accuracy": _finite(float(correct[answered].mean())) if answered.any() else None,
        },
        "verdicts": {v: statuses.count(v) for v in VERDICTS},
    }
    plot_reliability(
        reliability_table(raw, targets),
        reliability_table(calibrated, targets),
        (f"before: ECE {before['ece']:.3f}", f"after (T = {trust.temperature:.2f}): ECE {after['ece']:.3f}"),
        output_dir / "reliability_diagram.png",
    )
    curves = {}
    for name, probs in (("uncalibrated", raw), ("calibrated", calibrated)):
        _, coverage, accuracy = risk_coverage(probs.max(1), probs.argmax(1) == targets)
        curves[name] = (coverage, accuracy)
    plot_risk_coverage(curves, output_dir / "risk_coverage.png", unsure_gate if trust.unsure_below > 0 else None)
    return report, statuses


def _finite(value: float) -> float | None:
    return None if value != value else value  # NaN (nothing kept) -> null in JSON


def ood_report(
    predictor: Predictor, valid: Predictions, ood_dirs: list, batch_size: int, num_workers: int, progress: bool
) -> dict:
    """Per folder: AUROC and FPR at 95% TPR of every score, and the share the shipped verdicts reject."""
    report = {}
    for folder in ood_dirs:
        files = collect_images([folder])
        outside = collect_predictions(
            predictor, [Sample(p, -1) for p in files], batch_size, num_workers, False, progress, f"ood {folder}"
        )
        statuses = verdicts(outside.probabilities(predictor.trust.temperature), outside.ood_score, predictor.trust)
        report[str(folder)] = {
            "images": len(outside.targets),
            "unreadable": len(outside.failures),
            "scores": {name: detection_metrics(valid.scores[name], outside.scores[name]) for name in outside.scores},
            "verdicts": {v: statuses.count(v) for v in VERDICTS},
        }
    return report


def run_evaluation(
    checkpoint: str | Path,
    metadata: str | Path,
    label2id: str | Path | None = None,
    split: str = "valid",
    output_dir: str | Path = "evaluation",
    tta: bool = False,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
    ood_dirs: list | None = None,
    backend: str | None = None,
) -> dict:
    """Evaluate a model file (checkpoint or export) on ``split`` of ``metadata``; write the files above."""
    predictor = load_predictor(checkpoint, backend)
    labels = {name: i for i, name in enumerate(predictor.classes)}
    if label2id is not None and load_label2id(label2id) != labels:
        raise UserError(f"--label2id {label2id} differs from the label map stored in {checkpoint}.")
    if split not in ("train", "valid", "test"):
        raise UserError(f"--split must be train, valid or test (got {split!r}).")
    for folder in ood_dirs or []:
        collect_images([folder])  # a missing or empty folder fails before the long pass
    names = predictor.classes
    samples = load_splits(metadata, labels, predictor.seed, required=(split,))[split]
    out = Path(output_dir)
    result = collect_predictions(predictor, samples, batch_size, num_workers, tta, progress, split)
    trust_summary, statuses = trust_report(result, predictor.trust, out)
    probs = result.probabilities(predictor.trust.temperature)
    predictions = probs.argmax(1)
    summary = classification_metrics(result.targets, predictions, len(names), names)
    report = {
        "checkpoint": str(checkpoint),
        "backend": predictor.backend,
        "metadata": str(metadata),
        "split": split,
        "tta": tta,
        "num_images": int(len(result.targets)),
        "unreadable": result.failures,
        "accuracy": summary["accuracy"],
        "macro_f1": summary["macro_f1"],
        "loss": trust_summary["before"]["nll"],
        "classes": names,
        "per_class": summary["per_class"],
        "confusion_matrix": summary["confusion_matrix"],
        "trust": trust_summary,
    }
    if ood_dirs:
        report["ood"] = ood_report(predictor, result, ood_dirs, batch_size, num_workers, progress)
    write_json(out / "evaluation.json", report)
    with atomic_path(out / "per_class.csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["class", "precision", "recall", "f1", "support"])
        for name, m in summary["per_class"].items():
            writer.writerow([name, m["precision"], m["recall"], m["f1"], m["support"]])
    with atomic_path(out / "misclassified.csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "true", "predicted", "confidence", "status"])
        for index, true, pred, row, status in zip(
            result.indices, result.targets, predictions, probs, statuses, strict=True
        ):
            if true != pred:
                writer.writerow([samples[index].path, names[true], names[pred], f"{row[pred]:.4f}", status])
    plot_confusion(np.asarray(summary["confusion_matrix"]), names, out / "confusion_matrix.png")
    return report
