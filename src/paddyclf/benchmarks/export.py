"""``paddyclf benchmark export``: every format side by side: size, accuracy, agreement, speed, in one run.

Each format is exported (with its check) into a temporary folder, then loaded through the same
predictor ``predict`` uses. Per format: file size; with ``--metadata``, accuracy and macro-F1 on
its valid split and top-1 agreement with PyTorch; batch-1 latency (median, p90) and batch-32
images/s. The speeds are timed in rounds that visit every format in turn (this machine's speed
drifts by tens of percent within minutes; rounds spread the drift over all formats), with a pause
before each format's turn so that no runtime is timed while another's threads still spin; batch-1
latency is that of consecutive calls (as a camera stream makes them), and each speed is
given as a ratio to PyTorch eager (the checkpoint on ``torch``) from the same rounds:
``throughput_ratio`` (images/s over eager's) and ``latency_ratio`` (eager's latency over this
one's: above 1 is faster). LiteRT files take one image per call: their batch of 32 is 32 calls.
Writes PREFIX.json, PREFIX.md and PREFIX.png.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_checkpoint
from ..errors import UserError
from ..export import FORMATS, ExportOptions, export_checkpoint, split_images
from ..fileio import atomic_write, write_json
from ..inference import load_predictor
from ..metrics import classification_metrics
from .common import PRINT, environment

BASELINE = "pytorch"


SETTLE_S = 0.03  # idle time before each timed call


def settle() -> None:
    # Runtimes keep their worker threads spinning for a few milliseconds after a call (ONNX Runtime,
    # OpenMP, XNNPACK): without a pause, each one is timed while the previous one still burns the cores.
    time.sleep(SETTLE_S)


def timed(run, x: torch.Tensor) -> float:
    start = time.perf_counter()
    run(x)
    return time.perf_counter() - start


def measure_speeds(predictors: dict, size: int, batch_size: int, rounds: int, single_per_round: int = 5) -> dict:
    """Median batch-``batch_size`` and batch-1 times per predictor, measured in interleaved rounds."""
    gen = torch.Generator().manual_seed(0)
    batch, single = torch.randn(batch_size, 3, size, size, generator=gen), torch.randn(1, 3, size, size, generator=gen)
    for predictor in predictors.values():  # warm-up: first calls allocate and pick kernels
        predictor.outputs(batch), predictor.outputs(single), predictor.outputs(single)
    times: dict[str, dict[str, list[float]]] = {name: {"batch": [], "single": []} for name in predictors}
    for _ in range(rounds):
        for name, predictor in predictors.items():
            settle()
            times[name]["batch"].append(timed(predictor.outputs, batch))
            settle()
            predictor.outputs(single)  # the first call after a pause wakes the threads; a camera stream's do not
            times[name]["single"] += [timed(predictor.outputs, single) for _ in range(single_per_round)]
    speeds = {}
    for name, t in times.items():
        single_ms = np.array(t["single"]) * 1e3
        speeds[name] = {
            "images_per_s": batch_size / float(np.median(t["batch"])),
            "latency_ms_median": float(np.median(single_ms)),
            "latency_ms_p90": float(np.percentile(single_ms, 90)),
        }
    base = speeds[BASELINE]
    for s in speeds.values():
        s["throughput_ratio"] = s["images_per_s"] / base["images_per_s"]
        s["latency_ratio"] = base["latency_ms_median"] / s["latency_ms_median"]
    return speeds


def accuracy_row(predictor, images: torch.Tensor, labels: np.ndarray, reference: np.ndarray | None, names) -> dict:
    logits = np.concatenate([predictor.logits(images[i : i + 32]) for i in range(0, len(images), 32)])
    predictions = logits.argmax(1)
    summary = classification_metrics(labels, predictions, len(names), names)
    row = {"valid_accuracy": summary["accuracy"], "valid_macro_f1": summary["macro_f1"]}
    row["agreement_with_pytorch"] = None if reference is None else float((predictions == reference).mean())
    return row, predictions


def run_export_benchmark(
    checkpoint: str | Path,
    metadata: str | Path | None = None,
    formats: Sequence[str] = tuple(FORMATS),
    threads: int | None = None,
    output: str | Path = "results/export_benchmark",
    batch_size: int = 32,
    rounds: int = 10,
    calibration_images: int = 256,
    max_accuracy_drop: float = 1.0,
    log=PRINT,
) -> dict:
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise UserError(f"--formats: unknown {', '.join(unknown)}; choose from {', '.join(FORMATS)} or all.")
    if metadata is None and any(FORMATS[f].int8 for f in formats):
        raise UserError("INT8 formats need --metadata (its train split calibrates them, its valid split checks them).")
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    ckpt = load_checkpoint(checkpoint)
    size = ckpt["config"]["image_size"]
    options = ExportOptions(
        calibration=metadata, calibration_images=calibration_images, max_accuracy_drop=max_accuracy_drop
    )
    rows: dict[str, dict] = {BASELINE: {"file": Path(checkpoint).name, "size_bytes": Path(checkpoint).stat().st_size}}
    predictors = {BASELINE: load_predictor(checkpoint, threads=threads)}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in formats:
            path = Path(tmp) / f"model-{fmt}{FORMATS[fmt].suffixes[0]}"
            start = time.perf_counter()
            try:
                report = export_checkpoint(ckpt, path, fmt, options)
            except UserError as exc:  # e.g. an INT8 accuracy gate: the table says so and goes on
                rows[fmt] = {"file": path.name, "error": str(exc)}
                log(f"{fmt}: {exc}")
                continue
            rows[fmt] = {
                "file": path.name,
                "size_bytes": report["size_bytes"],
                "export_seconds": time.perf_counter() - start,
                "check": report["check"],
            }
            predictors[fmt] = load_predictor(path, threads=threads)
            log(f"exported {fmt}: {report['size_bytes'] / 1e6:.2f} MB")
        if metadata is not None:
            images, labels = split_images(ckpt, metadata, "valid", None, options)
            names = predictors[BASELINE].classes
            base_row, reference = accuracy_row(predictors[BASELINE], images, labels, None, names)
            rows[BASELINE].update(base_row, agreement_with_pytorch=1.0)
            for fmt in predictors.keys() - {BASELINE}:
                rows[fmt].update(accuracy_row(predictors[fmt], images, labels, reference, names)[0])
        for name, speed in measure_speeds(predictors, size, batch_size, rounds).items():
            rows[name].update(speed)
    onnx_size = rows.get("onnx", {}).get("size_bytes")
    for row in rows.values():
        if "size_bytes" in row:
            row["size_vs_float_onnx"] = None if onnx_size is None else row["size_bytes"] / onnx_size
    result = {
        "environment": environment(torch.device("cpu")),
        "checkpoint": str(checkpoint),
        "metadata": None if metadata is None else str(metadata),
        "image_size": size,
        "batch_size": batch_size,
        "threads": threads,
        "rounds": rounds,
        "rows": rows,
    }
    table = markdown(result)
    log(table, end="")
    write_json(Path(f"{output}.json"), result)
    atomic_write(Path(f"{output}.md"), lambda p: p.write_text(table))
    plot(result, Path(f"{output}.png"))
    log(f"Wrote {output}.json, {output}.md and {output}.png")
    return result


def _cell(value, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def markdown(result: dict) -> str:
    lines = [
        f"{result['image_size']} px, batch {result['batch_size']}, {result['threads']} threads, "
        f"{result['rounds']} interleaved rounds; ratios are to PyTorch eager in the same rounds.",
        "",
        "| format | MB | x float ONNX size | valid acc | macro-F1 | agreement | b1 median ms | b1 p90 ms "
        "| b1 x eager | b32 img/s | b32 x eager |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result["rows"].items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} |" + " |" * 9)
            continue
        lines.append(
            f"| {name} | {r['size_bytes'] / 1e6:.2f} | {_cell(r['size_vs_float_onnx'], '.2f')} "
            f"| {_cell(r.get('valid_accuracy'), '.4f')} | {_cell(r.get('valid_macro_f1'), '.4f')} "
            f"| {_cell(r.get('agreement_with_pytorch'), '.1%')} | {r['latency_ms_median']:.2f} "
            f"| {r['latency_ms_p90']:.2f} "
            f"| {r['latency_ratio']:.2f}x | {r['images_per_s']:.0f} | {r['throughput_ratio']:.2f}x |"
        )
    return "\n".join(lines + int8_lines(result["rows"])) + "\n"


def int8_lines(rows: dict) -> list[str]:
    """The INT8 formats' gate and accuracy-aware search: drops, layers kept out of INT8, cost, size."""
    int8 = {name: r["check"]["int8"] for name, r in rows.items() if "int8" in r.get("check", {})}
    if not int8:
        return []
    lines = [
        "",
        "| INT8 format | plain-recipe drop (points) | drop (points) | layers kept out of INT8 | search evaluations "
        "| search s | x float ONNX size |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, record in int8.items():
        check = rows[name]["check"]
        kept = f"{len(record['kept_layers'])} of {record['layers_total']}" if record["searched"] else "0 (no search)"
        seconds = f"{record['seconds']:.0f}" if record["searched"] else "—"
        lines.append(
            f"| {name} | {record['plain_recipe_drop_points']:.2f} | {check['accuracy_drop_points']:.2f} | {kept} "
            f"| {record['evaluations']} | {seconds} | {record['size_vs_float_onnx']:.2f} |"
        )
    return lines


def plot(result: dict, path: Path) -> Path:
    from ..plots import plt, save_figure

    names = [n for n, r in result["rows"].items() if "error" not in r]
    rows = [result["rows"][n] for n in names]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = (
        ("batch-32 throughput, x PyTorch eager", [r["throughput_ratio"] for r in rows]),
        ("batch-1 latency, x faster than PyTorch eager", [r["latency_ratio"] for r in rows]),
        ("file size, MB", [r["size_bytes"] / 1e6 for r in rows]),
    )
    for ax, (title, values) in zip(axes, panels, strict=True):
        ax.barh(names, values, color=["tab:gray"] + ["tab:blue"] * (len(names) - 1))
        ax.set_title(title)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.2f}", va="center", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
