"""The retrain report: champion and candidate on each test split, per class, and the photos whose answer changed.

Writes ``retrain.md``, ``retrain.json``, ``retrain.png`` (each class's accuracy on each split, both
models) and ``changed_<split>.csv`` (every photo the two models answer differently) into the report
folder, from the paired evaluations (``<evaluation>/<split>/paired_test.json``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..fileio import atomic_write, write_json
from ..plots import plt


def sentence(text: str) -> str:
    """``text`` with a capital first letter (a verdict may open with "the candidate")."""
    return text[:1].upper() + text[1:]


def per_class_rows(paired: dict) -> list[dict]:
    rows = []
    for name, c in paired["per_class"].items():
        n = c["photos"]
        rows.append({"class": name, "photos": n, "champion": c["a_correct"] / n if n else None,
                     "candidate": c["b_correct"] / n if n else None})  # fmt: skip
    return rows


def markdown(report: dict, splits: dict[str, dict]) -> str:
    champion, candidate, photos = report["champion"], report["candidate"], report["photos"]
    gate = report["gate_preview"]
    start = "trained from ImageNet weights" if candidate["from_scratch"] else "fine-tuned from the champion"
    lines = [
        f"# Retrain of {champion['name']}: champion v{champion['version']} and a candidate",
        "",
        f"Reviewed photos: {photos['reviewed']}; trained on {photos['train']}, field test {photos['field_test']} "
        f"(before this retrain: {photos['field_test_before']}), excluded {photos['excluded']} (copies of base valid "
        "or test photos).",
        f"The candidate was {start} for {candidate['epochs']} epochs.",
        "",
        "| split | photos | champion | candidate | difference (points) | McNemar p |",
        "|---|---|---|---|---|---|",
    ]
    for split, s in gate["splits"].items():
        figures = f"{s['champion_accuracy']:.4f} | {s['candidate_accuracy']:.4f} | {s['difference_points']:+.2f}"
        lines.append(f"| {split.replace('_', ' ')} | {s['photos']} | {figures} | {s['mcnemar_p']:.3g} |")
    lines += ["", "Per class (accuracy of each class's photos):", ""]
    for split, paired in splits.items():
        lines += [
            f"**{split.replace('_', ' ')}**",
            "",
            "| class | photos | champion | candidate |",
            "|---|---|---|---|",
        ]
        for row in per_class_rows(paired):
            if row["photos"]:
                lines.append(f"| {row['class']} | {row['photos']} | {row['champion']:.3f} | {row['candidate']:.3f} |")
        lines += ["", sentence(paired["verdict"]), "", f"Photos whose answer changed: `changed_{split}.csv`.", ""]
    verdict = "passes" if gate["passed"] else "would refuse it: " + "; ".join(gate["failures"])
    lines += [f"The promotion gate (default thresholds) {verdict}.", ""]
    return "\n".join(lines)


def figure(splits: dict[str, dict], path: Path) -> None:
    fig, axes = plt.subplots(1, len(splits), figsize=(5.5 * len(splits), 4), squeeze=False)
    for ax, (split, paired) in zip(axes[0], splits.items(), strict=True):
        rows = [r for r in per_class_rows(paired) if r["photos"]]
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], [r["champion"] for r in rows], 0.4, label="champion")
        ax.bar([i + 0.2 for i in x], [r["candidate"] for r in rows], 0.4, label="candidate")
        ax.set_xticks(list(x), [r["class"] for r in rows], rotation=30, ha="right")
        ax.set_ylim(0, 1.2)  # room above the bars for the legend
        ax.set_title(f"{split.replace('_', ' ')} ({paired['num_images']} photos)")
        ax.set_ylabel("accuracy of the class's photos")
        ax.legend(loc="upper center", ncols=2)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def write_report(report: dict, evaluation_dir: Path, report_dir: Path) -> None:
    splits = {}
    for split in report["gate_preview"]["splits"]:
        splits[split] = json.loads((evaluation_dir / split / "paired_test.json").read_text())
        report_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(evaluation_dir / split / "disagreements.csv", report_dir / f"changed_{split}.csv")
    report["per_class"] = {split: per_class_rows(paired) for split, paired in splits.items()}
    write_json(report_dir / "retrain.json", report)
    text = markdown(report, splits)
    atomic_write(report_dir / "retrain.md", lambda tmp: tmp.write_text(text))
    figure(splits, report_dir / "retrain.png")
