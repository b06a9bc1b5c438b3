"""``paddyclf compare --test CSV A B``: two models on one shared test split, McNemar's exact test.

Both models answer the same photos; only the photos where exactly one of them is right tell them
apart, and McNemar's exact test (:func:`paddyclf.stats.mcnemar_exact`) asks whether their split
between A and B is more lopsided than a fair coin's. Writes ``paired_test.json``, ``paired_test.md``
and ``disagreements.csv`` (every photo the two models answer differently).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import check_files_exist, read_metadata, resolve_samples
from ..errors import UserError
from ..fileio import atomic_write, write_csv, write_json
from ..stats import difference_verdict, mcnemar_exact, mcnemar_table
from .evaluate import collect_predictions
from .loading import load_predictor


def shared_test_samples(metadata: str | Path, labels: dict[str, int]) -> list:
    """The ``test`` rows of ``metadata``; every row when it has no split column."""
    tagged = resolve_samples(read_metadata(metadata), Path(metadata).resolve().parent, labels)
    has_splits = any(split for _, split in tagged)
    samples = [s for s, split in tagged if split == "test" or not has_splits]
    if not samples:
        raise UserError(f"{metadata} has no test rows: give rows with split=test, or a CSV without a split column.")
    check_files_exist(samples)
    return samples


def model_names(a: str | Path, b: str | Path) -> tuple[str, str]:
    """The files' names without suffix, or their paths when those are the same."""
    names = Path(a).stem, Path(b).stem
    return names if names[0] != names[1] else (str(a), str(b))


def paired_test_markdown(report: dict) -> str:
    a, b, t = report["a"], report["b"], report["mcnemar"]
    return "\n".join(
        [
            f"# {a['name']} vs {b['name']} on {report['num_images']} test photos",
            "",
            "| model | file | accuracy |",
            "|---|---|---|",
            f"| A: {a['name']} | {a['path']} | {a['accuracy']:.4f} |",
            f"| B: {b['name']} | {b['path']} | {b['accuracy']:.4f} |",
            "",
            "McNemar's exact test on the paired answers:",
            "",
            "| | B right | B wrong |",
            "|---|---|---|",
            f"| A right | {t['table'][0][0]} | {t['table'][0][1]} |",
            f"| A wrong | {t['table'][1][0]} | {t['table'][1][1]} |",
            "",
            f"Accuracy A - B = {t['accuracy_difference']:+.4f}; p = {t['p_value']:.4g}.",
            "",
            report["verdict"],
            "",
        ]
    )


def compare_on_test(
    model_a: str | Path,
    model_b: str | Path,
    metadata: str | Path,
    output_dir: str | Path = "comparison",
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = False,
    model_labels: tuple[str, str] | None = None,
) -> dict:
    """Run both models on the test photos of ``metadata``; McNemar's exact test on their answers.
    ``model_labels``: what the report calls them (default: their file names)."""
    predictors = [load_predictor(model_a), load_predictor(model_b)]
    if predictors[0].classes != predictors[1].classes:
        raise UserError(
            f"{model_a} and {model_b} answer different classes ({', '.join(predictors[0].classes)} vs "
            f"{', '.join(predictors[1].classes)}): a paired test needs the same classes."
        )
    names = predictors[0].classes
    samples = shared_test_samples(metadata, {name: i for i, name in enumerate(names)})
    labels = model_labels or model_names(model_a, model_b)
    outputs = [
        collect_predictions(p, samples, batch_size, num_workers, False, progress, f"test ({label})")
        for p, label in zip(predictors, labels, strict=True)
    ]
    # a photo one model could not read is left out for both: the test is over paired answers only
    shared = np.intersect1d(outputs[0].indices, outputs[1].indices)
    predicted, correct = [], []
    for out in outputs:
        keep = np.isin(out.indices, shared)
        order = np.argsort(out.indices[keep])
        pred = out.logits[keep][order].argmax(1)
        predicted.append(pred)
        correct.append(pred == out.targets[keep][order])
    targets = np.array([samples[i].label for i in shared])
    test = mcnemar_exact(mcnemar_table(correct[0], correct[1]))
    sides = [
        {"name": label, "path": str(path), "accuracy": float(c.mean())}
        for label, path, c in zip(labels, (model_a, model_b), correct, strict=True)
    ]
    report = {
        "metadata": str(metadata),
        "num_images": int(len(shared)),
        "unreadable": sorted(set(outputs[0].failures) | set(outputs[1].failures)),
        "a": sides[0],
        "b": sides[1],
        "mcnemar": test.as_dict(),
        "verdict": difference_verdict(sides[0]["name"], sides[1]["name"], test.accuracy_difference, test.p_value),
        "per_class": {
            name: {
                "photos": int((targets == k).sum()),
                "a_correct": int(correct[0][targets == k].sum()),
                "b_correct": int(correct[1][targets == k].sum()),
            }
            for k, name in enumerate(names)
        },
    }
    out = Path(output_dir)
    write_json(out / "paired_test.json", report)
    text = paired_test_markdown(report)
    atomic_write(out / "paired_test.md", lambda tmp: tmp.write_text(text))
    differ = np.flatnonzero(predicted[0] != predicted[1])
    write_csv(
        out / "disagreements.csv",
        ["path", "true", "a_predicted", "b_predicted"],
        [{"path": str(samples[shared[k]].path), "true": names[targets[k]],
          "a_predicted": names[predicted[0][k]], "b_predicted": names[predicted[1][k]]} for k in differ],
    )  # fmt: skip
    return report
