"""``paddyclf benchmark speed``: inference speed of one checkpoint on three CPU/GPU paths, in one run.

Given an exported file instead of a checkpoint, it times that file on its own runtime (there is
no eager model to compare with: ``benchmark export`` puts every format beside PyTorch).

PyTorch eager (NCHW) is the baseline; PyTorch channels_last and ONNX Runtime are reported as
ratios to it: throughput at ``--batch-size`` and batch-1 latency (median and p90). For a
calibrated checkpoint, ``torch_eager_with_ood_score`` is the same model plus its
out-of-distribution score (what ``predict`` runs), and the ONNX graph includes the score.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..export import export_checkpoint
from ..inference import load_predictor
from ..models import create_model, model_kwargs
from ..trust import trusted_model
from .common import PRINT, environment


def _latencies(run, x, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return times


def measure_backend(run, size: int, batch_size: int, warmup: int = 3, repeats: int = 10) -> dict:
    batch = torch.randn(batch_size, 3, size, size)
    single = torch.randn(1, 3, size, size)
    throughput = batch_size / float(np.median(_latencies(run, batch, warmup, repeats)))
    lat = np.array(_latencies(run, single, warmup, 3 * repeats)) * 1e3
    return {
        "images_per_s": throughput,
        "latency_ms_median": float(np.median(lat)),
        "latency_ms_p90": float(np.percentile(lat, 90)),
    }


def interleaved_time_ratio(base, other, size: int, batch_size: int, repeats: int) -> float:
    """Median time of ``other`` over that of ``base`` on one batch, the two timed alternately.

    Alternating cancels the drift of a shared machine that separate runs pick up (a 1% cost
    measured 20% when timed one after the other).
    """
    x = torch.randn(batch_size, 3, size, size)
    times: dict[int, list[float]] = {0: [], 1: []}
    base(x), other(x)
    for _ in range(max(repeats, 5)):
        for key, run in ((0, base), (1, other)):
            start = time.perf_counter()
            run(x)
            times[key].append(time.perf_counter() - start)
    return float(np.median(times[1]) / np.median(times[0]))


def backend_results(ckpt: dict, batch_size: int, threads: int, repeats: int) -> dict:
    """Eager NCHW, channels_last and ONNX Runtime speed of the model in ``ckpt``, with ratios to eager."""
    import onnxruntime as ort

    size = ckpt["config"]["image_size"]
    model = model_from_checkpoint(ckpt)
    model_cl = model_from_checkpoint(ckpt).to(memory_format=torch.channels_last)
    results = {}
    with torch.no_grad():
        results["torch_eager_nchw"] = measure_backend(model, size, batch_size, repeats=repeats)
        if "trust" in ckpt:  # the verdict's cost: the same model plus its out-of-distribution score
            results["torch_eager_with_ood_score"] = measure_backend(
                trusted_model(ckpt, model), size, batch_size, repeats=repeats
            )
            results["torch_eager_with_ood_score"]["interleaved_time_ratio"] = interleaved_time_ratio(
                model, trusted_model(ckpt, model), size, batch_size, repeats
            )
        results["torch_channels_last"] = measure_backend(
            lambda x: model_cl(x.contiguous(memory_format=torch.channels_last)), size, batch_size, repeats=repeats
        )
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_checkpoint(ckpt, onnx_path, "onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        results["onnxruntime"] = measure_backend(
            lambda x: session.run(None, {name: x.numpy()}), size, batch_size, repeats=repeats
        )
    base = results["torch_eager_nchw"]
    for r in results.values():
        r["throughput_ratio_to_eager"] = r["images_per_s"] / base["images_per_s"]
        r["latency_speedup_vs_eager"] = base["latency_ms_median"] / r["latency_ms_median"]
    return results


def reference_checkpoint(ckpt: dict) -> dict:
    """The plain MobileNetV3-Small (no attention) with the same classes and input size, random weights:
    the yardstick for what the attention head costs each backend (speed does not depend on weights)."""
    arch = {**ckpt["config"], "architecture": "MobileNetV3_Small"}
    model = create_model(**model_kwargs(arch))
    plain = {k: v for k, v in ckpt.items() if k not in ("trust", "ood_statistics")}
    return {**plain, "config": arch, "state_dict": model.state_dict()}


def run_speed_benchmark(
    checkpoint: str | Path, batch_size: int = 32, threads: int | None = None, repeats: int = 10, log=PRINT
) -> dict:
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    predictor = load_predictor(checkpoint, threads=threads)
    if predictor.backend != "torch":  # an exported file: its own runtime (compare formats: `benchmark export`)
        size = predictor.image_size
        runs = {
            Path(checkpoint).name: {
                predictor.backend: measure_backend(predictor.outputs, size, batch_size, repeats=repeats)
            }
        }
        for r in runs[Path(checkpoint).name].values():
            r["throughput_ratio_to_eager"] = r["latency_speedup_vs_eager"] = None
        return _report(checkpoint, size, batch_size, threads, runs, log)
    ckpt = load_checkpoint(checkpoint)
    size = ckpt["config"]["image_size"]
    runs = {ckpt["config"]["architecture"]: backend_results(ckpt, batch_size, threads, repeats)}
    if ckpt["config"]["architecture"] != "MobileNetV3_Small":
        runs["MobileNetV3_Small (reference)"] = backend_results(
            reference_checkpoint(ckpt), batch_size, threads, repeats
        )
    return _report(checkpoint, size, batch_size, threads, runs, log)


def _ratio(value: float | None) -> str:
    return "       —" if value is None else f"{value:7.2f}x"


def _report(checkpoint, size: int, batch_size: int, threads: int, runs: dict, log) -> dict:
    log(f"{size}px, batch {batch_size}, {threads} threads; ratios are to PyTorch eager NCHW of the same model")
    log(
        f"{'model':30} {'backend':20} {'img/s':>8} {'x eager':>8} {'b1 median ms':>13} {'b1 p90 ms':>10} {'x eager':>8}"
    )
    for model_name, results in runs.items():
        for key, r in results.items():
            log(
                f"{model_name:30} {key:20} {r['images_per_s']:8.1f} {_ratio(r['throughput_ratio_to_eager'])} "
                f"{r['latency_ms_median']:13.2f} {r['latency_ms_p90']:10.2f} {_ratio(r['latency_speedup_vs_eager'])}"
            )
            if "interleaved_time_ratio" in r:
                log(f"{'':30} the OOD score costs {r['interleaved_time_ratio'] - 1:+.1%} time (timed alternately)")
    return {
        "environment": environment(torch.device("cpu")),
        "checkpoint": str(checkpoint),
        "image_size": size,
        "batch_size": batch_size,
        "results": runs,
    }
