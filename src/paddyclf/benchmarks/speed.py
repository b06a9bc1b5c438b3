"""``paddyclf benchmark speed``: inference speed of one checkpoint on three CPU/GPU paths, in one run.

PyTorch eager (NCHW) is the baseline; PyTorch channels_last and ONNX Runtime are reported as
ratios to it: throughput at ``--batch-size`` and batch-1 latency (median and p90).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..export import export_model
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


def run_speed_benchmark(
    checkpoint: str | Path, batch_size: int = 32, threads: int | None = None, repeats: int = 10, log=PRINT
) -> dict:
    import onnxruntime as ort

    if threads:
        torch.set_num_threads(threads)
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt)
    size = ckpt["config"]["image_size"]
    results = {}

    @torch.no_grad()
    def eager(x):
        return model(x)

    results["torch_eager_nchw"] = measure_backend(eager, size, batch_size, repeats=repeats)
    model_cl = model_from_checkpoint(ckpt).to(memory_format=torch.channels_last)

    @torch.no_grad()
    def channels_last(x):
        return model_cl(x.contiguous(memory_format=torch.channels_last))

    results["torch_channels_last"] = measure_backend(channels_last, size, batch_size, repeats=repeats)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_model(checkpoint, onnx_path, "onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        results["onnxruntime"] = measure_backend(
            lambda x: session.run(None, {name: x.numpy()}), size, batch_size, repeats=repeats
        )
    base = results["torch_eager_nchw"]
    for r in results.values():
        r["throughput_ratio_to_eager"] = r["images_per_s"] / base["images_per_s"]
        r["latency_speedup_vs_eager"] = base["latency_ms_median"] / r["latency_ms_median"]
    log(f"{ckpt['config']['architecture']} at {size}px, batch {batch_size}, {torch.get_num_threads()} threads")
    log(f"{'backend':22} {'img/s':>9} {'x eager':>8} {'b1 median ms':>13} {'b1 p90 ms':>10} {'x eager':>8}")
    for key, r in results.items():
        log(
            f"{key:22} {r['images_per_s']:9.1f} {r['throughput_ratio_to_eager']:7.2f}x "
            f"{r['latency_ms_median']:13.2f} {r['latency_ms_p90']:10.2f} {r['latency_speedup_vs_eager']:7.2f}x"
        )
    return {
        "environment": environment(torch.device("cpu")),
        "checkpoint": str(checkpoint),
        "image_size": size,
        "batch_size": batch_size,
        "results": results,
    }
