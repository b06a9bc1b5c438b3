"""``cv.md`` and ``cv_scores.png``: the cross-validation summary for people."""

from __future__ import annotations

from pathlib import Path

from .summary import COMPARED, METRIC_NAMES, METRICS


def interval_cell(entry: dict) -> str:
    if entry["n"] < 2:
        return f"{entry['mean']:.4f}"
    return f"{entry['mean']:.4f} [{entry['low']:.4f}, {entry['high']:.4f}]"


def markdown_report(result: dict) -> str:
    """The whole ``cv.md`` from the dict :func:`~paddyclf.selection.cv.run_cv` writes as ``cv.json``."""
    plan, summary, classes = result["plan"], result["summary"], result["classes"]
    models = list(summary["models"])
    lines = [
        f"# Cross-validation: {plan['folds']} folds x {plan['repeats']} repeat(s)",
        "",
        f"{result['pool']['photos']} photos in {result['pool']['groups']} groups (copies of one photo form a group, "
        f"and a group never spans two folds); {result['pool']['held_out_test']} test photos held out of every fold. "
        "In each run one fold "
        "is tested on, the next validates (early stopping, calibration), the rest train.",
        "",
        "## Scores on the test fold: mean [95% interval]",
        "",
        "| model | runs | " + " | ".join(METRIC_NAMES[m] for m in METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    for name, s in summary["models"].items():
        lines.append(f"| {name} | {s['runs']} | " + " | ".join(interval_cell(s[m]) for m in METRICS) + " |")
    lines += ["", "## Per-class F1: mean [95% interval]", "", "| class | " + " | ".join(models) + " |"]
    lines.append("|---|" + "---|" * len(models))
    for cls in classes:
        cells = [interval_cell(summary["models"][m]["per_class_f1"][cls]) for m in models]
        lines.append(f"| {cls} | " + " | ".join(cells) + " |")
    if summary["comparisons"]:
        lines += [
            "",
            "## Is the difference real? Nadeau-Bengio corrected resampled t-test",
            "",
            "| A | B | metric | mean A - B | 95% interval | t | p |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in summary["comparisons"]:
            lines.append(
                f"| {c['a']} | {c['b']} | {METRIC_NAMES[c['metric']]} | {c['mean_difference']:+.4f} | "
                f"[{c['low']:+.4f}, {c['high']:+.4f}] | {c['statistic']:.3f} | {c['p_value']:.3g} |"
            )
        lines += [""] + [f"- {c['verdict']}" for c in summary["comparisons"]]
    lines += [
        "",
        "## Every run",
        "",
        "| model | repeat | fold | train | valid | test | " + " | ".join(METRIC_NAMES[m] for m in METRICS) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(METRICS),
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['model']} | {r['repeat']} | {r['fold']} | {r['n_train']} | {r['n_valid']} | {r['n_test']} | "
            + " | ".join(f"{r[m]:.4f}" for m in METRICS)
            + " |"
        )
    return "\n".join(lines) + "\n"


def plot_scores(result: dict, path: str | Path) -> Path:
    """Every run's test-fold score per model (one panel per compared metric), with mean and interval."""
    from ..plots import plt, save_figure

    summary = result["summary"]
    models = list(summary["models"])
    fig, axes = plt.subplots(1, len(COMPARED), figsize=(4.5 * len(COMPARED), 0.9 * len(models) + 2.5), squeeze=False)
    for ax, metric in zip(axes[0], COMPARED, strict=True):
        for y, model in enumerate(models):
            scores = [r[metric] for r in result["runs"] if r["model"] == model]
            ax.scatter(scores, [y] * len(scores), alpha=0.6, s=30, color=f"C{y}")
            entry = summary["models"][model][metric]
            if entry["n"] >= 2:
                spread = [[entry["mean"] - entry["low"]], [entry["high"] - entry["mean"]]]
                ax.errorbar(entry["mean"], y + 0.25, xerr=spread, fmt="D", color="black", capsize=4, markersize=5)
        ax.set(yticks=range(len(models)), xlabel=f"test-fold {METRIC_NAMES[metric]}", ylim=(-0.6, len(models) - 0.3))
        ax.set_yticklabels(models)
        ax.grid(axis="x", alpha=0.3)
    plan = result["plan"]
    fig.suptitle(f"{plan['folds']}-fold cross-validation x {plan['repeats']}: each dot a run, diamond mean and 95% CI")
    fig.tight_layout()
    return save_figure(fig, path)
